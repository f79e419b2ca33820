"""Eval preprocessing: each weight family's own, reproduced exactly.

``style="paddle"`` is PaddleClas's deploy pipeline (``deploy/python/preprocess.py``:
ResizeImage(resize_short=256) -> CropImage(224) -> NormalizeImage -> ToCHWImage, on the
RGB image that ``cv2.imread`` + BGR->RGB gives), on the library PaddleClas itself uses:
``cv2.imdecode`` (:func:`res2net.data.images.decode_array`), ``cv2.resize`` with
``INTER_LINEAR`` (bilinear, half-pixel centres, no antialiasing, 11-bit fixed point), the
crop as a view, and the normalization as a 256-entry table per channel applied by
``cv2.LUT`` straight into the CHW result (one pass, the same float32 values as NormalizeImage's
arithmetic, which depends on the uint8 level alone). Only a resize too large to hold (a
1 x 300,000 strip would become 256 x 76,800,000) computes the crop alone, with
:func:`opencv_linear_resize`, a port of OpenCV's integer arithmetic that gives its pixels.

``style="timm"`` is timm's eval transform for the original release's weights: PIL bilinear
(antialiased) resize of the short side to ``resize_short``, torchvision's center crop, and
ToTensor + Normalize, done as the same kind of table (torchvision's float32 arithmetic on
each uint8 level).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from res2net.data.images import DEFAULT_MAX_PIXELS, ImageSource, decode_array, load_image
from res2net.data.preprocess import Preprocess, as_preprocess

# torchvision is imported only by the timm-style path: importing it pulls in torch._dynamo
# (through torchvision.ops), seconds of start-up that Paddle-style predictions never use.
_MODES = ("bilinear", "bicubic", "nearest")


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


def _interpolation(cfg: Preprocess):
    """torchvision's ``InterpolationMode`` of ``cfg``."""
    if cfg.interpolation not in _MODES:
        raise ValueError(
            f"unknown interpolation {cfg.interpolation!r}; use one of {', '.join(_MODES)}"
        )
    from torchvision.transforms import InterpolationMode

    return InterpolationMode(cfg.interpolation)


@functools.lru_cache(maxsize=32)
def _paddle_tables(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    """Per channel, NormalizeImage's float32 result for each uint8 level:
    ``(x * float32(1/255) - mean) / std``, in the order and precision it computes them."""
    levels = np.arange(256, dtype=np.float32) * np.float32(1.0 / 255.0)
    return tuple((levels - np.float32(m)) / np.float32(s) for m, s in zip(mean, std, strict=True))


@functools.lru_cache(maxsize=32)
def _timm_tables(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    """Per channel, torchvision's ToTensor (``x / 255``) then Normalize (``(x - mean) / std``)
    for each uint8 level, computed by torch in float32 as those transforms do."""
    levels = torch.arange(256, dtype=torch.float32).div(255)
    mean_t = torch.as_tensor(mean, dtype=torch.float32)
    std_t = torch.as_tensor(std, dtype=torch.float32)
    return tuple(((levels - mean_t[c]) / std_t[c]).numpy() for c in range(3))


def _normalize_chw(crop: np.ndarray, tables: tuple[np.ndarray, ...], bgr: bool) -> torch.Tensor:
    """uint8 H x W x 3 -> float32 3 x H x W RGB through each channel's table (one pass)."""
    out = np.empty((3, *crop.shape[:2]), dtype=np.float32)
    planes = cv2.split(crop)
    for channel, table in enumerate(tables):
        cv2.LUT(planes[2 - channel if bgr else channel], table, dst=out[channel])
    return torch.from_numpy(out)


# Above this many resized pixels (about 96 MB as RGB) only the crop is computed: an ordinary
# photo (any aspect ratio up to 1:512 at a 256 short side) takes the full, exact resize; a
# 1 x 300,000 strip no longer resizes to 256 x 76,800,000 first.
_FULL_RESIZE_PIXELS = 1 << 25


def _paddle_style(pixels: np.ndarray, bgr: bool, cfg: Preprocess) -> torch.Tensor:
    """PaddleClas's ResizeImage -> CropImage -> NormalizeImage -> ToCHWImage on uint8 pixels."""
    height, width = pixels.shape[:2]
    new_w, new_h = paddle_resize_size(width, height, cfg.resize_short)
    if min(new_w, new_h) < cfg.crop:
        raise ValueError(f"resize_short={cfg.resize_short} is smaller than crop={cfg.crop}")
    if cfg.interpolation != "bilinear":
        raise ValueError(f"paddle-style preprocessing is bilinear only, not {cfg.interpolation!r}")
    left, top = center_crop_box(new_w, new_h, cfg.crop)
    if new_w * new_h <= _FULL_RESIZE_PIXELS:
        resized = cv2.resize(pixels, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        crop = resized[top : top + cfg.crop, left : left + cfg.crop]
    else:
        crop = opencv_linear_resize(pixels, new_w, new_h, (left, top, cfg.crop, cfg.crop))
    return _normalize_chw(crop, _paddle_tables(cfg.mean, cfg.std), bgr)


def _timm_resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """torchvision's Resize(int) output (width, height): the long side truncated."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def _timm_style(image: Image.Image, cfg: Preprocess) -> torch.Tensor:
    # timm's eval transform: Resize(short side) -> CenterCrop -> ToTensor -> Normalize.
    from torchvision.transforms import functional as F

    mode = _interpolation(cfg)
    new_w, new_h = _timm_resized_size(image.width, image.height, cfg.resize_short)
    if min(new_w, new_h) < cfg.crop:  # CenterCrop pads: torchvision's own path
        cropped = F.center_crop(F.resize(image, cfg.resize_short, mode), [cfg.crop, cfg.crop])
        return F.normalize(F.to_tensor(cropped), list(cfg.mean), list(cfg.std))
    # torchvision's CenterCrop box: half the excess, rounded.
    left = int(round((new_w - cfg.crop) / 2.0))
    top = int(round((new_h - cfg.crop) / 2.0))
    if new_w * new_h <= _FULL_RESIZE_PIXELS:
        resized = np.asarray(F.resize(image, cfg.resize_short, mode))
        crop = resized[top : top + cfg.crop, left : left + cfg.crop]
    else:
        # The crop's box in source coordinates, resized alone (Pillow's ``box``): the same
        # sampling positions, within one level of the full resize (float rounding).
        sx, sy = image.width / new_w, image.height / new_h
        box = (left * sx, top * sy, (left + cfg.crop) * sx, (top + cfg.crop) * sy)
        resample = F.pil_modes_mapping[mode]
        crop = np.asarray(image.resize((cfg.crop, cfg.crop), resample, box=box))
    return _normalize_chw(crop, _timm_tables(cfg.mean, cfg.std), bgr=False)


def eval_transform(preprocess: Any = None) -> Callable[[Image.Image], torch.Tensor]:
    """The eval transform of a weight entry, for datasets: RGB PIL image -> 3 x crop x crop.

    :param preprocess: a ``Preprocess`` or any form :func:`res2net.data.preprocess.
        as_preprocess` accepts; default: PaddleClas's.
    """
    cfg = as_preprocess(preprocess, "preprocess")

    def transform(image: Image.Image) -> torch.Tensor:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        if cfg.style == "paddle":
            return _paddle_style(np.asarray(rgb), False, cfg)
        return _timm_style(rgb, cfg)

    return transform


def preprocess(
    image: ImageSource,
    preprocess: Any = None,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """Decode (if needed) and preprocess one image for a Res2Net: float32 3 x crop x crop.

    :param image: a path, encoded bytes, a PIL image or an H x W x C uint8 RGB array.
    :param preprocess: how: a ``Preprocess`` (``get_entry(name).preprocess``, ``card.
        preprocess``), its dict form (``load_exported(f).metadata["preprocess"]``), a whole
        card / export metadata dict, or a ``ModelCard``; default: PaddleClas's (short side
        256 bilinear, center crop 224, ImageNet mean/std).
    :param max_pixels: the decoding budget, in pixels of an RGB photo (see
        :func:`res2net.data.images.decode_array`); ``None`` for none.
    :raises ImageDecodeError: the input cannot be decoded, or is over the budget.
    :raises TypeError: ``preprocess`` is none of the forms above.
    """
    cfg = as_preprocess(preprocess, "preprocess")
    if cfg.style == "paddle":
        pixels, bgr = decode_array(image, max_pixels=max_pixels)
        return _paddle_style(pixels, bgr, cfg)
    return _timm_style(load_image(image, max_pixels=max_pixels), cfg)
