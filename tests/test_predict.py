"""Predictor and `res2net predict`: end-to-end against PaddleClas, bad and unusual inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import PHOTOS, run_reference
from PIL import Image

from res2net.cli import main as cli_main
from res2net.data.images import ImageDecodeError, load_image
from res2net.deploy.predictor import Prediction, Predictor
from res2net.models.registry import get_entry

MODEL = "Res2Net50_vd_26w_4s"


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    """Random weights: enough to test the plumbing (the end-to-end test loads real ones)."""
    return Predictor("Res2Net50_26w_4s", batch_size=4, num_workers=2)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """The photos in a folder tree (one in a subfolder), plus a non-image file to skip."""
    root = tmp_path_factory.mktemp("photos")
    (root / "sub").mkdir()
    for i, photo in enumerate(PHOTOS):
        shutil.copy(photo, root / ("sub" if i == 0 else ".") / photo.name)
    (root / "notes.txt").write_text("not collected: not an image suffix")
    return root


def _run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli_main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_same_top5_as_paddleclas_predictor(paddle_reference, photo_dir, tmp_path, capsys):
    """Same .pdparams, raw files: PaddleClas's decode+preprocess+forward+Topk vs ours."""
    weights, _ = paddle_reference(MODEL)
    files = sorted(photo_dir.rglob("*.png")) + sorted(photo_dir.rglob("*.jpg"))
    out = tmp_path / "paddle.json"
    run_reference("paddle_predict.py", MODEL, weights, out, *files)
    theirs = {r["file_name"]: r for r in json.loads(out.read_text())}
    code, stdout, _ = _run_cli(
        capsys, "predict", str(photo_dir), "--model", MODEL, "--weights", str(weights), "--json"
    )
    assert code == 0
    ours = json.loads(stdout)["predictions"]
    assert sorted(p["source"] for p in ours) == sorted(theirs), "folder walk missed files"
    for pred in ours:
        ref = theirs[pred["source"]]
        assert pred["class_ids"] == ref["class_ids"], pred["source"]
        np.testing.assert_allclose(pred["scores"], ref["scores"], atol=2e-4)
    # The check can fail: the photos do not all share one answer.
    assert len({tuple(p["class_ids"]) for p in ours}) > 1


def test_wrong_preprocessing_changes_the_answer(paddle_reference):
    """Negative control for the test above: timm-style preprocessing gives other top-5s."""
    weights, _ = paddle_reference(MODEL)
    predictor = Predictor(MODEL, weights, num_workers=0)
    paddle_style = predictor.predict(PHOTOS)
    predictor.preprocess_cfg = get_entry("res2net50d").preprocess
    timm_style = predictor.predict(PHOTOS)
    assert any(x.class_ids != y.class_ids for x, y in zip(paddle_style, timm_style, strict=True))


def _bad_inputs(folder, photo: Image.Image) -> dict[str, tuple[object, str]]:
    """name -> (file path, words its error must contain)."""
    png = folder / "good.png"
    photo.save(png)
    data = png.read_bytes()
    cases = {
        "empty.png": (b"", "empty file (0 bytes)"),
        "truncated.png": (data[: len(data) // 2], "truncated"),
        # A valid PNG header and chunk layout with the compressed pixel data scrambled.
        "corrupt.png": (data[:100] + bytes(255 - b for b in data[100:]), "corrupt"),
        "not_image.jpg": (b"<html>this is a web page, not a JPEG</html>", "not an image"),
    }
    out = {}
    for name, (content, words) in cases.items():
        (folder / name).write_bytes(content)
        out[name] = (folder / name, words)
    big = folder / "big.png"
    photo.resize((800, 600)).save(big)
    out["big.png"] = (big, "over the limit of 400,000")
    return out


@pytest.mark.parametrize("case", ["empty.png", "truncated.png", "corrupt.png", "not_image.jpg"])
def test_bad_input_fails_alone(case, predictor, tmp_path):
    bad, words = _bad_inputs(tmp_path, Image.open(PHOTOS[2]))[case]
    results = predictor.predict([PHOTOS[0], bad, PHOTOS[1]])
    assert [r.source for r in results] == [str(PHOTOS[0]), str(bad), str(PHOTOS[1])]
    assert results[1].error is not None
    assert str(bad) in results[1].error and words in results[1].error, results[1].error
    assert results[1].class_ids == []
    for good in (results[0], results[2]):
        assert good.ok and len(good.class_ids) == 5 and len(good.labels) == 5


def test_pixel_limit_fails_alone(tmp_path):
    bad, words = _bad_inputs(tmp_path, Image.open(PHOTOS[2]))["big.png"]
    limited = Predictor("Res2Net50_26w_4s", max_pixels=400_000, num_workers=0)
    results = limited.predict([PHOTOS[2], bad])  # chelsea: 135,300 pixels
    assert results[0].ok
    assert str(bad) in results[1].error and words in results[1].error
    assert "480,000 pixels" in results[1].error


def test_cli_reports_failures_with_exit_code_1(tmp_path, capsys):
    cases = _bad_inputs(tmp_path, Image.open(PHOTOS[2]))
    args = [str(PHOTOS[3]), *(str(p) for p, _ in cases.values())]
    argv = ["predict", *args, "--model", "Res2Net50_26w_4s", "--random-weights"]
    code, out, err = _run_cli(capsys, *argv)
    assert code == 1
    assert "RANDOM weights" in err
    assert str(PHOTOS[3]) in out
    for path, words in list(cases.values())[:4]:
        assert f"failed: {path}: " in err and words in err


def test_cli_usage_errors_exit_2(capsys):
    code, _, err = _run_cli(capsys, "predict", str(PHOTOS[0]), "--model", "Res2Net51")
    assert code == 2 and "unknown model" in err
    if not torch.cuda.is_available():
        argv = ["predict", str(PHOTOS[0]), "--model", MODEL, "--random-weights"]
        code, _, err = _run_cli(capsys, *argv, "--device", "cuda")
        assert code == 2 and "no CUDA GPU" in err
    # A precision the engine does not run here is named with those it does.
    argv = ["predict", str(PHOTOS[0]), "--model", MODEL, "--random-weights"]
    code, _, err = _run_cli(capsys, *argv, "--precision", "fp16")
    assert code == 2 and "on cpu runs fp32, bf16, not 'fp16'" in err
    # A registered name with no weights runs nothing random unless asked for: the error
    # names the three choices, and nothing is downloaded or built.
    for command in ("predict", "serve"):
        head = [str(PHOTOS[0])] if command == "predict" else []
        code, _, err = _run_cli(capsys, command, *head, "--model", MODEL)
        assert code == 2 and "--weights FILE, --pretrained" in err and "--random-weights" in err
    # No --model and no self-describing weights: nothing to build the network from.
    code, _, err = _run_cli(capsys, "predict", str(PHOTOS[0]))
    assert code == 2 and "no --model given" in err
    # No inputs (optional in the parser, as a PaddleClas --config may name them).
    code, _, err = _run_cli(capsys, "predict")
    assert code == 2 and "give IMAGES_OR_FOLDERS" in err


def _unusual_inputs(folder) -> dict[str, object]:
    photo = Image.open(PHOTOS[5]).convert("RGB")  # rocket.jpg, 640 x 427
    gray16 = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
    exif = Image.Exif()
    exif[0x0112] = 8  # Orientation: rotate 90 CCW
    made = {
        "gray.jpg": (photo.convert("L"), {}),
        "rgba.png": (photo.convert("RGBA"), {}),
        "palette.gif": (photo.convert("P", palette=Image.Palette.ADAPTIVE), {}),
        "cmyk.jpg": (photo.convert("CMYK"), {}),
        "gray16.png": (Image.fromarray(gray16), {}),
        "exif.jpg": (photo, {"exif": exif}),
        "tiny.png": (photo.resize((1, 1)), {}),
        "huge.jpg": (photo.resize((6000, 4000)), {"quality": 80}),
    }
    paths = {}
    for name, (image, options) in made.items():
        image.save(folder / name, **options)
        paths[name] = folder / name
    return paths


def test_unusual_images_preprocess_as_paddleclas(predictor, tmp_path):
    """CMYK, 16-bit, GIF, 1 x 1, 6000 x 4000 ...: the predictor's input tensor is PaddleClas's
    own (cv2.imread + its deploy operators, in the reference venv) to within one uint8
    level. OpenCV 4.6 cannot decode GIF, so PaddleClas's predictor cannot read it at all;
    the reference decodes that one with Pillow and then runs the same operators."""
    paths = _unusual_inputs(tmp_path)
    out = tmp_path / "paddle.npz"
    log = run_reference("paddle_preprocess.py", out, *paths.values())
    assert [line.split()[2] for line in log.splitlines() if line.startswith("pil-")] == [
        str(paths["palette.gif"])
    ]
    ref = np.load(out)
    one_level = (1.0 / 255.0 / np.array(predictor.preprocess_cfg.std) + 1e-5).reshape(3, 1, 1)
    worst = {}
    for i, (name, path) in enumerate(paths.items()):
        ours = predictor.preprocess(path).numpy()
        assert ours.shape == ref[str(i)].shape == (3, 224, 224), name
        worst[name] = float((np.abs(ours - ref[str(i)]) / one_level).max())
    assert all(levels <= 1.0 for levels in worst.values()), worst


def test_unusual_images_are_classified(predictor, tmp_path):
    paths = _unusual_inputs(tmp_path)
    assert Image.open(paths["cmyk.jpg"]).mode == "CMYK"
    assert Image.open(paths["gray16.png"]).mode.startswith("I")
    results = predictor.predict(list(paths.values()))
    for name, result in zip(paths, results, strict=True):
        assert result.ok, f"{name}: {result.error}"
        assert len(result.class_ids) == 5
    assert load_image(paths["exif.jpg"]).size == (427, 640)


def test_python_inputs_and_batches(predictor):
    image = Image.open(PHOTOS[4])
    sources = [PHOTOS[4], PHOTOS[4].read_bytes(), image, np.asarray(image.convert("RGB"))]
    results = predictor.predict(sources)
    assert len({tuple(r.class_ids) for r in results}) == 1
    np.testing.assert_allclose(results[0].scores, results[3].scores, rtol=1e-5)
    assert results[1].source == f"<{len(sources[1])} bytes>"
    single = predictor.predict(str(PHOTOS[4]))
    assert single[0].class_ids == results[0].class_ids
    batch = np.stack([predictor.preprocess(p).numpy() for p in PHOTOS[:3]])
    assert predictor.predict_batch(batch).shape == (3, 1000)
    assert sum(results[0].scores) <= 1.0 + 1e-6


def test_custom_labels_and_json(tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("0 cat\n1 dog\n2 rocket\n")
    small = Predictor("Res2Net50_26w_4s", labels=labels, topk=5, num_workers=0)
    assert small.num_classes == 3 and small.labels == ["cat", "dog", "rocket"]
    (result,) = small.predict([PHOTOS[5]])
    assert len(result.class_ids) == 3 and set(result.labels) == {"cat", "dog", "rocket"}
    assert result.to_dict().keys() == {"source", "class_ids", "scores", "labels", "error"}
    with pytest.raises(ValueError, match="3 labels given for a model with 10 classes"):
        Predictor("Res2Net50_26w_4s", labels=labels, num_classes=10)
    code, out, _ = _run_cli(
        capsys,
        "predict",
        str(PHOTOS[5]),
        "--model",
        "Res2Net50_26w_4s",
        "--random-weights",
        "--labels",
        str(labels),
        "--json",
        "--topk",
        "2",
    )
    doc = json.loads(out)
    assert code == 0 and doc["weights"] is None
    assert doc["predictions"][0]["labels"][0] in ("cat", "dog", "rocket")


def test_load_image_errors_name_the_source():
    with pytest.raises(ImageDecodeError, match="missing.png: no such file"):
        load_image("missing.png")
    with pytest.raises(ImageDecodeError, match="must be uint8"):
        load_image(np.zeros((4, 4, 3), dtype=np.float32))
    assert isinstance(Prediction("x", error="y").to_dict(), dict)


def test_predictor_reads_architecture_from_training_export(tmp_path, photo_batch):
    """A `res2net train` export records arch, preprocessing and classes: no --model needed."""
    from res2net.models.res2net import Res2Net, Res2NetConfig
    from res2net.weights.io import save_safetensors

    arch = {"depth": 50, "width": 4, "scales": 4, "deep_stem": True, "avg_down": True}
    net = Res2Net(Res2NetConfig(**arch), num_classes=3).eval()
    meta = {
        "arch": arch,
        "model": None,
        "num_classes": 3,
        "classes": ["ant", "bee", "cat"],
        "preprocess": {"resize_short": 64, "crop": 56, "mean": [0.5] * 3, "std": [0.5] * 3},
    }
    path = save_safetensors(net.state_dict(), tmp_path / "final.safetensors",
                            {"res2net_training": json.dumps(meta)})  # fmt: skip
    predictor = Predictor(None, weights=path, topk=2, num_workers=0)
    assert predictor.preprocess_cfg.crop == 56 and predictor.labels == ["ant", "bee", "cat"]
    photo = PHOTOS[0]
    (pred,) = predictor.predict([photo])
    x = predictor.preprocess(photo)
    assert tuple(x.shape) == (3, 56, 56)
    with torch.no_grad():
        expected = torch.topk(net(x[None]).softmax(1), 2)
    assert pred.class_ids == expected.indices[0].tolist()
    assert pred.labels == [meta["classes"][i] for i in pred.class_ids]
    with pytest.raises(ValueError, match="no model given: pass model= .* or weights="):
        Predictor(None, weights=None)
