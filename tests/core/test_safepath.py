"""Path operations below a root that never follow a symbolic link."""

from __future__ import annotations

import errno
import os

import pytest

from ckptcore import UnsafePathError
from ckptcore.digest import digest
from ckptcore.safepath import (
    check_path,
    digest_below,
    exists_below,
    read_below,
    remove_below,
    rmdir_empty_parents,
)


@pytest.fixture
def tree(tmp_path):
    """``root`` with ``e1/m/variables/w.bin``, ``e1/m/saved.pb``, ``f.bin`` and ``outside/keep.txt``."""
    root = tmp_path / "root"
    (root / "e1" / "m" / "variables").mkdir(parents=True)
    (root / "e1" / "m" / "variables" / "w.bin").write_bytes(b"w" * 100)
    (root / "e1" / "m" / "saved.pb").write_bytes(b"graph")
    (root / "f.bin").write_bytes(b"file")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep.txt").write_text("keep")
    return root


def test_digest_below_agrees_with_digest_on_real_trees(tree):
    assert digest_below(str(tree), "e1/m") == digest(str(tree / "e1" / "m"))
    assert digest_below(str(tree), "f.bin") == digest(str(tree / "f.bin"))
    assert digest_below(str(tree), "nope") is None and digest_below(str(tree), "nope/x") is None


def test_a_link_inside_a_directory_is_removed_not_followed(tree):
    os.symlink(tree.parent / "outside", tree / "e1" / "m" / "variables" / "out")
    remove_below(str(tree), "e1/m")
    assert not (tree / "e1" / "m").exists()
    assert (tree.parent / "outside" / "keep.txt").read_text() == "keep"
    rmdir_empty_parents(str(tree), "e1/m")
    assert not (tree / "e1").exists() and tree.exists()


def test_every_operation_refuses_a_link_below_the_root(tree):
    os.symlink("../outside", tree / "link")
    for call in (lambda: read_below(str(tree), "link/keep.txt"), lambda: remove_below(str(tree), "link"),
                 lambda: remove_below(str(tree), "link/keep.txt"), lambda: exists_below(str(tree), "link/x"),
                 lambda: check_path(str(tree), "link/new"), lambda: digest_below(str(tree), "link")):
        with pytest.raises(UnsafePathError) as info:
            call()
        assert info.value.errno == errno.ELOOP and info.value.filename == os.path.join(str(tree), "link")
    assert (tree.parent / "outside" / "keep.txt").exists() and os.path.islink(tree / "link")


def test_the_root_itself_may_be_a_link(tree, tmp_path):
    os.symlink(tree, tmp_path / "alias")
    assert read_below(str(tmp_path / "alias"), "f.bin") == b"file"
    assert exists_below(str(tmp_path / "alias"), "e1/m/saved.pb")
    remove_below(str(tmp_path / "alias"), "f.bin")
    assert not (tree / "f.bin").exists()


def test_a_fifo_is_not_read(tree):
    os.mkfifo(tree / "e1" / "m" / "pipe")
    with pytest.raises(OSError, match="not a regular file"):
        digest_below(str(tree), "e1/m")  # would block forever if opened as a file


def test_missing_paths_are_quiet(tree):
    remove_below(str(tree), "nope/x")
    remove_below(str(tree), "f.bin/x")
    assert not exists_below(str(tree), "nope") and not exists_below(str(tree), "f.bin/x")
    with pytest.raises(FileNotFoundError):
        read_below(str(tree), "nope")
    with pytest.raises(ValueError):
        check_path(str(tree), "../x")
