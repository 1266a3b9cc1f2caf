"""keras_se_core.validation: one check per kind, Keras's wording, UsageError (a ValueError)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keras_se_core import validation as v
from keras_se_core.errors import UsageError


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "3", None, float("nan")])
def test_positive_int_refuses(value):
    with pytest.raises(
        UsageError, match=rf"^`epochs` must be a positive integer\. Received: epochs={value!r}$"
    ):
        v.check_positive_int("epochs", value)


def test_ints_are_returned_as_int():
    assert (
        v.check_positive_int("n", np.int64(3)) == 3
        and type(v.check_positive_int("n", np.int64(3))) is int
    )
    assert v.check_int("seed", -5) == -5
    assert v.check_int("n", 0, minimum=0) == 0
    with pytest.raises(ValueError, match="an integer in \\[1, 3\\]"):
        v.check_int("n", 4, minimum=1, maximum=3)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 0, -1e-9, False, "1"])
def test_positive_number_refuses_non_finite_zero_and_non_numbers(value):
    with pytest.raises(UsageError, match="positive finite number"):
        v.check_positive_number("ratio", value)


def test_number_ranges_and_messages():
    assert v.check_number("momentum", 0.0, minimum=0, maximum=1, inclusive=(True, False)) == 0.0
    with pytest.raises(UsageError, match=r"in \[0, 1\)\. Received: momentum=1"):
        v.check_number("momentum", 1, minimum=0, maximum=1, inclusive=(True, False))
    with pytest.raises(UsageError, match="> 0"):
        v.check_number("x", 0, minimum=0, inclusive=(False, True))


def test_bool_and_choice():
    assert v.check_bool("sync_bn", True) is True
    with pytest.raises(UsageError, match="True or False. Received: sync_bn=1"):
        v.check_bool("sync_bn", 1)
    assert v.check_choice("squeeze", "avg", ("avg", "max")) == "avg"
    with pytest.raises(UsageError, match=r"one of \('avg', 'max'\)\. Received: squeeze='mean'"):
        v.check_choice("squeeze", "mean", ("avg", "max"))
    assert v.check_optional(v.check_positive_int, "steps", None) is None
    assert issubclass(UsageError, ValueError)  # Python callers catch it as a ValueError
