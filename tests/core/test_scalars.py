"""``to_scalar``: Python numbers and one-element arrays pass, everything else is a MonitorError."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ckptcore import MonitorError
from ckptcore.scalars import is_finite, to_scalar


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1.0),
        (0.25, 0.25),
        (np.float32(0.5), 0.5),
        (np.float64(-2.0), -2.0),
        (np.int64(3), 3.0),
        (np.array(1.5), 1.5),
        (np.array([2.5]), 2.5),
        (np.array([[4.0]]), 4.0),
    ],
)
def test_scalars_convert(value, expected):
    result = to_scalar("val_loss", value)
    assert type(result) is float
    assert result == expected


def test_nan_and_inf_convert_but_are_not_finite():
    assert math.isnan(to_scalar("m", float("nan")))
    assert to_scalar("m", np.float32("inf")) == math.inf
    assert not is_finite(to_scalar("m", np.nan))
    assert not is_finite(-math.inf)
    assert is_finite(0.0)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (np.zeros(3), "shape (3,)"),
        (np.zeros((2, 2)), "shape (2, 2)"),
        (np.zeros(0), "shape (0,)"),
        ("0.5", "str"),
        (b"1", "bytes"),
        (True, "bool"),
        (None, "NoneType"),
        ([1.0], "list"),
        (1 + 2j, "complex"),
    ],
)
def test_non_scalars_are_rejected_with_the_monitor_named(value, fragment):
    with pytest.raises(MonitorError) as info:
        to_scalar("val_loss", value)
    assert "'val_loss'" in str(info.value)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)
