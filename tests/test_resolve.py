"""Every front end takes every kind of model file, or refuses it saying what it is.

One tiny Res2Net (random weights, 10 classes, 32 px) is written as a `res2net train` file and
exported once per format; predict (library and CLI), batch (here and in the Ray actor's
code), serve and eval must run each export with the top-5 of the runtime
:func:`res2net.deploy.export.load_exported` gives, and (FP32) of the PyTorch network itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from conftest import PHOTOS, TINY_ARCH

from res2net.cli import main as cli_main
from res2net.data.transforms import preprocess

LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PRE = {"resize_short": 36, "crop": 32, "mean": [0.5] * 3, "std": [0.5] * 3}
# Every format at FP32, plus INT8 from ONNX Runtime's quantizer.
EXPORTS = ["onnx", "openvino", "torchscript", "exported-program", "executorch", "onnx-int8"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A tiny network saved as `res2net train` saves it (run/tiny/final.safetensors)."""
    from res2net.card import ModelCard, training_metadata
    from res2net.data.preprocess import Preprocess
    from res2net.models.res2net import Res2Net, Res2NetConfig
    from res2net.weights.io import save_safetensors

    torch.manual_seed(0)
    net = Res2Net(Res2NetConfig(**TINY_ARCH), num_classes=10).eval()
    # Random BatchNorm statistics, so that the outputs depend on the image.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    card = ModelCard(None, net.config, 10, Preprocess.from_dict(PRE), tuple(LABELS))
    run = tmp_path_factory.mktemp("run") / "tiny"
    run.mkdir()
    path = save_safetensors(net.state_dict(), run / "final.safetensors", training_metadata(card))
    images = np.stack([preprocess(p, card.preprocess).numpy() for p in PHOTOS])
    with torch.no_grad():
        logits = net(torch.from_numpy(images)).numpy()
    return {"net": net, "path": Path(path), "images": images, "logits": logits}


class _Exports(dict):
    """kind -> exported file, each written on first use (a -k selection pays only its own)."""

    def __init__(self, tiny: dict, folder: Path) -> None:
        from res2net.resolve import load_training_export

        super().__init__()
        self.images, self.folder = tiny["images"], folder
        self.network, self.pre, self.name, self.labels = load_training_export(tiny["path"])

    def __missing__(self, kind: str) -> Path:
        from res2net.deploy.export import export_model

        fmt, int8 = kind.removesuffix("-int8"), kind.endswith("-int8")
        self[kind] = export_model(
            self.network, self.folder / f"{self.name}{'_int8' if int8 else ''}.x", fmt=fmt,
            name=self.name, preprocess=self.pre, labels=self.labels,
            int8_calibration=self.images if int8 else None,
        )  # fmt: skip
        return self[kind]


@pytest.fixture(scope="module")
def exports(tiny, tmp_path_factory) -> dict[str, Path]:
    """One export per entry of EXPORTS, as `res2net export` writes them (name tiny-final)."""
    return _Exports(tiny, tmp_path_factory.mktemp("exports"))


def _top5(logits: np.ndarray) -> list[list[int]]:
    return np.argsort(-logits, axis=1, kind="stable")[:, :5].tolist()


def _runtime_top5(path: Path, images: np.ndarray) -> list[list[int]]:
    from res2net.deploy.export import load_exported

    return _top5(load_exported(path)(images))


@pytest.mark.parametrize("kind", EXPORTS)
def test_predictor_runs_the_export_as_it_is(kind, exports, tiny):
    """Predictor(model=export): the card's classes, labels and preprocessing, the runtime's
    own answers; and FP32 exports agree with the PyTorch network (the silent random
    1000-class network this replaced would fail every line)."""
    from res2net.deploy.predictor import Predictor

    path = exports[kind]
    expected = _runtime_top5(path, tiny["images"])
    for predictor in (
        Predictor(path, num_workers=0),
        Predictor.from_export(path, num_workers=0),
        Predictor(None, weights=str(path), num_workers=0),
    ):
        assert predictor.num_classes == 10 and predictor.labels == LABELS
        assert predictor.preprocess_cfg.crop == 32
        assert predictor.model_name == "tiny-final" and predictor.weights == path
        preds = predictor.predict(PHOTOS)
        assert [p.class_ids for p in preds] == expected
        assert preds[0].labels == [LABELS[i] for i in expected[0]]
    assert predictor.card.precision == ("int8" if kind.endswith("int8") else "fp32")
    if not kind.endswith("int8"):
        assert expected == _top5(tiny["logits"])
        assert np.allclose(predictor.predict_batch(tiny["images"]), tiny["logits"], atol=1e-4)


def test_export_with_softmax_scores_as_the_network(tiny, tmp_path):
    """An export that outputs probabilities is scored as such, not softmaxed twice."""
    from res2net.deploy.export import export_model
    from res2net.deploy.predictor import Predictor

    path = export_model(tiny["net"], tmp_path / "p.onnx", preprocess=PRE, softmax=True)
    (pred,) = Predictor(path, num_workers=0).predict(PHOTOS[:1])
    probs = torch.softmax(torch.from_numpy(tiny["logits"][0]), 0).numpy()
    assert np.allclose(pred.scores, np.sort(probs)[::-1][:5], atol=1e-5)


def test_an_export_of_random_weights_warns_whoever_runs_it(tiny, exports, tmp_path, capsys):
    """`export --random-weights` used to give a file that predict and serve ran as if
    trained (a confident top-5, no warning): the metadata now says so, and both warn."""
    from res2net.deploy.export import export_model
    from res2net.deploy.predictor import Predictor
    from res2net.deploy.server import ServeConfig
    from res2net.deploy.server.service import ModelService

    path = export_model(tiny["net"], tmp_path / "r.onnx", preprocess=PRE, random_weights=True)
    predictor = Predictor(path, num_workers=0)
    assert predictor.weights is None
    service = ModelService(predictor, ServeConfig(port=0, grpc_port=None))
    assert service.page_facts()["random"]  # the upload page shows its banner
    code, _, err = _cli(capsys, "predict", PHOTOS[0], "--model", path)
    assert code == 0 and "RANDOM weights" in err
    code, _, err = _cli(capsys, "predict", PHOTOS[0], "--model", exports["onnx"])
    assert code == 0 and "RANDOM" not in err  # a trained export: no warning


def _cli(capsys, *args) -> tuple[int, str, str]:
    code = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("flag", ["--model", "--weights"])
@pytest.mark.parametrize("kind", ["openvino", "onnx-int8", "executorch"])
def test_predict_cli_takes_an_export(flag, kind, exports, tiny, capsys):
    code, out, err = _cli(capsys, "predict", *PHOTOS, flag, exports[kind], "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model"] == "tiny-final" and doc["weights"] == str(exports[kind])
    assert [p["class_ids"] for p in doc["predictions"]] == _runtime_top5(
        exports[kind], tiny["images"]
    )
    assert "RANDOM" not in err and "images/s" in err


def test_predict_cli_streams_an_export_to_a_file(exports, tiny, tmp_path, capsys):
    from res2net.batch import read_rows

    out = tmp_path / "rows.jsonl"
    code, _, err = _cli(capsys, "predict", *PHOTOS, "--model", exports["onnx"], "--output", out)
    assert code == 0 and err.startswith("tiny-final: 6 images written") and "images/s" in err
    rows = {r["source"]: r["class_ids"] for r in read_rows(out)}
    assert [rows[str(p)] for p in PHOTOS] == _runtime_top5(exports["onnx"], tiny["images"])


def test_one_name_for_a_trained_file_everywhere(tiny, exports, tmp_path, capsys):
    """predict on the training file, `res2net export` of it and the exports share a name."""
    from res2net.deploy.predictor import Predictor

    assert Predictor(None, tiny["path"], num_workers=0).model_name == "tiny-final"
    out = tmp_path / "cli.onnx"
    code, _, err = _cli(capsys, "export", "--weights", tiny["path"], "--output", out)
    assert code == 0, err
    assert json.loads(out.with_name("cli.onnx.json").read_text())["model"] == "tiny-final"
    code, text, _ = _cli(capsys, "predict", PHOTOS[0], "--weights", tiny["path"])
    assert code == 0 and text.startswith("# tiny-final (")


def _copy(path: Path, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    for part in path.parent.glob(path.name + "*"):
        shutil.copy(part, folder / part.name)
    if path.suffix == ".xml":
        shutil.copy(path.with_suffix(".bin"), folder / path.with_suffix(".bin").name)
    return folder / path.name


@pytest.mark.parametrize(
    "make, said",
    [
        (lambda e, t, d: d / "nothing", "no such file, and not a registered name"),
        (lambda e, t, d: _copy(e["openvino"], d).with_suffix(".bin"), "weights half of an Open"),
        (lambda e, t, d: Path(str(_copy(e["onnx"], d)) + ".json"), "export metadata; pass"),
        (lambda e, t, d: d, "a folder, not a model"),
        (lambda e, t, d: _plain_weights(t, d), "weight file without a model card"),
        (lambda e, t, d: (d / "notes.txt", (d / "notes.txt").write_text("x"))[0], "not a mod"),
    ],
)
def test_a_path_that_is_no_model_is_refused_saying_what_it_is(make, said, exports, tiny, tmp_path,
                                                              capsys):  # fmt: skip
    from res2net.deploy.predictor import Predictor
    from res2net.resolve import ModelSourceError

    path = make(exports, tiny, tmp_path)
    with pytest.raises(ModelSourceError, match=said) as caught:
        Predictor(path)
    assert f"model={str(path)!r}" in str(caught.value)
    for flag in ("--model", "--weights"):
        code, out, err = _cli(capsys, "predict", PHOTOS[0], flag, path)
        assert code == 2 and out == "" and "Traceback" not in err
        assert err.count("\n") == 1 and f"error: {flag} {path}: " in err and said in err


def _plain_weights(tiny: dict, folder: Path) -> Path:
    from res2net.weights.io import save_safetensors

    return Path(save_safetensors(tiny["net"].state_dict(), folder / "plain.safetensors"))


def test_broken_exports_keep_their_errors(exports, tmp_path, capsys):
    from res2net.card import ExportedModelError
    from res2net.deploy.predictor import Predictor

    path = _copy(exports["onnx"], tmp_path / "a")
    Path(str(path) + ".json").unlink()
    with pytest.raises(ExportedModelError, match="metadata tiny-final.onnx.json is missing"):
        Predictor(path)
    other = _copy(exports["onnx"], tmp_path / "b")
    other.write_bytes(exports["torchscript"].read_bytes())
    code, _, err = _cli(capsys, "predict", PHOTOS[0], "--model", other)
    assert code == 2 and "SHA-256 differs" in err


def test_random_weights_only_for_a_registered_name(capsys):
    """A registered name without weights is refused; random only when asked for, with the
    warning."""
    code, _, err = _cli(capsys, "predict", PHOTOS[0], "--model", "Res2Net50_26w_4s")
    assert code == 2 and "--random-weights" in err and "RANDOM" not in err
    argv = ["predict", PHOTOS[0], "--model", "Res2Net50_26w_4s", "--random-weights"]
    code, _, err = _cli(capsys, *argv)
    assert code == 0 and "RANDOM weights" in err


def test_file_with_weights_and_mismatched_options_are_refused(exports, tiny, capsys):
    from res2net.deploy.predictor import Predictor

    with pytest.raises(ValueError, match="carries its own weights"):
        Predictor(exports["onnx"], weights=tiny["path"])
    with pytest.raises(ValueError, match="num_classes=1000 but .* has 10 classes"):
        Predictor(exports["onnx"], num_classes=1000)
    with pytest.raises(ValueError, match="exported at int8"):
        Predictor(exports["onnx-int8"], precision="bf16")
    with pytest.raises(ValueError, match="is an export of 'tiny-final', not of"):
        Predictor("Res2Net50_26w_4s", weights=exports["onnx"])
    with pytest.raises(ValueError, match="not an exported model"):
        Predictor.from_export(tiny["path"])


def test_batch_runs_an_export_here_and_in_the_ray_actor(exports, tiny, tmp_path):
    """batch_predict in one process; and the Ray stages' own code (decode task, actor) given
    the export's path, as Ray ships it (Ray itself is tested in test_batch.py)."""
    from res2net.batch import batch_predict, read_rows
    from res2net.batch.predict import predictor_options
    from res2net.batch.ray_jobs import _decode_for_predict, _PredictAndWrite, predict_preprocess

    path = exports["openvino"]
    expected = _runtime_top5(path, tiny["images"])
    summary = batch_predict(PHOTOS, tmp_path / "here.jsonl", model=path)
    rows = {r["source"]: r["class_ids"] for r in read_rows(summary["output"])}
    assert [rows[str(p)] for p in PHOTOS] == expected
    options = predictor_options(path, None)
    assert options["model"] == str(path)  # a path, not a network, goes to the actors
    cfg = predict_preprocess(options["model"], options["weights"])
    batch = _decode_for_predict({"source": np.array([str(p) for p in PHOTOS])}, cfg, None)
    (tmp_path / "ray.jsonl").mkdir()
    actor = _PredictAndWrite(options, str(tmp_path / "ray.jsonl"), "jsonl", 1)
    assert actor(batch)["rows"][0] == len(PHOTOS)
    rows = {r["source"]: r["class_ids"] for r in read_rows(tmp_path / "ray.jsonl")}
    assert [rows[str(p)] for p in PHOTOS] == expected


@pytest.fixture(scope="module")
def labelled(tiny, tmp_path_factory) -> tuple[Path, float]:
    """The photos as an ImageFolder labelled with the network's own top-1 for half of them
    (so top-1 is exactly 0.5 for the network), and that accuracy."""
    root = tmp_path_factory.mktemp("labelled")
    folders = [f"{i}-{name}" for i, name in enumerate(LABELS)]  # sorted as the class ids
    for folder in folders:
        (root / folder).mkdir()
    top1 = tiny["logits"].argmax(1)
    for i, photo in enumerate(PHOTOS):
        label = top1[i] if i % 2 == 0 else (top1[i] + 1) % 10
        shutil.copy(photo, root / folders[label] / photo.name)
    return root, float(np.mean([i % 2 == 0 for i in range(len(PHOTOS))]))


@pytest.mark.parametrize("kind", ["onnx", "openvino", "executorch"])
def test_eval_runs_an_export(kind, exports, labelled, capsys):
    from res2net.engine.evaluate import evaluate_folder

    root, top1 = labelled
    result = evaluate_folder(root, name=exports[kind], num_workers=0)
    assert result["top1"] == top1 and result["images"] == len(PHOTOS)
    code, out, err = _cli(
        capsys, "eval", "--model", exports[kind], "--data", root, "--workers", "0", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["top1"] == top1


@pytest.mark.parametrize("kind", ["openvino", "executorch"])
def test_serve_runs_an_export_under_its_one_name(kind, exports, tiny):
    """build_service(--weights x.pte / --model x.xml): the card's name, its file stem as an
    alias, a listing of served models, and /v1/classify with the runtime's answers."""
    from res2net.deploy.server import ServeConfig, build_service, start_server

    path = exports[kind]
    model, weights = (None, str(path)) if kind == "executorch" else (path, None)
    service = build_service(model, weights, config=ServeConfig(port=0, grpc_port=None))
    running = start_server(service)
    try:
        with httpx.Client(base_url=running.url, timeout=60) as client:
            listed = client.get("/v2/models").json()["models"]
            assert [m["name"] for m in listed] == ["tiny-final"]
            assert client.get("/v2/models/tiny-final").json()["name"] == "tiny-final"
            assert client.get(f"/v2/models/{path.stem}").status_code == 200
            missing = client.get("/v2/models/trained")
            assert missing.status_code == 404 and "GET /v2/models" in missing.json()["error"]
            index = client.post("/v2/repository/index", content=b"{}").json()
            assert index == [{"name": "tiny-final", "version": "1", "state": "READY"}]
            files = [("images", (p.name, p.read_bytes())) for p in PHOTOS]
            body = client.post("/v1/classify", files=files).json()
    finally:
        running.stop()
    assert body["model_name"] == "tiny-final"
    expected = _runtime_top5(path, tiny["images"])
    assert [p["class_ids"] for p in body["predictions"]] == expected
