"""One check for every number a user or a file gives: finite, of the right kind, in range.

The CLI's flags, the training config's keys and the values read from files all go through
:func:`check_number`, so "NaN", "inf", a negative count or a float where a count belongs is
refused where it is parsed, with the name of what was wrong, instead of turning into silent
garbage or a traceback further down.
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
) -> int | float:
    """``value`` as a number, when it is finite, within ``[low, high]`` and (with ``integer``)
    whole; else a ValueError that names ``name`` and the range it must be in.

    Booleans are refused (``True`` is not the number 1 to a person writing a config).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {_kind(integer, low, high)}, got {value!r:.40}")
    if integer and not isinstance(value, numbers.Integral):
        if not (math.isfinite(value) and float(value).is_integer()):
            raise ValueError(f"{name} must be {_kind(integer, low, high)}, got {value!r:.40}")
        value = int(value)
    # An int is always finite, and may be too large for a float: compare it as an int.
    finite = isinstance(value, numbers.Integral) or math.isfinite(value)
    outside = (low is not None and value < low) or (high is not None and value > high)
    if not finite or outside:
        raise ValueError(f"{name} must be {_kind(integer, low, high)}, got {value!r:.40}")
    if integer:
        return int(value)
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{name} must be {_kind(integer, low, high)}, got {value!r:.40}") from None


def _kind(integer: bool, low: float | None, high: float | None) -> str:
    """The words for what a check accepts, e.g. "a whole number from 1 to 4096"."""
    kind = "a whole number" if integer else "a finite number"
    if low is not None and high is not None:
        return f"{kind} from {low:g} to {high:g}"
    if low is not None:
        return f"{kind} >= {low:g}"
    if high is not None:
        return f"{kind} <= {high:g}"
    return kind
