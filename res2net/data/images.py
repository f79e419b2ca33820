"""Decoding images the way PaddleClas's predictor sees them, with errors a person can act on.

PaddleClas's deploy predictor decodes with ``cv2.imread(path)`` (``IMREAD_COLOR``) and flips
BGR to RGB. That flag means: grayscale is replicated to three channels, alpha is dropped
(not composited), 16-bit samples keep their high byte, CMYK JPEGs are converted with
OpenCV's integer formula, and the EXIF orientation is applied.

:func:`decode_array` does exactly that with ``cv2.imdecode`` for the formats OpenCV reads
(JPEG, PNG, BMP, TIFF, WebP, PNM), and with Pillow, to the same rules, for the rest (GIF
and other formats that PaddleClas's OpenCV cannot read). :func:`load_image` gives a PIL
image (Pillow's decoder) for timm-style preprocessing and datasets.

Every input is budgeted before it is decoded, in the bytes its decoding holds at the peak
(:func:`decoded_bytes`, from the header alone), and files are read only when they are
regular files under a size cap.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from io import BytesIO
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image, ImageOps

from res2net.data.files import InputFileError, read_regular_file

# Pillow's own decompression-bomb threshold (Image.MAX_IMAGE_PIXELS): about 0.25 GiB as RGBA.
DEFAULT_MAX_PIXELS = 89_478_485

# Suffixes picked up when a folder is walked; files named explicitly are always tried.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray

# Peak bytes per pixel that decoding holds, by route. OpenCV (5.1, measured as the growth of
# a fresh process's peak RSS; tests/test_image_budget.py holds each against the real thing):
# its 8-bit BGR result plus one more buffer of that size, whatever the source mode (CMYK,
# 16-bit and alpha are converted row by row); WebP decodes to BGRA first; TIFF holds a
# 4-channel copy of its own.
_OPENCV_BYTES_PER_PIXEL = {
    "JPEG": 6, "MPO": 6, "PNG": 6, "BMP": 6, "DIB": 6, "PPM": 6, "WEBP": 8, "TIFF": 16,
}  # fmt: skip
# An EXIF rotation or flip makes one more copy of the result (OpenCV's and ours alike).
_ORIENTATION_BYTES_PER_PIXEL = 4
# Pillow holds 1 byte per pixel for these modes, 2 for 16-bit and 4 for every other mode;
# its route then adds an RGB image (4) and the array handed on (3).
_PILLOW_STORAGE = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_PILLOW_ROUTE_EXTRA = 4 + 3
# Modes that load_image leaves to OpenCV: Pillow would widen them to 32-bit integers.
_OPENCV_MODES = frozenset({"CMYK", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
# The unit of the budget: what an 8-bit RGB JPEG costs per pixel, so that ``max_pixels``
# still means "pixels of an ordinary photo" while a costlier file is held to its bytes.
BUDGET_BYTES_PER_PIXEL = _OPENCV_BYTES_PER_PIXEL["JPEG"]
# Headers, EXIF and ICC profiles on top of the largest uncompressed 8-bit RGB file.
_FILE_SLACK_BYTES = 16 << 20


class ImageDecodeError(ValueError):
    """An input could not be turned into an RGB image; the message names it and says why."""


class Decoded(NamedTuple):
    """Decoded 8-bit pixels, H x W x 3, in BGR order when ``bgr`` (as OpenCV gives them)."""

    pixels: np.ndarray
    bgr: bool


class ImageHeader(NamedTuple):
    """What an encoded image's header says, read without decoding its pixels."""

    width: int
    height: int
    mode: str
    format: str | None
    rotated: bool


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


def decode_budget(max_pixels: int | None) -> int | None:
    """The decoding budget in bytes that ``max_pixels`` stands for (``None``: no budget)."""
    return None if max_pixels is None else max_pixels * BUDGET_BYTES_PER_PIXEL


def max_file_bytes(max_pixels: int | None) -> int | None:
    """The largest image file read under ``max_pixels``: an uncompressed 8-bit RGB file of
    that many pixels, plus room for metadata (``None``: no cap)."""
    return None if max_pixels is None else max_pixels * 3 + _FILE_SLACK_BYTES


def read_header(data: bytes, name: str = "<bytes>") -> ImageHeader:
    """Size, mode and format of encoded image ``data`` from its header (no pixels decoded).

    :raises ImageDecodeError: not an image format Pillow or OpenCV knows, or a corrupt header.
    """
    with _pillow_errors(name, data, _header_failure), Image.open(BytesIO(data)) as image:
        rotated = "exif" in image.info and _orientation(image) not in (0, 1)
        return ImageHeader(image.width, image.height, image.mode, image.format, rotated)


def _header_failure(reason: str) -> str:
    return f"corrupt image header ({reason})"


@contextlib.contextmanager
def _pillow_errors(name: str, data: bytes, other: Callable[[str], str]) -> Iterator[None]:
    """Pillow's failures on ``data`` as :class:`ImageDecodeError` naming ``name``; ``other``
    words any other failure from its reason (a header parser's or decoder's OSError,
    SyntaxError, struct.error, EOFError, ValueError ...). Our own budget replaces Pillow's
    decompression-bomb warning; its hard error is still reported."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(
            f"{name}: not an image (no known image format; {len(data)} bytes)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{name}: over Pillow's pixel limit ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - any failure of crafted data is the data's
        raise ImageDecodeError(f"{name}: {other(str(exc) or type(exc).__name__)}") from None


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag; an unreadable EXIF block counts as rotated (the decoder may
    still read one, and then makes the copy that a rotation costs)."""
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a corrupt EXIF block is not a corrupt image
        return -1


def header_bytes(header: ImageHeader) -> int:
    """Peak bytes that decoding an image with this header holds (see :func:`decoded_bytes`)."""
    per_pixel = _OPENCV_BYTES_PER_PIXEL.get(header.format or "")
    if per_pixel is None:
        per_pixel = _PILLOW_STORAGE.get(header.mode, 4) + _PILLOW_ROUTE_EXTRA
    if header.rotated:
        per_pixel += _ORIENTATION_BYTES_PER_PIXEL
    return header.width * header.height * per_pixel


def decoded_bytes(data: bytes) -> int:
    """What decoding encoded image ``data`` costs in memory, in bytes, from its header alone:
    an upper bound on the peak that :func:`decode_array` (and PaddleClas-style preprocessing)
    holds for it, by format and mode (a CMYK TIFF costs more than a grayscale PNG).

    Compare it with :func:`decode_budget` of a pixel limit, or with a server's own budget.

    :raises ImageDecodeError: not an image, or a corrupt header.
    """
    return header_bytes(read_header(data))


def decode_array(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode ``source`` to 8-bit 3-channel pixels exactly as ``cv2.imread(path)`` would.

    :param source: a file path, encoded file bytes, a PIL image, or an H x W (x 1/3/4) uint8
        array in RGB(A) order.
    :param max_pixels: the budget, in pixels of an 8-bit RGB JPEG: an input whose decoding
        would hold more bytes than such a photo (:func:`decoded_bytes`) is refused before it
        is decoded, and files over :func:`max_file_bytes` are not read. ``None``: no budget.
    :raises ImageDecodeError: empty, truncated, corrupt or non-image data, a path that is
        not a regular file, or over the budget.
    """
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        return Decoded(_from_array(source, name, max_pixels), bgr=False)
    if isinstance(source, Image.Image):
        _check_decoded(source, name, max_pixels)
        return Decoded(np.asarray(_to_rgb(source)), bgr=False)
    data = _source_bytes(source, name, max_pixels)
    header = read_header(data, name)
    _check_budget(header, name, max_pixels)
    if header.format in _OPENCV_BYTES_PER_PIXEL:
        return Decoded(_opencv_decode(data, name), bgr=True)
    return Decoded(np.asarray(_pillow_decode(data, name)), bgr=False)


def load_image(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``source`` to an 8-bit RGB PIL image, as PaddleClas's predictor would see it.

    Pillow decodes (timm's decoder), except CMYK and 16-bit images in formats OpenCV reads:
    their conversion is OpenCV's own, and Pillow's route to it would hold several times the
    budgeted bytes. Arguments and errors as :func:`decode_array`.
    """
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        return Image.fromarray(_from_array(source, name, max_pixels))
    if isinstance(source, Image.Image):
        _check_decoded(source, name, max_pixels)
        return _to_rgb(source)
    data = _source_bytes(source, name, max_pixels)
    header = read_header(data, name)
    _check_budget(header, name, max_pixels)
    if header.mode in _OPENCV_MODES and header.format in _OPENCV_BYTES_PER_PIXEL:
        pixels = _opencv_decode(data, name)
        return Image.fromarray(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB, dst=pixels))
    return _pillow_decode(data, name)


def _source_bytes(source: ImageSource, name: str, max_pixels: int | None) -> bytes:
    if isinstance(source, (str, os.PathLike)):
        try:
            data = read_regular_file(source, max_file_bytes(max_pixels))
        except InputFileError as exc:
            raise ImageDecodeError(str(exc)) from None
    elif isinstance(source, bytes):
        data = source
    else:
        raise ImageDecodeError(
            f"{name}: unsupported input type; pass a path, bytes, a PIL image or a uint8 array"
        )
    if not data:
        raise ImageDecodeError(f"{name}: empty file (0 bytes); nothing to decode")
    return data


def _check_decoded(image: Image.Image | np.ndarray, name: str, max_pixels: int | None) -> None:
    """An image already in memory costs the budget as many pixels of a photo would."""
    if isinstance(image, Image.Image):
        header = ImageHeader(image.width, image.height, image.mode, None, rotated=False)
    else:
        header = ImageHeader(image.shape[1], image.shape[0], "array", None, rotated=False)
    cost = header.width * header.height * BUDGET_BYTES_PER_PIXEL
    _check_budget(header, name, max_pixels, cost)


def _check_budget(
    header: ImageHeader, name: str, max_pixels: int | None, cost: int | None = None
) -> None:
    """Refuse ``header``'s image when decoding it (``cost`` bytes, default its
    :func:`header_bytes`) is over the budget that ``max_pixels`` stands for."""
    budget = decode_budget(max_pixels)
    if budget is None:
        return
    cost = header_bytes(header) if cost is None else cost
    if cost > budget:
        pixels = header.width * header.height
        kind = " ".join(filter(None, (header.format, header.mode)))
        raise ImageDecodeError(
            f"{name}: {header.width}x{header.height} = {pixels:,} pixels ({kind}) take "
            f"{cost / 1e6:,.1f} MB to decode, over the limit of {max_pixels:,} pixels of an "
            f"RGB photo ({budget / 1e6:,.1f} MB; possible decompression bomb); raise "
            "max_pixels / --max-pixels if the image is trusted"
        )


def _truncated_jpeg(data: bytes) -> bool:
    """Whether a JPEG stops before its end-of-image marker. libjpeg decodes such a file with
    a warning, filling the missing part with gray, and OpenCV returns that image; Pillow
    refuses it, and so do we (as res2net-cpp does). Inside entropy-coded data every 0xFF is
    followed by 0x00 or a restart marker, so the last start-of-scan (FF DA) begins the last
    scan, and a complete file has an end-of-image (FF D9) after it: no start-of-scan follows
    the last end-of-image (searched from the end, so only the file's tail is scanned)."""
    if not data.startswith(b"\xff\xd8"):
        return False
    end = data.rfind(b"\xff\xd9")
    return end < 0 or data.find(b"\xff\xda", end) >= 0


def _opencv_decode(data: bytes, name: str) -> np.ndarray:
    if _truncated_jpeg(data):
        raise ImageDecodeError(
            f"{name}: truncated image data (the JPEG ends before its end-of-image marker)"
        )
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        reason = (exc.err or str(exc)).strip()
        raise ImageDecodeError(f"{name}: corrupt image data ({reason})") from None
    if pixels is None:
        raise ImageDecodeError(
            f"{name}: truncated or corrupt image data (OpenCV cannot decode its "
            f"{len(data)} bytes)"
        )
    return pixels


def _pillow_decode(data: bytes, name: str) -> Image.Image:
    with _pillow_errors(name, data, _image_data_failure):
        image = Image.open(BytesIO(data))
        image.load()
    return _to_rgb(image)


def _image_data_failure(reason: str) -> str:
    kind = "truncated" if "truncated" in reason.lower() else "corrupt"
    return f"{kind} image data ({reason})"


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


def _from_array(array: np.ndarray, name: str, max_pixels: int | None) -> np.ndarray:
    """A uint8 gray, RGB or RGBA array as 8-bit RGB (alpha dropped, gray replicated)."""
    if array.dtype != np.uint8:
        raise ImageDecodeError(f"{name}: arrays must be uint8 (0-255); convert with .astype")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageDecodeError(f"{name}: expected an H x W, H x W x 3 or H x W x 4 array")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageDecodeError(f"{name}: empty image (a side of length 0)")
    _check_decoded(array, name, max_pixels)
    if array.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(array[:, :, :3])


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
