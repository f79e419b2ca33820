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
from res2net.data.preprocess import Preprocess

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


def _linear_taps(n_in: int, n_out: int, start: int, count: int) -> tuple[np.ndarray, ...]:
    """Source indices (first, second) and their int weights for output positions
    ``start .. start + count - 1`` of one axis, as OpenCV's ``resize`` computes them: float32
    half-pixel coordinate, clamped at both borders, each weight rounded to 1/2048 on its
    own. Each position's taps depend on it alone, so a window costs only its own length."""
    positions = np.arange(start, start + count, dtype=np.float64)
    coord = ((positions + 0.5) * (n_in / n_out) - 0.5).astype(np.float32)
    first = np.floor(coord)
    frac = coord - first
    first = first.astype(np.int64)
    frac[first < 0] = 0
    frac[first >= n_in - 1] = 0
    first = first.clip(0, n_in - 1)
    second = np.minimum(first + 1, n_in - 1)
    w0 = np.rint((np.float32(1) - frac) * np.float32(_COEF_SCALE)).astype(np.int32)
    w1 = np.rint(frac * np.float32(_COEF_SCALE)).astype(np.int32)
    return first, second, w0, w1


def opencv_linear_resize(
    pixels: np.ndarray,
    width: int,
    height: int,
    window: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """``cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)`` on uint8, exactly.

    :param pixels: uint8 H x W x C.
    :param window: (left, top, w, h): compute only this part of the output (a crop costs
        only its own pixels, however large the source).
    :returns: uint8 h x w x C (``height`` x ``width`` x C without a window).
    """
    in_h, in_w = pixels.shape[:2]
    left, top, out_w, out_h = window or (0, 0, width, height)
    x0, x1, wx0, wx1 = _linear_taps(in_w, width, left, out_w)
    y0, y1, wy0, wy1 = _linear_taps(in_h, height, top, out_h)
    wx0, wx1 = wx0[None, :, None], wx1[None, :, None]

    def horizontal(rows: np.ndarray) -> np.ndarray:
        # Exact integers (value x 2048), as OpenCV's horizontal pass. Only the window's
        # rows x columns are gathered, never whole source rows (a 1 x 50,000,000 image).
        first = pixels[rows[:, None], x0[None, :]].astype(np.int32)
        second = pixels[rows[:, None], x1[None, :]].astype(np.int32)
        return first * wx0 + second * wx1

    upper, lower = horizontal(y0), horizontal(y1)
    # Vertical pass rounded as OpenCV's SIMD kernel (VResizeLinearVec_32s8u): drop 4 bits,
    # 16-bit high multiply by each weight, then add 2 and drop 2 more.
    mixed = (((upper >> 4) * wy0[:, None, None]) >> 16) + (
        ((lower >> 4) * wy1[:, None, None]) >> 16
    )
    return ((mixed + 2) >> 2).clip(0, 255).astype(np.uint8)


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
    left, top = center_crop_box(new_w, new_h, cfg.crop)
    window = (left, top, cfg.crop, cfg.crop)
    crop = opencv_linear_resize(np.asarray(image), new_w, new_h, window)
    # NormalizeImage's arithmetic in float32 on H x W x C (x * 1/255 - mean) / std, then CHW.
    mean = np.asarray(cfg.mean, dtype=np.float32)
    std = np.asarray(cfg.std, dtype=np.float32)
    normalized = (crop.astype(np.float32) * np.float32(1.0 / 255.0) - mean) / std
    return torch.from_numpy(np.ascontiguousarray(normalized.transpose(2, 0, 1)))


# Above this many resized pixels (about 96 MB as RGB) the timm-style resize computes only
# the crop: an ordinary photo (any aspect ratio up to 1:512 at a 256 short side) stays on
# torchvision's exact path; a 1 x 300,000 strip no longer resizes to 256 x 76,800,000 first.
_FULL_RESIZE_PIXELS = 1 << 25


def _timm_resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """torchvision's Resize(int) output (width, height): the long side truncated."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def _timm_style(image: Image.Image, cfg: Preprocess) -> torch.Tensor:
    # timm's eval transform: Resize(short side) -> CenterCrop -> ToTensor -> Normalize.
    mode = _interpolation(cfg)
    new_w, new_h = _timm_resized_size(image.width, image.height, cfg.resize_short)
    if new_w * new_h <= _FULL_RESIZE_PIXELS or min(new_w, new_h) < cfg.crop:
        resized = F.resize(image, cfg.resize_short, mode)
        cropped = F.center_crop(resized, [cfg.crop, cfg.crop])
    else:
        # The crop's box in source coordinates, resized alone (Pillow's ``box``): the same
        # sampling positions, within one level of the full resize (float rounding).
        left = int(round((new_w - cfg.crop) / 2.0))
        top = int(round((new_h - cfg.crop) / 2.0))
        sx, sy = image.width / new_w, image.height / new_h
        box = (left * sx, top * sy, (left + cfg.crop) * sx, (top + cfg.crop) * sy)
        resample = F.pil_modes_mapping[mode]
        cropped = image.resize((cfg.crop, cfg.crop), resample, box=box)
    tensor = F.to_tensor(cropped)
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
