"""Decoding images the way PaddleClas's predictor sees them, with errors a person can act on.

PaddleClas's deploy predictor decodes with ``cv2.imread(path)`` (``IMREAD_COLOR``) and flips
BGR to RGB. That flag means: grayscale is replicated to three channels, alpha is dropped
(not composited), 16-bit samples keep their high byte, CMYK JPEGs are converted with
OpenCV's integer formula, and the EXIF orientation is applied.
:func:`load_image` gives the same pixels with Pillow, so the package needs no OpenCV.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Pillow's own decompression-bomb threshold (Image.MAX_IMAGE_PIXELS): about 0.25 GiB as RGBA.
DEFAULT_MAX_PIXELS = 89_478_485

# Suffixes picked up when a folder is walked; files named explicitly are always tried.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray


class ImageDecodeError(ValueError):
    """An input could not be turned into an RGB image; the message names it and says why."""


def describe_source(source: ImageSource) -> str:
    """A short human-readable name for an input: its path, or its kind and size."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.width}x{source.height}>"
    if isinstance(source, np.ndarray):
        return f"<array {source.dtype} {'x'.join(map(str, source.shape))}>"
    return f"<{type(source).__name__}>"


def load_image(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``source`` to an 8-bit RGB image, as PaddleClas's predictor would see it.

    :param source: a file path, encoded file bytes, a PIL image, or an H x W (x 1/3/4) uint8
        array in RGB(A) order.
    :param max_pixels: refuse images with more pixels than this (decompression bombs) before
        decoding them; ``None`` for no limit of ours (Pillow's hard cap of twice its
        ``Image.MAX_IMAGE_PIXELS`` still applies).
    :raises ImageDecodeError: empty, truncated, corrupt or non-image data, or too many pixels.
    """
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        return _from_array(source, name, max_pixels)
    if isinstance(source, Image.Image):
        _check_pixels(source, name, max_pixels)
        return _to_rgb(source)
    if isinstance(source, (str, os.PathLike)):
        data = _read_file(Path(source), name)
    elif isinstance(source, bytes):
        data = source
    else:
        raise ImageDecodeError(
            f"{name}: unsupported input type; pass a path, bytes, a PIL image or a uint8 array"
        )
    if not data:
        raise ImageDecodeError(f"{name}: empty file (0 bytes); nothing to decode")
    return _decode(data, name, max_pixels)


def _read_file(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageDecodeError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageDecodeError(f"{name}: is a folder, not an image file") from None
    except OSError as exc:
        raise ImageDecodeError(f"{name}: cannot read ({exc.strerror or exc})") from None


def _decode(data: bytes, name: str, max_pixels: int | None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Our own limit replaces Pillow's warning; its hard error is still reported below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(BytesIO(data))
            _check_pixels(image, name, max_pixels)
            image.load()
    except ImageDecodeError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(
            f"{name}: not an image (no known image format; {len(data)} bytes)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{name}: over Pillow's pixel limit ({exc})") from None
    except Exception as exc:  # decoders raise OSError, SyntaxError, EOFError, ValueError ...
        reason = str(exc) or type(exc).__name__
        kind = "truncated" if "truncated" in reason.lower() else "corrupt"
        raise ImageDecodeError(f"{name}: {kind} image data ({reason})") from None
    return _to_rgb(image)


def _check_pixels(image: Image.Image, name: str, max_pixels: int | None) -> None:
    pixels = image.width * image.height
    if max_pixels is not None and pixels > max_pixels:
        raise ImageDecodeError(
            f"{name}: {image.width}x{image.height} = {pixels:,} pixels is over the limit of "
            f"{max_pixels:,} (possible decompression bomb); raise max_pixels / --max-pixels "
            "if the image is trusted"
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    cmyk_jpeg = image.mode == "CMYK" and image.format == "JPEG"
    # cv2's IMREAD_COLOR applies the EXIF orientation; so do we.
    image = ImageOps.exif_transpose(image)
    if cmyk_jpeg:
        return _cmyk_jpeg_to_rgb(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: keep the high byte, as libpng's 16->8 strip in OpenCV does.
        # (Pillow's own I;16 -> L conversion clips at 255 instead.)
        high = (np.asarray(image).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return Image.fromarray(high).convert("RGB")
    if image.mode == "F":
        return Image.fromarray(np.asarray(image).clip(0, 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("P", "PA") and "transparency" in image.info:
        # Via RGBA: the palette colours, alpha dropped (Pillow warns on the direct route).
        image = image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def _cmyk_jpeg_to_rgb(image: Image.Image) -> Image.Image:
    """CMYK JPEG to RGB as OpenCV does it (``icvCvt_CMYK2BGR_8u_C4C3R`` in its JPEG decoder).

    OpenCV converts libjpeg's raw samples, which are stored inverted (the Adobe convention
    that Pillow undoes on decoding), as ``k - ((255 - c) * k >> 8)``; Pillow's own CMYK ->
    RGB rounds differently, up to 2 levels away.
    """
    raw = 255 - np.asarray(image, dtype=np.int32)
    c, m, y, k = (raw[..., i] for i in range(4))
    rgb = np.stack([k - ((255 - channel) * k >> 8) for channel in (c, m, y)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def _from_array(array: np.ndarray, name: str, max_pixels: int | None) -> Image.Image:
    if array.dtype != np.uint8:
        raise ImageDecodeError(f"{name}: arrays must be uint8 (0-255); convert with .astype")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageDecodeError(f"{name}: expected an H x W, H x W x 3 or H x W x 4 array")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageDecodeError(f"{name}: empty image (a side of length 0)")
    image = Image.fromarray(np.ascontiguousarray(array))  # L, RGB or RGBA from the shape
    _check_pixels(image, name, max_pixels)
    return image if image.mode == "RGB" else image.convert("RGB")


def collect_images(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Expand folders (recursively, sorted, image suffixes only); keep files as given.

    Paths that do not exist are kept, so that the caller reports them as failed inputs.
    """
    found: list[str] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(
                str(p)
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            found.append(str(path))
    return found
