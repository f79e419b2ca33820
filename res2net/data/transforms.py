"""Eval preprocessing: each weight family's own, reproduced exactly.

``style="paddle"`` is PaddleClas's deploy pipeline (``deploy/python/preprocess.py``:
ResizeImage(resize_short=256) -> CropImage(224) -> NormalizeImage -> ToCHWImage, on the
RGB image that ``cv2.imread`` + BGR->RGB gives). Its resize is OpenCV ``INTER_LINEAR``:
bilinear with half-pixel centres and NO antialiasing, rounded back to uint8. We use
torchvision's tensor resize with ``antialias=False``, which is the same interpolation;
the two differ only in OpenCV's fixed-point rounding (at most one uint8 level on a few
pixels). An antialiased resampler (PIL, or torchvision with antialias) would be a better
downscaler but would not be what PaddleClas's weights saw when they were evaluated.

``style="timm"`` is timm's eval transform for the original release's weights: PIL bilinear
(antialiased) resize of the short side to ``resize_short``, torchvision's center crop.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

from res2net.data.images import DEFAULT_MAX_PIXELS, ImageSource, load_image
from res2net.models.registry import Preprocess

PADDLE_DEFAULT = Preprocess()

_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


def paddle_resize_size(width: int, height: int, resize_short: int) -> tuple[int, int]:
    """(width, height) after PaddleClas's ResizeImage: short side to ``resize_short``,
    both sides scaled by the same factor and rounded (Python's round, half to even)."""
    percent = float(resize_short) / min(width, height)
    return int(round(width * percent)), int(round(height * percent))


def center_crop_box(width: int, height: int, crop: int) -> tuple[int, int]:
    """(left, top) of PaddleClas's CropImage: floor of half the excess on each axis."""
    return (width - crop) // 2, (height - crop) // 2


def _interpolation(cfg: Preprocess) -> InterpolationMode:
    try:
        return _MODES[cfg.interpolation]
    except KeyError:
        raise ValueError(
            f"unknown interpolation {cfg.interpolation!r}; use one of {', '.join(_MODES)}"
        ) from None


def _paddle_style(image: Image.Image, cfg: Preprocess) -> torch.Tensor:
    width, height = image.size
    new_w, new_h = paddle_resize_size(width, height, cfg.resize_short)
    if min(new_w, new_h) < cfg.crop:
        raise ValueError(f"resize_short={cfg.resize_short} is smaller than crop={cfg.crop}")
    pixels = F.pil_to_tensor(image)  # uint8 3 x H x W
    resized = F.resize(pixels, [new_h, new_w], _interpolation(cfg), antialias=False)
    left, top = center_crop_box(new_w, new_h, cfg.crop)
    crop = resized[:, top : top + cfg.crop, left : left + cfg.crop]
    # NormalizeImage's arithmetic, in float32: x * (1/255) - mean, then / std.
    mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float32).view(3, 1, 1)
    return ((crop.float() * np.float32(1.0 / 255.0)) - mean) / std


def _timm_style(image: Image.Image, cfg: Preprocess) -> torch.Tensor:
    # timm's eval transform: Resize(short side) -> CenterCrop -> ToTensor -> Normalize.
    resized = F.resize(image, cfg.resize_short, _interpolation(cfg))
    tensor = F.to_tensor(F.center_crop(resized, [cfg.crop, cfg.crop]))
    return F.normalize(tensor, list(cfg.mean), list(cfg.std))


def eval_transform(preprocess: Preprocess | None = None) -> Callable[[Image.Image], torch.Tensor]:
    """The eval transform of a weight entry, for datasets: RGB PIL image -> 3 x crop x crop."""
    cfg = preprocess or PADDLE_DEFAULT
    if cfg.style not in ("paddle", "timm"):
        raise ValueError(f"unknown preprocessing style {cfg.style!r}; use 'paddle' or 'timm'")
    step = _paddle_style if cfg.style == "paddle" else _timm_style

    def transform(image: Image.Image) -> torch.Tensor:
        return step(image if image.mode == "RGB" else image.convert("RGB"), cfg)

    return transform


def preprocess(
    image: ImageSource,
    preprocess: Preprocess | None = None,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """Decode (if needed) and preprocess one image for a Res2Net: float32 3 x crop x crop.

    :param image: a path, encoded bytes, a PIL image or an H x W x C uint8 RGB array.
    :param preprocess: a weight entry's ``Preprocess`` (``get_entry(name).preprocess``);
        default: PaddleClas's (short side 256 bilinear, center crop 224, ImageNet mean/std).
    :param max_pixels: decompression-bomb limit passed to :func:`load_image`.
    :raises ImageDecodeError: the input cannot be decoded.
    """
    return eval_transform(preprocess)(load_image(image, max_pixels=max_pixels))
