"""Printing results: strict JSON on stdout.

Not a subcommand (``COMMANDS`` does not name it). Python's ``json`` writes NaN and Infinity
as bare words, which no other JSON reader accepts; a result holding one is an error here,
said in one line, and nothing half-written reaches stdout.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(document: Any, *, indent: int | None = None) -> None:
    """Print ``document`` as strict JSON (RFC 8259), or raise ValueError when it holds a
    non-finite number."""
    try:
        text = json.dumps(document, indent=indent, allow_nan=False)
    except ValueError:
        raise ValueError(
            "the result holds NaN or infinite numbers, which JSON cannot carry: the model's "
            "output is not finite (check its weights, and the mean/std its card gives)"
        ) from None
    sys.stdout.write(text + "\n")
