"""Checks for numbers a user gives (flags, config values, file fields): finite and in range.

One helper, so every setting fails the same way: a ``ValueError`` that names the setting,
the range it must lie in, and the value it got.
"""

from __future__ import annotations

import math
import numbers


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    integer: bool = False,
    low_inclusive: bool = True,
) -> float:
    """``value`` when it is a finite number within ``[low, high]`` (``(low, high]`` when
    ``low_inclusive`` is false); an integer when ``integer``.

    Booleans and text are refused even where Python would compare them as numbers.

    :param name: what the caller calls the value (an argument, a config key, a flag).
    :raises ValueError: naming ``name``, the range and the value given.
    """
    kind = numbers.Integral if integer else numbers.Real
    valid = isinstance(value, kind) and not isinstance(value, bool)
    if valid and not isinstance(value, numbers.Integral):  # ints past 1e308 are finite too
        valid = math.isfinite(value)  # type: ignore[arg-type]
    if valid and low is not None:
        valid = value >= low if low_inclusive else value > low  # type: ignore[operator]
    if valid and high is not None:
        valid = value <= high  # type: ignore[operator]
    if not valid:
        raise ValueError(
            f"{name} must be {_describe(low, high, integer, low_inclusive)}; got {value!r}"
        )
    return int(value) if integer else value  # type: ignore[call-overload,return-value]


def _describe(low: float | None, high: float | None, integer: bool, low_inclusive: bool) -> str:
    what = "an integer" if integer else "a finite number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>=' if low_inclusive else '>'} {_number(low)}")
    if high is not None:
        bounds.append(f"<= {_number(high)}")
    return f"{what} {' and '.join(bounds)}".rstrip()


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"
