"""What an image goes through before a model sees it, as plain data (no torch import).

:class:`Preprocess` is part of every model card (:mod:`res2net.card`); the transforms that
carry it out are in :mod:`res2net.data.transforms`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from res2net import limits

# ImageNet's per-channel RGB mean and standard deviation on [0, 1] pixels, as PaddleClas's
# NormalizeImage (ppcls/data/preprocess/ops/operators.py) and torchvision's models use them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

STYLES = ("paddle", "timm")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
# A record comes from a file: its sizes are bounded before anything is allocated.
_MAX_SIDES = {"resize_short": limits.MAX_RESIZE, "crop": limits.MAX_CROP}


class PreprocessError(ValueError):
    """A preprocessing record that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Preprocess:
    """Eval preprocessing of a weight entry: resize the short side, center crop, normalize.

    ``style`` says whose resize to reproduce: ``"paddle"`` (OpenCV bilinear on the short side,
    as PaddleClas's ``ResizeImage``) or ``"timm"`` (PIL bilinear with antialiasing, as timm's
    eval transform).
    """

    resize_short: int = 256
    crop: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    style: Literal["paddle", "timm"] = "paddle"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields above, ``mean``/``std`` as lists."""
        out = asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "preprocess") -> Preprocess:
        """The inverse of :meth:`to_dict`, checked. Records written before ``interpolation``
        was stored read as ``"bilinear"``, before ``style`` as ``"paddle"``.

        :param where: how the record is named in errors (e.g. ``"card.preprocess"``).
        :raises PreprocessError: naming the bad key and what it should be.
        """
        if not isinstance(data, dict):
            raise PreprocessError(f"{where} must be an object, not {type(data).__name__}")
        if unknown := sorted(set(data) - set(cls.__dataclass_fields__)):
            raise PreprocessError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known: "
                f"{', '.join(cls.__dataclass_fields__)}"
            )
        for key, most in _MAX_SIDES.items():
            value = data.get(key)
            if type(value) is not int or not 1 <= value <= most:
                raise PreprocessError(
                    f"{where}.{key} = {value!r}: must be a whole number from 1 to {most}"
                )
        for key, least in (("mean", -limits.MAX_ABS_MEAN_STD), ("std", limits.MIN_STD)):
            values = data.get(key)
            if not (
                isinstance(values, (list, tuple))
                and len(values) == 3
                and all(type(v) in (int, float) for v in values)
            ):
                raise PreprocessError(f"{where}.{key} = {values!r}: must be a list of 3 numbers")
            if not all(math.isfinite(v) and least <= v <= limits.MAX_ABS_MEAN_STD for v in values):
                raise PreprocessError(
                    f"{where}.{key} = {list(values)!r}: each must be a finite number from {least} "
                    f"to {limits.MAX_ABS_MEAN_STD:g}"
                    + (" (std divides the pixels)" if key == "std" else "")
                )
        style = data.get("style", "paddle")
        if style not in STYLES:
            raise PreprocessError(f"{where}.style = {style!r}: must be one of {STYLES}")
        interpolation = data.get("interpolation", "bilinear")
        if interpolation not in INTERPOLATIONS:
            raise PreprocessError(
                f"{where}.interpolation = {interpolation!r}: must be one of {INTERPOLATIONS}"
            )
        return cls(
            resize_short=data["resize_short"],
            crop=data["crop"],
            interpolation=interpolation,
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            style=style,
        )


def as_preprocess(value: Any, where: str = "preprocess") -> Preprocess:
    """A :class:`Preprocess` from any documented form of one.

    Accepted: ``None`` (PaddleClas's default), a :class:`Preprocess`, its dict form
    (:meth:`Preprocess.to_dict`, e.g. ``load_exported(f).metadata["preprocess"]``), a whole
    card or export metadata dict holding one under ``"preprocess"``
    (``load_exported(f).metadata``), or an object with a ``Preprocess`` in its
    ``preprocess`` attribute (a ``ModelCard``, a weight entry).

    :param where: how the value is named in errors (the caller's argument name).
    :raises PreprocessError: a dict with a bad key or value, naming it.
    :raises TypeError: anything else, saying what to pass.
    """
    if value is None:
        return Preprocess()
    if isinstance(value, Preprocess):
        return value
    if isinstance(value, Mapping):
        if "preprocess" in value:
            return as_preprocess(value["preprocess"], f"{where}['preprocess']")
        return Preprocess.from_dict(dict(value), where)
    nested = getattr(value, "preprocess", None)
    if isinstance(nested, Preprocess):
        return nested
    raise TypeError(
        f"{where} must be a Preprocess, its dict form (Preprocess.to_dict(), as in an export's "
        "metadata['preprocess']), a card or export metadata dict, or a ModelCard; "
        f"got {type(value).__name__}"
    )
