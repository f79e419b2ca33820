"""res2net.checks: the one helper for "a finite number in a range"."""

from __future__ import annotations

import math

import numpy as np
import pytest

from res2net.checks import check_number


@pytest.mark.parametrize(
    ("value", "kwargs", "words"),
    [
        (math.nan, {}, "a finite number; got nan"),
        (math.inf, {"low": 0}, "a finite number >= 0; got inf"),
        (-math.inf, {}, "got -inf"),
        (0.0, {"low": 0, "low_inclusive": False}, "> 0; got 0.0"),
        (70000, {"low": 0, "high": 65535, "integer": True}, "a whole number from 0 to 65535"),
        (1.5, {"integer": True}, "a whole number; got 1.5"),
        (True, {"integer": True}, "got True"),
        (True, {}, "got True"),
        ("3", {}, "got '3'"),
        (None, {}, "got None"),
        (0.25, {"low": 0.5}, ">= 0.5; got 0.25"),
        (10**400, {"high": 2**40}, "<= 1099511627776; got 1000"),
    ],
)
def test_refuses_naming_the_value_and_the_range(value, kwargs, words):
    with pytest.raises(ValueError, match="^timeout must be") as err:
        check_number("timeout", value, **kwargs)
    assert words in str(err.value)


def test_returns_accepted_values():
    assert check_number("port", 0, low=0, high=65535, integer=True) == 0
    assert check_number("port", np.int64(8080), low=0, high=65535, integer=True) == 8080
    assert type(check_number("port", np.int64(8080), integer=True)) is int
    assert check_number("delay", 0.0, low=0) == 0.0
    assert check_number("scale", np.float32(0.5), low=0, low_inclusive=False) == 0.5
    assert check_number("steps", 10**400, low=1, integer=True) == 10**400  # float() overflows
