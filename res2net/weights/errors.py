"""The one error type every weight-file reader raises."""

from __future__ import annotations


class WeightFileError(ValueError):
    """A weight file could not be read, or does not fit the model."""
