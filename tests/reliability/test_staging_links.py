"""A symbolic link planted in a root's staging directory is removed as what it is, a link: the
sweep neither walks the directory it points at nor reads or moves anything there."""

from __future__ import annotations

import os
import time

import numpy as np

from ckptcore import Checkpointer
from ckptcore.manifest import MANIFEST_NAME

STALE = time.time() - 7200  # older than any sweep's age limit


def test_a_stale_link_in_staging_is_removed_without_walking_its_target(tmp_path):
    root = tmp_path / "root"
    with Checkpointer(str(root / "m-{epoch}.npy"), write=lambda p: np.save(p, np.zeros(2))) as ck:
        ck.on_epoch_end(0, {})
    staging = root / MANIFEST_NAME.split("/", 1)[0] / "staging"
    assert staging.is_dir()
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "fresh.bin").write_bytes(b"written just now")  # a walk would call the slot in use
    link = staging / "planted"
    link.symlink_to(outside, target_is_directory=True)
    os.utime(link, (STALE, STALE), follow_symlinks=False)
    with Checkpointer(str(root / "m-{epoch}.npy"), write=lambda p: np.save(p, np.zeros(2))) as ck:
        ck.on_epoch_end(1, {})
    assert not os.path.lexists(link)
    assert (outside / "deep" / "fresh.bin").read_bytes() == b"written just now"
