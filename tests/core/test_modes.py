"""``resolve_mode``: the classic Keras rule, the name table and the direction hint."""

from __future__ import annotations

import pytest

from ckptcore import ConfigError, MAX_NAMES, MIN_NAMES, resolve_mode


@pytest.mark.parametrize(
    ("monitor", "expected"),
    [
        ("val_loss", "min"),
        ("loss", "min"),
        ("acc", "max"),
        ("val_accuracy", "max"),
        ("val_sparse_categorical_accuracy", "max"),
        ("fmeasure", "max"),
        ("val_fmeasure", "max"),  # the classic rule misses it; the name table does not
        ("val_auc", "max"),
        ("val_precision", "max"),
        ("recall", "max"),
        ("val_f1_score", "max"),
        ("mean_iou", "max"),
        ("val_mean_absolute_error", "min"),
        ("val_mse", "min"),
        ("train/loss", "min"),
        ("eval_rmse", "min"),
        ("something_unknown", "min"),
    ],
)
def test_auto_mode(monitor, expected):
    assert resolve_mode(monitor) == expected


@pytest.mark.parametrize("mode", ["min", "max"])
def test_explicit_mode_wins(mode):
    assert resolve_mode("val_accuracy", mode) == mode
    assert resolve_mode("val_loss", mode, hint="max" if mode == "min" else "min") == mode


def test_hint_applies_after_the_classic_rule():
    # An unknown name follows the hint; "acc" in the name still wins over a hint (classic rule).
    assert resolve_mode("my_metric", hint="max") == "max"
    assert resolve_mode("my_metric", hint="min") == "min"
    assert resolve_mode("val_acc", hint="min") == "max"
    # The hint beats the name table: framework metadata knows better than a name.
    assert resolve_mode("val_loss", hint="max") == "max"


def test_tables_do_not_overlap():
    assert not MAX_NAMES & MIN_NAMES


@pytest.mark.parametrize(("mode", "hint", "named"), [("best", None, "mode"), ("auto", "up", "mode hint")])
def test_bad_mode_or_hint(mode, hint, named):
    with pytest.raises(ConfigError) as info:
        resolve_mode("val_loss", mode, hint)
    assert named in str(info.value)
    assert "allowed" in str(info.value)


@pytest.mark.parametrize(("name", "expected"), [
    ("TruePositives", "max"), ("FalseNegatives", "min"), ("MeanAbsoluteError", "min"),
    ("val_mean_iou", "max"), ("SomethingElse", None),
])
def test_direction_from_a_metric_or_class_name(name, expected):
    from ckptcore.modes import direction_from_name

    assert direction_from_name(name) == expected
