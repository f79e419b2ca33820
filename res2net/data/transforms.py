"""Eval preprocessing: each weight family's own, reproduced exactly.

``style="paddle"`` is PaddleClas's deploy pipeline (``deploy/python/preprocess.py``:
ResizeImage(resize_short=256) -> CropImage(224) -> NormalizeImage -> ToCHWImage, on the
RGB image that ``cv2.imread`` + BGR->RGB gives). Its resize is OpenCV ``INTER_LINEAR`` on
uint8: bilinear with half-pixel centres and NO antialiasing, in fixed point (11-bit
weights, and the rounding of OpenCV's vectorised vertical pass). :func:`opencv_linear_resize`
does that same integer arithmetic in torch, so our pixels equal PaddleClas's bit for bit
without depending on OpenCV. (A float bilinear resize, e.g. torchvision's with
``antialias=False``, leaves ~12% of pixels one level off; an antialiased one, PIL's or
timm's, is a better downscaler but not what PaddleClas's weights were evaluated with.)

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


# OpenCV's fixed-point bilinear weights: INTER_RESIZE_COEF_BITS = 11 (imgproc/resize.cpp).
_COEF_SCALE = 2048


def _linear_taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices (first, second) and their int weights for one axis, as OpenCV's
    ``resize`` computes them: float32 half-pixel coordinate, clamped at both borders,
    each weight rounded to 1/2048 on its own."""
    coord = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).float()
    first = coord.floor()
    frac = coord - first
    first = first.long()
    frac[first < 0] = 0
    first = first.clamp(min=0)
    frac[first >= n_in - 1] = 0
    first = first.clamp(max=n_in - 1)
    second = (first + 1).clamp(max=n_in - 1)
    weights = torch.stack([(1 - frac) * _COEF_SCALE, frac * _COEF_SCALE]).round().int()
    return first, second, weights


def opencv_linear_resize(pixels: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)`` on uint8, exactly.

    :param pixels: uint8 C x H x W.
    :returns: uint8 C x height x width.
    """
    _, in_h, in_w = pixels.shape
    x0, x1, wx = _linear_taps(in_w, width)
    y0, y1, wy = _linear_taps(in_h, height)
    rows = pixels.int()
    # Horizontal pass on the needed rows only: exact integers (value x 2048).
    top = rows[:, y0][:, :, x0] * wx[0] + rows[:, y0][:, :, x1] * wx[1]
    bottom = rows[:, y1][:, :, x0] * wx[0] + rows[:, y1][:, :, x1] * wx[1]
    # Vertical pass as OpenCV's SIMD kernel rounds it (VResizeLinearVec_32s8u): drop 4 bits,
    # 16-bit high multiply by each weight, then add 2 and drop 2 more.
    by0, by1 = wy[0].view(1, -1, 1), wy[1].view(1, -1, 1)
    mixed = (((top >> 4) * by0) >> 16) + (((bottom >> 4) * by1) >> 16)
    return ((mixed + 2) >> 2).clamp(0, 255).to(torch.uint8)


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
    if cfg.interpolation != "bilinear":
        raise ValueError(f"paddle-style preprocessing is bilinear only, not {cfg.interpolation!r}")
    resized = opencv_linear_resize(F.pil_to_tensor(image), new_w, new_h)
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
