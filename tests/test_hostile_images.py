"""Extreme and hostile images: memory follows the crop, not the source's long side, and
one input's failure (whatever the exception) is that input's error alone."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from timm.data import create_transform

from res2net.data.datasets import ImageDataset, build_dataset, list_file_samples
from res2net.data.preprocess import IMAGENET_STD, Preprocess
from res2net.data.transforms import preprocess

REPO = Path(__file__).resolve().parents[1]
BUDGET_MB = 100
ONE_LEVEL = (1.0 / 255.0 / np.array(IMAGENET_STD) + 1e-5).reshape(3, 1, 1)

_CHILD = """
import json, resource, sys
import numpy as np
from PIL import Image
from res2net.data.transforms import preprocess
from res2net.data.preprocess import Preprocess
width, height, style = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
preprocess(image.resize((300, 300)), Preprocess(style=style))  # warm-up: first-call costs
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
shape = tuple(preprocess(image, Preprocess(style=style)).shape)
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"shape": shape, "grew_mb": grew / 1024}))
"""


@pytest.mark.parametrize("style", ["paddle", "timm"])
@pytest.mark.parametrize("size", [(300_000, 1), (1, 200_000)])
def test_extreme_aspect_ratio_memory_follows_the_crop(style, size):
    # 1 x 300,000 resized to a 256 short side would be 256 x 76,800,000 pixels (59 GB).
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *map(str, size), style],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["shape"] == [3, 224, 224]
    assert result["grew_mb"] < BUDGET_MB, result


def test_long_strip_paddle_style_equals_opencv():
    """The windowed resize of a long strip is still OpenCV's, pixel for pixel."""
    rng = np.random.default_rng(1)
    strip = rng.integers(0, 256, (10, 2000, 3), dtype=np.uint8)  # resized: 256 x 51,200
    ours = preprocess(strip, Preprocess())
    new_w, new_h = 51_200, 256
    full = cv2.resize(strip, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    left, top = (new_w - 224) // 2, (new_h - 224) // 2
    crop = full[top : top + 224, left : left + 224].astype(np.float32)
    cfg = Preprocess()
    expected = (crop * np.float32(1 / 255) - np.float32(cfg.mean)) / np.float32(cfg.std)
    np.testing.assert_array_equal(ours.numpy(), expected.transpose(2, 0, 1))


@pytest.mark.parametrize("size", [(2, 1100), (1300, 2)])
def test_long_strip_timm_style_is_within_a_level_of_timm(size):
    """Past the full-resize budget the crop is resized alone: within one level of timm."""
    rng = np.random.default_rng(2)
    strip = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    cfg = Preprocess(style="timm")
    timm_eval = create_transform(224, interpolation="bilinear", crop_pct=224 / 256)
    diff = np.abs(preprocess(strip, cfg).numpy() - timm_eval(strip).numpy())
    assert (diff <= ONE_LEVEL).all()


def test_predictor_keeps_going_after_any_exception(monkeypatch):
    from res2net.deploy.predictor import Predictor

    predictor = Predictor("Res2Net50_26w_4s", num_workers=2, batch_size=2)
    real = predictor.preprocess

    def flaky(source):
        if isinstance(source, bytes):
            raise MemoryError("simulated: out of memory on this input")
        return real(source)

    monkeypatch.setattr(predictor, "preprocess", flaky)
    good = np.zeros((32, 32, 3), np.uint8)
    results = predictor.predict([good, b"boom", good])
    assert results[0].ok and results[2].ok
    assert "MemoryError" in results[1].error and "<4 bytes>" in results[1].error


def test_dataset_on_corrupt_covers_any_exception(tmp_path):
    folder = tmp_path / "data" / "cat"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "a.png")

    def broken(image):
        raise RuntimeError("transform blew up")

    skip = build_dataset(tmp_path / "data", broken, on_corrupt="skip")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert skip[0] is None
    fail = ImageDataset(skip.samples, broken, on_corrupt="fail")
    with pytest.raises(RuntimeError, match=r"a\.png: cannot decode image \(RuntimeError"):
        fail[0]


def test_labels_out_of_range_are_refused_with_file_and_line(tmp_path):
    lst = tmp_path / "train.txt"
    for bad, words in (("-1", "label -1 is out of range"), ("10", "label 10 is out of range")):
        lst.write_text(f"a.png 0\nb.png {bad}\n")
        with pytest.raises(ValueError, match=rf"train\.txt:2: {words} \(must be 0 to 9\)"):
            list_file_samples(lst, tmp_path, num_classes=10)
    lst.write_text("a.png 0\nb.png \u0663\n")  # an Arabic-Indic digit three
    with pytest.raises(ValueError, match=r"train\.txt:2: expected"):
        list_file_samples(lst, tmp_path)
    for name in ("a", "b", "c"):
        (tmp_path / "folders" / name).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "folders" / name / "x.png")
    with pytest.raises(ValueError, match=r"folders: 3 class folders but the model has 2"):
        build_dataset(tmp_path / "folders", torch.zeros, num_classes=2)


def test_training_refuses_labels_beyond_num_classes_before_the_first_batch(tmp_path):
    from conftest import tiny_config

    from res2net.data.datasets import render_digits
    from res2net.engine.config import load_config
    from res2net.engine.train import train

    render_digits(tmp_path / "digits", size=16)
    cfg = tiny_config(tmp_path / "digits", tmp_path / "out", model={"num_classes": 5})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))  # ten digit folders, a five-class model
    with pytest.raises(ValueError, match="10 class folders but the model has 5 classes"):
        train(load_config(path))


def test_decoded_png_bomb_is_refused_by_pixels_not_bytes():
    # 79 KB of PNG that decodes to 9000 x 9000: refused from its header under a budget.
    buf = BytesIO()
    Image.new("L", (9000, 9000)).save(buf, "PNG")
    from res2net.data.images import ImageDecodeError, load_image

    with pytest.raises(ImageDecodeError, match="81,000,000 pixels .* over the limit"):
        load_image(buf.getvalue(), max_pixels=50_000_000)
