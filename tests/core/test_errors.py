"""The error hierarchy: every ckptcore error is also the builtin a caller would catch."""

from __future__ import annotations

import pytest

import ckptcore
from ckptcore import errors


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (errors.ConfigError, ValueError),
        (errors.TemplateError, ValueError),
        (errors.MissingKeyError, KeyError),
        (errors.MonitorError, ValueError),
        (errors.ManifestError, ValueError),
        (errors.BackendNotFoundError, LookupError),
        (errors.MissingDependencyError, ImportError),
        (errors.StorageError, OSError),
        (errors.CheckpointSaveError, OSError),
        (errors.BucketNotFoundError, FileNotFoundError),
    ],
)
def test_every_error_subclasses_a_builtin_and_the_base(cls, builtin):
    assert issubclass(cls, builtin)
    assert issubclass(cls, errors.CkptcoreError)


def test_messages_are_not_quoted_like_keyerror():
    err = errors.MissingKeyError("val_loss", ["loss", "acc"])
    assert str(err) == "filepath template needs {val_loss} but it is not in the logs; available keys: acc, loss"
    assert err.available == ["acc", "loss"]
    save = errors.CheckpointSaveError("w-1.npy", "disk full")
    assert str(save) == "checkpoint 'w-1.npy' was not saved: disk full"
    assert save.checkpoint == "w-1.npy"


def test_a_missing_bucket_is_a_storage_error_with_its_message():
    err = errors.BucketNotFoundError("s3://b/run: bucket 'b' does not exist")
    assert isinstance(err, errors.StorageError)
    assert str(err) == "s3://b/run: bucket 'b' does not exist"


def test_public_names_resolve():
    for name in ckptcore.__all__:
        assert hasattr(ckptcore, name), name
    for name in errors.__all__:
        assert hasattr(errors, name), name
