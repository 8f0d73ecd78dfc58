"""Two real processes saving into one local root, and a third reading its manifest meanwhile.

The read-merge-write of the manifest is locked across processes (``.ckptcore/state/lock``), and
each save writes its record before its rename: an observer never sees the manifest list a
missing file, and once both writers are closed it lists exactly what is there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ckptcore.audit import unaccounted
from ckptcore.backends import LocalBackend
from ckptcore.commit import load_manifest
from ckptcore.manifest import MANIFEST_NAME

WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from ckptcore import Checkpointer

    root, name, keep = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ck = Checkpointer(root + "/" + name, write=lambda p: np.save(p, np.arange(2000.0)), keep_last=keep)
    for epoch in range(40):
        ck.on_epoch_end(epoch, {"val_loss": 1.0 / (epoch + 1)})
        time.sleep(0.005)
    ck.close()
    """
)

OBSERVER = textwrap.dedent(
    """
    import json, os, sys, time
    root, manifest, stop = sys.argv[1], sys.argv[2], sys.argv[3]
    reads = violations = 0
    examples = []

    def read():
        try:
            with open(manifest, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    while not os.path.exists(stop):
        before = read()
        if before is None:
            continue
        listed = [e["path"] for e in json.loads(before)["entries"]]
        missing = [p for p in listed if not os.path.exists(os.path.join(root, p))]
        reads += 1
        # A file is missing while the manifest listing it is still the current one.
        if missing and read() == before:
            violations += 1
            examples.append(missing)
    print(json.dumps({"reads": reads, "violations": violations, "examples": examples[:5]}))
    """
)


@pytest.mark.skipif(os.name != "posix", reason="POSIX processes")
def test_two_writers_and_an_observer_on_one_local_root(tmp_path):
    root = tmp_path / "shared"
    root.mkdir()
    for name, text in (("writer.py", WRITER), ("observer.py", OBSERVER)):
        (tmp_path / name).write_text(text)
    stop = tmp_path / "stop"
    observer = subprocess.Popen([sys.executable, str(tmp_path / "observer.py"), str(root),
                                 str(root / MANIFEST_NAME), str(stop)], stdout=subprocess.PIPE, text=True)
    writers = [subprocess.Popen([sys.executable, str(tmp_path / "writer.py"), str(root), name, keep],
                                stderr=subprocess.PIPE, text=True)
               for name, keep in (("a-{epoch:03d}.npy", "2"), ("b-{epoch:03d}.npy", "3"))]
    try:
        for proc in writers:
            _out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err[-3000:]
    finally:
        stop.write_text("")
        out, _err = observer.communicate(timeout=60)
    seen = json.loads(out)
    assert seen["reads"] > 20, seen
    assert seen["violations"] == 0, seen
    manifest = load_manifest(LocalBackend(str(root)))
    on_disk = sorted(n for n in os.listdir(root) if not n.startswith("."))
    assert sorted(e.path for e in manifest.entries) == on_disk
    assert on_disk == ["a-039.npy", "a-040.npy", "b-038.npy", "b-039.npy", "b-040.npy"]
    assert manifest.pending == [] and unaccounted(root) == []
    assert len(manifest.runs) == 2
