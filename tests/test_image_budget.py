"""Decoders with budgets: images are costed in decoded bytes from their header (mode-aware),
the cost bounds the real peak memory, and inputs are regular files read under a cap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PHOTOS
from PIL import Image

from res2net.data.images import (
    BUDGET_BYTES_PER_PIXEL,
    ImageDecodeError,
    decode_array,
    decoded_bytes,
    load_image,
)
from res2net.data.labels import MAX_LABEL_FILE_BYTES, load_label_file
from res2net.data.preprocess import Preprocess, PreprocessError, as_preprocess
from res2net.data.transforms import preprocess

REPO = Path(__file__).resolve().parents[1]
# Allocator slack, page rounding and first-use costs on top of an image's budgeted bytes.
RSS_SLACK_MB = 24

_CHILD = """
import json, resource, sys
from res2net.data.transforms import preprocess
from res2net.data.preprocess import Preprocess
path, warm, style = sys.argv[1], sys.argv[2], sys.argv[3]
preprocess(warm, Preprocess(style=style), max_pixels=None)  # first-use costs of this decoder
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
shape = tuple(preprocess(path, Preprocess(style=style), max_pixels=None).shape)
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"shape": shape, "grew_mb": grew / 1024}))
"""


def _photo(width: int, height: int) -> Image.Image:
    """A real photo at any size (smooth, so that files stay small)."""
    return Image.open(PHOTOS[0]).convert("RGB").resize((width, height), Image.BILINEAR)


def _save(image: Image.Image | np.ndarray, path: Path, **options) -> Path:
    if isinstance(image, np.ndarray):  # 16-bit and BGR(A) arrays: OpenCV writes them as given
        assert cv2.imwrite(str(path), image)
    else:
        image.save(path, **options)
    return path


def _crafted(folder: Path, width: int, height: int) -> dict[str, Path]:
    """One file per decoder route and costly mode, all ``width`` x ``height``."""
    photo = _photo(width, height)
    rgb16 = np.asarray(photo)[..., ::-1].astype(np.uint16) * 257
    rgba16 = np.dstack([rgb16, np.full(rgb16.shape[:2], 65535, np.uint16)])
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "rgb.jpg": _save(photo, folder / "rgb.jpg", quality=85),
        "cmyk.jpg": _save(photo.convert("CMYK"), folder / "cmyk.jpg", quality=85),
        "rotated.jpg": _save(photo, folder / "rotated.jpg", quality=85, exif=exif),
        "rgba16.png": _save(rgba16, folder / "rgba16.png"),
        "cmyk.tif": _save(photo.convert("CMYK"), folder / "cmyk.tif", compression="tiff_lzw"),
        "rgba.webp": _save(photo.convert("RGBA"), folder / "rgba.webp", quality=80),
        "palette.gif": _save(photo.convert("P"), folder / "palette.gif"),
    }


@pytest.fixture(scope="module")
def crafted(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("crafted")
    files = _crafted(folder, 3000, 3000)
    (folder / "warm").mkdir()
    warm = _crafted(folder / "warm", 64, 48)
    return {name: (path, warm[name]) for name, path in files.items()}


@pytest.mark.parametrize(
    "name",
    ["rgb.jpg", "cmyk.jpg", "rotated.jpg", "rgba16.png", "cmyk.tif", "rgba.webp", "palette.gif"],
)
def test_budgeted_bytes_bound_the_real_peak_memory(crafted, name):
    """Peak RSS growth of a fresh process preprocessing a 3000 x 3000 file stays within what
    decoded_bytes() charged for it (plus the file itself and allocator slack). A CMYK JPEG
    used to take about 44 bytes a pixel (396 MB here); it is charged 6 and must stay there."""
    path, warm = crafted[name]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(warm), "paddle"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["shape"] == [3, 224, 224]
    charged_mb = (decoded_bytes(path.read_bytes()) + path.stat().st_size) / 2**20
    assert result["grew_mb"] <= charged_mb + RSS_SLACK_MB, (result, charged_mb)


def test_cost_is_mode_aware(crafted):
    """The same pixels cost what their decoding holds: a CMYK TIFF more than a JPEG."""
    jpeg = decoded_bytes(crafted["rgb.jpg"][0].read_bytes())
    assert jpeg == 3000 * 3000 * BUDGET_BYTES_PER_PIXEL
    assert decoded_bytes(crafted["cmyk.tif"][0].read_bytes()) > 2 * jpeg
    assert decoded_bytes(crafted["rotated.jpg"][0].read_bytes()) > jpeg  # one more copy
    assert decoded_bytes(crafted["palette.gif"][0].read_bytes()) > jpeg  # Pillow's route


def test_budget_refuses_by_bytes_before_decoding(crafted):
    """Under a budget of 10 million photo pixels, the 9-million-pixel JPEG passes and the
    9-million-pixel CMYK TIFF (16 bytes a pixel) is refused, with its size and the limit."""
    budget = 10_000_000
    assert preprocess(crafted["rgb.jpg"][0], max_pixels=budget).shape == (3, 224, 224)
    with pytest.raises(ImageDecodeError, match=r"cmyk\.tif: 3000x3000 = 9,000,000 pixels "
                       r"\(TIFF CMYK\) take 144.0 MB to decode, over the limit of 10,000,000 "
                       r"pixels of an RGB photo \(60.0 MB"):
        preprocess(crafted["cmyk.tif"][0], max_pixels=budget)
    with pytest.raises(ImageDecodeError, match="over the limit"):
        load_image(crafted["cmyk.tif"][0].read_bytes(), max_pixels=budget)


def test_large_cmyk_jpeg_is_read_as_opencv_reads_it(crafted):
    """CMYK goes through OpenCV's own decoder (the pixels PaddleClas sees), also for PIL."""
    path = crafted["cmyk.jpg"][1]
    theirs = cv2.imread(str(path), cv2.IMREAD_COLOR)
    pixels, bgr = decode_array(path)
    assert bgr and np.array_equal(pixels, theirs)
    assert np.array_equal(np.asarray(load_image(path)), theirs[..., ::-1])


def test_truncated_and_corrupt_files_are_refused(tmp_path):
    """libjpeg fills a cut JPEG with gray and OpenCV returns it; we refuse it (as Pillow)."""
    jpeg = next(p for p in PHOTOS if p.suffix == ".jpg").read_bytes()
    with pytest.raises(ImageDecodeError, match="truncated image data"):
        decode_array(jpeg[: len(jpeg) // 2])
    png = PHOTOS[0].read_bytes()
    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        decode_array(png[: len(png) // 2])
    with pytest.raises(ImageDecodeError, match="not an image"):
        decode_array(b"hello, not an image" * 10)


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "folder"])
def test_special_files_fail_alone_at_once(tmp_path, special):
    """A device, a FIFO (which would block until a writer came) or a folder is refused by
    kind, without reading a byte of it."""
    path = {"/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "fifo", "folder": tmp_path}[special]
    if special == "fifo":
        os.mkfifo(path)
    words = "is a folder" if special == "folder" else "not a regular file"
    with pytest.raises(ImageDecodeError, match=rf"^{path}: {words}"):
        preprocess(path)


def test_image_file_size_is_capped(tmp_path):
    """A regular file larger than an uncompressed image of the budget is not read."""
    big = tmp_path / "big.jpg"
    with open(big, "wb") as fh:
        fh.truncate(64 << 20)  # sparse: costs no disk
    with pytest.raises(ImageDecodeError, match=r"big\.jpg: 67,108,864 bytes, over the limit"):
        preprocess(big, max_pixels=1_000_000)


def test_label_files_are_regular_and_capped(tmp_path):
    with pytest.raises(ValueError, match=r"^label file /dev/zero: not a regular file"):
        load_label_file("/dev/zero")
    fifo = tmp_path / "labels.fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        load_label_file(fifo)
    big = tmp_path / "big.txt"
    with open(big, "wb") as fh:
        fh.truncate(MAX_LABEL_FILE_BYTES + 1)
    with pytest.raises(ValueError, match=r"big\.txt: .* bytes, over the limit"):
        load_label_file(big)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00cat\n")
    with pytest.raises(ValueError, match="not UTF-8 text"):
        load_label_file(binary)


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "res2net", *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip


def test_cli_special_inputs_each_fail_alone(tmp_path):
    """`predict good.jpg FIFO /dev/zero`: the good image is classified, each bad one is one
    line naming it, exit 1, nothing hangs (before: the FIFO blocked the whole run)."""
    fifo = tmp_path / "image.fifo"
    os.mkfifo(fifo)
    proc = _cli(
        "predict", str(PHOTOS[0]), str(fifo), "/dev/zero",
        "--model", "Res2Net50_26w_4s", "--random-weights", "--engine", "eager",
        "--num-workers", "0", "--json",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    failed = [line for line in proc.stderr.splitlines() if line.startswith("failed: ")]
    assert failed == [
        f"failed: {fifo}: not a regular file (a FIFO); pass a file on disk",
        "failed: /dev/zero: not a regular file (a device or socket); pass a file on disk",
    ]
    assert "Traceback" not in proc.stderr
    predictions = json.loads(proc.stdout)["predictions"]
    assert [p["error"] is None for p in predictions] == [True, False, False]


def test_cli_labels_from_a_device_is_a_usage_error():
    """`--labels /dev/zero` used to grow until a MemoryError traceback: now one line, exit 2."""
    argv = ["predict", str(PHOTOS[0]), "--model", "Res2Net50_26w_4s", "--random-weights"]
    proc = _cli(*argv, "--labels", "/dev/zero")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].endswith("error: label file /dev/zero: not a regular file (a device or "
                              "socket); pass a file on disk"), lines
    assert "Traceback" not in proc.stderr


def test_preprocess_accepts_every_documented_form():
    """Issue 26: `preprocess(img, load_exported(f).metadata["preprocess"])` raised
    AttributeError. A Preprocess, its dict, a whole card / metadata dict and a ModelCard give
    the same tensor; anything else is a TypeError saying what to pass."""
    from res2net.card import load_card

    card = load_card("res2net50d")  # timm flavour: not the default, so a dropped one shows
    metadata = {"format": "onnx", **card.to_dict()}
    expected = preprocess(PHOTOS[0], card.preprocess)
    assert not np.array_equal(expected.numpy(), preprocess(PHOTOS[0]).numpy())
    for form in (card.preprocess.to_dict(), metadata, card):
        assert as_preprocess(form) == card.preprocess
        np.testing.assert_array_equal(preprocess(PHOTOS[0], form).numpy(), expected.numpy())
    with pytest.raises(TypeError, match=r"preprocess must be a Preprocess, its dict form.*int"):
        preprocess(PHOTOS[0], 42)
    with pytest.raises(PreprocessError, match=r"preprocess\['preprocess'\]\.crop"):
        preprocess(PHOTOS[0], {"preprocess": {**Preprocess().to_dict(), "crop": 0}})

