"""One check for every number a user or a file gives: finite, of the right kind, in range.

The CLI's flags, the server's settings, the training config's keys and the values read from
files all go through :func:`check_number`, so "NaN", "inf", a negative count or a float where
a count belongs is refused where it is parsed, with the name of what was wrong, instead of
turning into silent garbage or a traceback further down.
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
) -> int | float:
    """``value`` as a number, when it is finite, within ``[low, high]`` (``(low, high]``
    when ``low_inclusive`` is false) and (with ``integer``) whole; else a ``ValueError``
    that names ``name``, the range it must be in and the value given.

    Booleans and text are refused (``True`` is not the number 1 to a person writing a
    config). A whole float is accepted as a count (``4.0`` -> ``4``).
    """

    def refuse() -> ValueError:
        return ValueError(
            f"{name} must be {_kind(integer, low, high, low_inclusive)}; got {value!r:.40}"
        )

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise refuse()
    number = value
    if integer and not isinstance(number, numbers.Integral):
        if not (math.isfinite(number) and float(number).is_integer()):
            raise refuse()
        number = int(number)
    # An int is always finite, and may be too large for a float: compare it as an int.
    finite = isinstance(number, numbers.Integral) or math.isfinite(number)
    below = low is not None and (number < low if low_inclusive else number <= low)
    if not finite or below or (high is not None and number > high):
        raise refuse()
    if integer:
        return int(number)
    try:
        return float(number)
    except OverflowError:
        raise refuse() from None


def _kind(integer: bool, low: float | None, high: float | None, low_inclusive: bool) -> str:
    """The words for what a check accepts, e.g. "a whole number from 1 to 4096"."""
    kind = "a whole number" if integer else "a finite number"
    if low is not None and high is not None and low_inclusive:
        return f"{kind} from {_bound(low)} to {_bound(high)}"
    bounds = []
    if low is not None:
        bounds.append(f"{'>=' if low_inclusive else '>'} {_bound(low)}")
    if high is not None:
        bounds.append(f"<= {_bound(high)}")
    return " ".join([kind, " and ".join(bounds)]).strip()


def _bound(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"
