"""Eval preprocessing against its peers: PaddleClas's deploy operators and timm's transform."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import timm
from conftest import PHOTOS, ref_package_dir, run_reference
from PIL import Image
from timm.data import create_transform, resolve_data_config

from res2net.data.images import load_image
from res2net.data.labels import imagenet_labels, load_label_file
from res2net.data.preprocess import IMAGENET_STD
from res2net.data.transforms import preprocess
from res2net.models.registry import get_entry

# One uint8 level after normalization, per channel (+ float32 slack): the allowed worst case.
ONE_LEVEL = (1.0 / 255.0 / np.array(IMAGENET_STD) + 1e-5).reshape(3, 1, 1)
# PaddleClas's ImageNet label list, inside its installed package.
PADDLE_LABELS = "ppcls/utils/imagenet1k_label_list.txt"


def _variants(folder) -> list:
    """Inputs that exercise decoding, made from the real photos: each decoder path cv2 has
    (JPEG RGB / gray / CMYK / EXIF-rotated, PNG gray / RGBA / palette / 8- and 16-bit, BMP,
    TIFF, WebP, PPM) and the resize's edge cases (upscaled on both axes, large)."""
    photo = Image.open(PHOTOS[2]).convert("RGB")  # chelsea.png, 451 x 300
    gray = np.asarray(photo.convert("L"), dtype=np.uint16)
    rng = np.random.default_rng(0)
    bgr16 = np.asarray(photo)[..., ::-1].astype(np.uint16) * 256 + rng.integers(
        0, 256, (*gray.shape, 3), np.uint16
    )
    cases = {
        "gray.png": photo.convert("L"),
        "rgba.png": photo.convert("RGBA"),
        "palette.png": photo.quantize(64),
        # 16-bit: high byte = the photo, low byte = noise that the 8-bit result must ignore.
        "gray16.png": Image.fromarray(gray * 256 + rng.integers(0, 256, gray.shape, np.uint16)),
        "tiny.png": photo.resize((7, 5), Image.BILINEAR),
        "large.jpg": photo.resize((3000, 1995), Image.BICUBIC),
        "gray.jpg": photo.convert("L"),
        "cmyk.jpg": photo.convert("CMYK"),
        "photo.bmp": photo,
        "photo.tif": photo,
        "cmyk.tif": photo.convert("CMYK"),
        "photo.webp": photo,
        "photo.ppm": photo,
    }
    rgba = np.asarray(cases["rgba.png"]).copy()
    rgba[..., 3] = rng.integers(0, 256, rgba.shape[:2], np.uint8)  # alpha must be ignored
    cases["rgba.png"] = Image.fromarray(rgba)
    transparent = photo.quantize(64)
    transparent.info["transparency"] = 0  # palette entry 0 transparent: dropped, not composited
    cases["transparent.png"] = transparent
    paths = []
    for name, image in cases.items():
        path = folder / name
        image.save(path, quality=92) if name.endswith((".jpg", ".webp")) else image.save(path)
        paths.append(path)
    for name, array in {"rgb16.png": bgr16, "rgba16.tif": np.dstack([bgr16, gray])}.items():
        assert cv2.imwrite(str(folder / name), array)  # 16-bit colour: OpenCV writes it
        paths.append(folder / name)
    for orientation in (2, 3, 6, 8):  # mirrored, 180, 90 CW, 90 CCW
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = folder / f"exif_{orientation}.jpg"
        photo.save(path, quality=92, exif=exif)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def paddle_tensors(tmp_path_factory) -> dict:
    """file path -> PaddleClas's preprocessed tensor, for the photos and the decoding variants
    (one reference run: starting Paddle is the slow part)."""
    folder = tmp_path_factory.mktemp("variants")
    paths = [*PHOTOS, *_variants(folder)]
    out = folder / "paddle.npz"
    log = run_reference("paddle_preprocess.py", out, *paths)
    assert "pil-decoded" not in log and "unreadable" not in log, log  # all read by cv2
    ref = np.load(out)
    return {path: ref[str(i)] for i, path in enumerate(paths)}


def _compare(paddle_tensors: dict, paths) -> dict[str, float]:
    """Ours vs PaddleClas's deploy operators on each file: worst difference in uint8 levels."""
    report, worst = [], {}
    for path in paths:
        ours = preprocess(path).numpy()
        theirs = paddle_tensors[path]
        assert ours.shape == theirs.shape == (3, 224, 224), path
        diff = np.abs(ours - theirs)
        worst[path.name] = float((diff / ONE_LEVEL).max())
        report.append(
            f"{path.name}: mean |diff| {diff.mean():.6f}, worst {worst[path.name]:.3f} levels"
        )
    print("\n".join(report))
    bad = [name for name, levels in worst.items() if levels > 1.0]
    assert not bad, f"over one uint8 level on {bad}:\n" + "\n".join(report)
    return worst


def test_paddle_preprocess_matches_paddleclas_on_photos(paddle_tensors):
    """Every photo through PaddleClas's own deploy operators vs ours: within one level, and in
    fact identical, because we redo OpenCV's fixed-point bilinear arithmetic."""
    worst = _compare(paddle_tensors, PHOTOS)
    assert len(worst) == len(PHOTOS)
    assert max(worst.values()) < 0.01, worst


def test_paddle_decoding_matches_cv2_imread(paddle_tensors):
    """Every decoder path (gray, RGBA, palette with transparency, 8/16-bit, CMYK JPEG and
    TIFF, BMP, WebP, PPM, four EXIF orientations) and the tiny and large sizes preprocess as
    PaddleClas's own cv2.imread + operators do: identical, since both are OpenCV."""
    variants = [p for p in paddle_tensors if p not in PHOTOS]
    worst = _compare(paddle_tensors, variants)
    assert len(worst) == len(variants) == 20
    assert max(worst.values()) < 0.01, worst


def test_wrong_resampler_is_caught(paddle_tensors):
    """Negative control: an antialiased resize (timm's) is more than one level off PaddleClas."""
    timm_style = preprocess(PHOTOS[0], get_entry("res2net50d").preprocess).numpy()
    assert (np.abs(timm_style - paddle_tensors[PHOTOS[0]]) > ONE_LEVEL).mean() > 0.01


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_timm_style_equals_timm_eval_transform(path):
    """Official-flavour entries preprocess exactly as timm's own eval transform."""
    model = timm.create_model("res2net50d", pretrained=False)
    theirs = create_transform(**resolve_data_config({}, model=model))(
        Image.open(path).convert("RGB")
    )
    ours = preprocess(path, get_entry("res2net50d").preprocess)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-6)


def test_inputs_of_every_kind_give_the_same_tensor():
    """A path, its bytes, the PIL image and the uint8 array are the same input."""
    path = PHOTOS[-1]
    image = load_image(path)
    ref = preprocess(path)
    for source in (path.read_bytes(), image, np.asarray(image), str(path)):
        np.testing.assert_array_equal(preprocess(source).numpy(), ref.numpy())


def test_exif_orientation_is_applied(tmp_path):
    path = next(p for p in _variants(tmp_path) if p.name == "exif_6.jpg")
    assert Image.open(path).size == (451, 300)
    assert load_image(path).size == (300, 451)


def test_imagenet_labels_follow_paddleclas_class_order():
    """torchvision's names and PaddleClas's label list describe the same 1000 classes."""
    ours = imagenet_labels()
    theirs = load_label_file(ref_package_dir("paddleclas") / PADDLE_LABELS)
    assert len(ours) == len(theirs) == 1000
    assert theirs[0].startswith("tench")
    same = sum(a.lower() in b.lower() for a, b in zip(ours, theirs, strict=True))
    assert same > 900, f"only {same} of 1000 names agree"


def test_label_file_formats_and_errors(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("cat\ndog\n\n")
    assert load_label_file(plain) == ["cat", "dog"]
    numbered = tmp_path / "numbered.txt"
    numbered.write_text("1 dog\n0 cat\n")
    assert load_label_file(numbered) == ["cat", "dog"]
    gap = tmp_path / "gap.txt"
    gap.write_text("0 cat\n2 dog\n")
    with pytest.raises(ValueError, match=r"gap.txt.*missing \[1\]"):
        load_label_file(gap)
    with pytest.raises(ValueError, match=r"label file .*absent\.txt: no such file"):
        load_label_file(tmp_path / "absent.txt")
