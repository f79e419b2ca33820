"""The C++ predictor (cpp/, built from scratch by scripts/build_cpp.sh) against the Python one.

Its outputs are held against the Python ``Predictor`` and ``res2net.data.transforms.preprocess``
(themselves checked against PaddleClas in test_preprocess.py / conftest), on a PaddleClas-flavour
Res2Net-50-vd with PaddleClas's randomized weights and real BatchNorm statistics, and on a Res2Net
trained on the digits by our own training loop.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import PHOTOS, ROOT, tiny_config

CPP = ROOT / "build" / "cpp" / "res2net-cpp"


def _can_build() -> tuple[bool, str]:
    if shutil.which("g++") or shutil.which("c++"):
        return True, ""
    if shutil.which("apt-get") and os.geteuid() == 0:
        return True, ""  # build_cpp.sh installs g++ itself
    return False, "no C++ compiler (g++) here and no root apt-get to install one"


@pytest.fixture(scope="session")
def cpp() -> Path:
    """The res2net-cpp program, built once per session (incremental after the first)."""
    ok, why = _can_build()
    if not ok:
        pytest.skip(f"C++ predictor not built: {why}; run bash scripts/build_cpp.sh")
    env = {**os.environ, "RES2NET_PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", "scripts/build_cpp.sh"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"scripts/build_cpp.sh failed:\n{proc.stdout}\n{proc.stderr}"
    return CPP


def run_cpp(cpp: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "RES2NET_THREADS": "2"}
    return subprocess.run(
        [str(cpp), *map(str, args)], capture_output=True, text=True, env=env, timeout=600
    )


def cpp_predictions(cpp: Path, model: Path, images, *extra) -> list[dict]:
    proc = run_cpp(cpp, "predict", "--model", model, *images, "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["predictions"]


def assert_same_topk(cpp_preds: list[dict], py_preds: list) -> None:
    """Same sources, same top-5 ids and labels, probabilities within 1e-4."""
    assert [p["source"] for p in cpp_preds] == [p.source for p in py_preds]
    for ours, ref in zip(cpp_preds, py_preds, strict=True):
        assert ref.ok and ours["error"] is None, (ours, ref)
        assert ours["class_ids"] == ref.class_ids, ours["source"]
        assert ours["labels"] == ref.labels
        np.testing.assert_allclose(ours["scores"], ref.scores, rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def vd50_exports(vd50_with_reference, paddle_reference, tmp_path_factory):
    """FORMAT -> Res2Net50_vd_26w_4s exported with PaddleClas's checked weights (randomized,
    with real BatchNorm statistics) as OpenVINO IR and ONNX; and the weight file."""
    from res2net.data.labels import imagenet_labels
    from res2net.deploy.export import export_model
    from res2net.models.registry import get_entry

    model = vd50_with_reference[0]
    name = "Res2Net50_vd_26w_4s"
    out = tmp_path_factory.mktemp("cpp_vd50") / name
    exports = {
        fmt: export_model(
            model,
            out,
            fmt=fmt,
            name=name,
            preprocess=get_entry(name).preprocess,
            labels=imagenet_labels(),
        )  # fmt: skip
        for fmt in ("openvino", "onnx")
    }
    return exports, paddle_reference(name)[0]


@pytest.mark.parametrize("fmt", ["openvino", "onnx"])
def test_vd50_export_matches_python_predictor(cpp, vd50_exports, fmt):
    from res2net.deploy.predictor import Predictor

    exports, weights = vd50_exports
    py = Predictor("Res2Net50_vd_26w_4s", str(weights), num_workers=0).predict(PHOTOS)
    ours = cpp_predictions(cpp, exports[fmt], PHOTOS, "--batch-size", "4")
    assert_same_topk(ours, py)


def _odd_images(folder: Path) -> list[Path]:
    """Lossless images that exercise the decoder's conversions and the resize rounding."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    photo = np.asarray(Image.open(PHOTOS[0]).convert("RGB"))
    cases = {
        "gray.png": Image.fromarray(photo[:300, :257, 0]),  # L: replicated to 3 channels
        "rgba.png": Image.fromarray(np.dstack([photo[:233, :411], photo[:233, :411, :1]])),
        "small_upscaled.png": Image.fromarray(photo[:97, :150]),  # short side < 256
        "noise.bmp": Image.fromarray(rng.integers(0, 256, (511, 263, 3), dtype=np.uint8)),
        "gray16.png": Image.fromarray(rng.integers(0, 65536, (260, 300), dtype=np.uint16)),
    }
    paths = []
    for name, image in cases.items():
        image.save(folder / name)
        paths.append(folder / name)
    return paths


def test_preprocessing_equals_python_exactly(cpp, vd50_exports, tmp_path):
    from res2net.data.transforms import preprocess
    from res2net.models.registry import get_entry

    images = [*PHOTOS, *_odd_images(tmp_path / "odd")]
    raw = tmp_path / "inputs.f32"
    proc = run_cpp(
        cpp, "preprocess", "--model", vd50_exports[0]["openvino"], *images, "--output", raw
    )
    assert proc.returncode == 0, proc.stderr
    ours = np.fromfile(raw, dtype=np.float32).reshape(len(images), 3, 224, 224)
    cfg = get_entry("Res2Net50_vd_26w_4s").preprocess
    for got, path in zip(ours, images, strict=True):
        expected = preprocess(path, cfg).numpy()
        assert np.array_equal(got, expected), (
            f"{path.name}: {np.count_nonzero(got != expected)} values differ, "
            f"max {np.abs(got - expected).max()}"
        )


def _keep_first(folder: Path, per_class: int) -> None:
    for class_dir in folder.iterdir():
        for extra in sorted(class_dir.glob("*.png"))[per_class:]:
            extra.unlink()


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A small Res2Net trained on the 32 x 32 digits (as configs/digits_demo.yaml) by our own
    training loop, on a subset and for one epoch to stay quick; its OpenVINO IR export; and
    some held-out digit images. (At 16 x 16 the last stage's 2 x 2 average pool meets a 1 x 1
    map, which OpenVINO refuses to compile.)"""
    import torch

    from res2net.data.datasets import render_digits
    from res2net.deploy.export import export_model
    from res2net.engine.config import config_from_dict
    from res2net.engine.evaluate import model_from_weights
    from res2net.engine.train import train

    root = tmp_path_factory.mktemp("cpp_digits")
    render_digits(root / "data", size=32)
    _keep_first(root / "data" / "train", 40)
    _keep_first(root / "data" / "val", 6)
    torch.manual_seed(0)
    cfg = tiny_config(
        root / "data",
        root / "run",
        data={"image_size": 32, "resize_short": 32},
        schedule={"epochs": 1},
        output={"tensorboard": False, "plot": False},
    )
    weights = train(config_from_dict(cfg)).final_weights
    model, meta = model_from_weights(weights)
    pre = meta.preprocess
    export = export_model(
        model, root / "export" / "digits", fmt="openvino", preprocess=pre, labels=meta.labels
    )
    return weights, export, sorted((root / "data" / "val").rglob("*.png"))


def test_digits_model_matches_python_predictor(cpp, digits_model):
    from res2net.deploy.predictor import Predictor

    weights, export, images = digits_model
    py = Predictor(None, weights, num_workers=0).predict(images)
    assert_same_topk(cpp_predictions(cpp, export, images, "--batch-size", "7"), py)


def test_text_output_is_res2net_predicts(cpp, digits_model, capsys):
    from res2net.cli.predict import _print_text
    from res2net.deploy.predictor import Predictor

    weights, export, images = digits_model
    _print_text(Predictor(None, weights, num_workers=0, topk=3).predict(images[:4]), "m", "w")
    # The per-image blocks; the C++ program does not print `res2net predict`'s header line.
    expected = capsys.readouterr().out.splitlines()[1:]
    proc = run_cpp(cpp, "predict", "--model", export, *images[:4], "--topk", "3")
    assert proc.returncode == 0, proc.stderr
    got = proc.stdout.splitlines()
    assert len(got) == len(expected) == 4 * 4
    for ours, ref in zip(got, expected, strict=True):
        if not ours.startswith("  "):
            assert ours == ref
            continue
        # "  score  id  label": the ids and labels equal, the scores within the 4th decimal
        assert ours.split()[1:] == ref.split()[1:]
        assert abs(float(ours.split()[0]) - float(ref.split()[0])) <= 1.5e-4


def test_bad_images_fail_alone(cpp, digits_model, tmp_path):
    from res2net.deploy.predictor import Predictor

    weights, export, images = digits_model
    good = images[0]
    bad = {
        "empty.png": b"",
        "text.jpg": b"these are not the pixels you are looking for\n" * 20,
        "corrupt.png": b"\x89PNG\r\n\x1a\n"
        + bytes(np.random.default_rng(0).integers(0, 256, 999, dtype=np.uint8)),
        "truncated.png": PHOTOS[0].read_bytes()[:5000],
        "truncated.jpg": next(p for p in PHOTOS if p.suffix == ".jpg").read_bytes()[:20000],
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    inputs = [good, *(tmp_path / name for name in bad), tmp_path / "missing.png"]
    proc = run_cpp(cpp, "predict", "--model", export, *inputs, "--json")
    assert proc.returncode == 1, proc.stderr
    preds = json.loads(proc.stdout)["predictions"]
    py = Predictor(None, weights, num_workers=0).predict(inputs)
    # The same inputs fail as in Python; each message names its file.
    assert [p["error"] is None for p in preds] == [p.ok for p in py] == [True] + [False] * 6
    for path, pred in zip(inputs[1:], preds[1:], strict=True):
        assert pred["error"].startswith(str(path)), pred
        assert f"failed: {path}" in proc.stderr
    assert "6 of 7 images failed" in proc.stderr
    assert preds[0]["class_ids"] == py[0].class_ids


def _copy_export(src: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir()
    for part in src.parent.glob(src.stem + ".*"):
        shutil.copy(part, dst_dir / part.name)
    return dst_dir / src.name


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no-model", "no such model file"),
        ("no-metadata", "metadata digits.xml.json is missing"),
        ("tampered-weights", "SHA-256 differs"),
        ("no-weights", "digits.bin: missing"),
        ("bad-json", "not valid export metadata"),
        ("wrong-format", "describes a 'onnx' export"),
    ],
)
def test_missing_or_tampered_export_is_refused(cpp, digits_model, tmp_path, damage, message):
    from res2net.deploy.export import ExportedModelError, load_exported

    model = _copy_export(digits_model[1], tmp_path / "export")
    meta = model.with_name(model.name + ".json")
    if damage == "no-model":
        model.unlink()
    elif damage == "no-metadata":
        meta.unlink()
    elif damage == "tampered-weights":
        data = bytearray(model.with_suffix(".bin").read_bytes())
        data[len(data) // 2] ^= 1
        model.with_suffix(".bin").write_bytes(bytes(data))
    elif damage == "no-weights":
        model.with_suffix(".bin").unlink()
    elif damage == "bad-json":
        meta.write_text(meta.read_text()[:100])
    elif damage == "wrong-format":
        meta.write_text(meta.read_text().replace('"format": "openvino"', '"format": "onnx"'))
    with pytest.raises(ExportedModelError):  # Python refuses it ...
        load_exported(model)
    proc = run_cpp(cpp, "predict", "--model", model, digits_model[2][0])
    assert proc.returncode == 2  # ... and so does the C++ program, saying why
    assert message in proc.stderr and "error:" in proc.stderr, proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("fmt, suffix", [("executorch", ".pte"), ("torchscript", ".pt")])
def test_an_export_for_another_runtime_is_refused_saying_what_cpp_reads(cpp, tmp_path, fmt,
                                                                        suffix):  # fmt: skip
    """A good export in a format res2net-cpp does not run: the message says what it reads,
    not (as it did for .pte) that the metadata "describes a 'executorch' export, not a .pte"."""
    import hashlib

    model = tmp_path / f"m{suffix}"
    model.write_bytes(b"a program for another runtime")
    meta = {"format": fmt, "files": {model.name: hashlib.sha256(model.read_bytes()).hexdigest()}}
    model.with_name(model.name + ".json").write_text(json.dumps(meta))
    proc = run_cpp(cpp, "predict", "--model", model, PHOTOS[0])
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"a '{fmt}' export; res2net-cpp reads OpenVINO IR (.xml) and ONNX" in proc.stderr
    assert "describes" not in proc.stderr


def test_bf16_runs_or_is_refused_by_name(cpp, digits_model):
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    proc = run_cpp(cpp, "predict", "--model", digits_model[1], digits_model[2][0],
                   "--precision", "bf16")  # fmt: skip
    if "BF16" in caps:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == 2 and "bf16" in proc.stderr, proc.stderr


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_an_export_runs_at_the_precision_python_runs_it(cpp, digits_model, tmp_path, precision):
    """Without --precision the C++ program compiles a file at the precision its metadata
    records, as Python's Predictor does: read back from both compiled models (before, a bf16
    export ran in f32 in C++ and in bf16 in Python)."""
    from res2net.deploy.export import export_model
    from res2net.deploy.predictor import Predictor
    from res2net.deploy.runtimes import openvino_runs_bf16
    from res2net.engine.evaluate import model_from_weights

    model, meta = model_from_weights(digits_model[0])
    export = export_model(model, tmp_path / "digits", fmt="openvino", preprocess=meta.preprocess,
                          labels=meta.labels, precision=precision)  # fmt: skip
    proc = run_cpp(cpp, "bench", "--model", export, "--batch-sizes", "2", "--warmup", "0",
                   "--iters", "1", "--json")  # fmt: skip
    if precision == "bf16" and not openvino_runs_bf16():
        assert proc.returncode == 2 and "bf16" in proc.stderr, proc.stderr
        with pytest.raises(ValueError, match="bf16"):
            Predictor(export)
        return
    assert proc.returncode == 0, proc.stderr
    python = Predictor(export, num_workers=0).runtime.inference_precisions()
    row = json.loads(proc.stdout)["rows"][0]
    assert {row["inference_precision"]} == python == {"f32" if precision == "fp32" else "bf16"}
    assert row["precision"] == precision


def test_usage(cpp):
    help_text = run_cpp(cpp, "--help")
    assert help_text.returncode == 0 and "predict --model FILE" in help_text.stdout
    unknown = run_cpp(cpp, "predict", "--model", "x.xml", "a.png", "--colour")
    assert unknown.returncode == 2 and "unrecognized argument: --colour" in unknown.stderr
    bench = run_cpp(cpp, "bench", "--model", "x.xml", "--batch-sizes", "1,a")
    assert bench.returncode == 2 and "error:" in bench.stderr
