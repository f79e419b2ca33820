"""Trust boundaries (issue 25): what a file says is data, never authority; decoders of
model files are bounded; a hostile file is one clear error, never a crash or a traceback.

Each test builds the hostile file the issue describes and checks the outcome a user sees:
an exception naming the file and key (library) or one ``error:`` line and exit 2 (CLI).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper
from safetensors.torch import save as save_safetensors_bytes

from res2net.builder import build_model, create_model
from res2net.card import CardError, ExportedModelError, ModelCard, load_card
from res2net.cli import main
from res2net.deploy.export import load_exported
from res2net.engine import checkpoint
from res2net.models import registry
from res2net.weights.hub import CACHE_ENV, MIRROR_ENV

DATA = Path(__file__).parent / "data"
IMAGE = DATA / "images" / "astronaut.png"
NAME = "res2net50_26w_4s"
CARD = {
    "model": NAME,
    "arch": {"depth": 50, "width": 26, "scales": 4, "flavour": "official"},
    "num_classes": 1000,
    "preprocess": {"resize_short": 256, "crop": 224, "mean": [0.5] * 3, "std": [0.5] * 3},
}


class _Host(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.hits.append(self.path)
        body = self.server.files.get(self.path.rsplit("/", 1)[-1])
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def host():
    """127.0.0.1 serving the published weights and, under another name, an attacker's."""
    torch.manual_seed(0)
    state = create_model(NAME).state_dict()
    evil = dict(state, **{"fc.bias": torch.full((1000,), -100.0)})
    evil["fc.bias"][999] = 100.0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Host)
    server.files = {
        f"{NAME}.safetensors": save_safetensors_bytes(state),
        "evil.safetensors": save_safetensors_bytes(evil),
    }
    server.hits = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    return tmp_path / "cache"


def _export(folder: Path, meta: dict, name: str = "ex.onnx", body: bytes = b"onnx") -> Path:
    """A model file and the metadata beside it, its checksum right (what an attacker who
    ships both controls)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(body)
    files = {name: hashlib.sha256(body).hexdigest()}
    meta = {"format": "onnx", "files": files, **meta}
    (folder / f"{name}.json").write_text(json.dumps(meta))
    return path


def _one_line_exit_2(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "error:" in err, err
    return err


def test_card_cannot_write_outside_the_cache(host, cache, tmp_path, capsys):
    target = tmp_path / "x"
    target.mkdir()
    evil_url = f"http://127.0.0.1:{host.server_port}/evil.safetensors"
    model = _export(
        tmp_path / "deep" / "er",
        {**CARD, "model": "../../../x/TRAVERSED", "weights": {"url": evil_url}},
    )
    # The attack as reported, and the export alone (whose card is then read): both refused.
    for extra in (["--pretrained"], []):
        argv = ["predict", str(IMAGE), "--model", str(model), *extra]
        err = _one_line_exit_2(argv, capsys)
        assert extra or ("not a model name" in err and "ex.onnx.json" in err)
    assert list(target.iterdir()) == [] and not host.hits


def test_card_naming_a_registered_model_cannot_choose_its_weights(
    host, cache, tmp_path, monkeypatch
):
    port = host.server_port
    entry = registry.get_entry(NAME)
    published = f"http://127.0.0.1:{port}/published/{NAME}.safetensors"
    monkeypatch.setitem(registry.REGISTRY, NAME, replace(entry, url=published))
    evil_url = f"http://127.0.0.1:{port}/evil.safetensors"
    model = _export(tmp_path, {**CARD, "weights": {"url": evil_url, "sha256": None}})
    host.hits.clear()
    network = build_model(load_card(model), weights=True)
    assert host.hits == [f"/published/{NAME}.safetensors"]
    assert float(network.fc.bias.detach()[999]) != 100.0
    cached = next(cache.glob(f"{NAME}.*safetensors"))
    assert cached.read_bytes() == host.files[f"{NAME}.safetensors"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"model": "../../tmp/x"}, "card.model = '../../tmp/x': not a model name"),
        ({"model": "a/b"}, "not a model name"),
        ({"arch": {"depth": 200, "width": 256, "scales": 16, "cardinality": 64}}, "M parameters"),
        ({"num_classes": 10**7}, "card.num_classes"),
        ({"preprocess": dict(CARD["preprocess"], crop=4096)}, "card.preprocess.crop = 4096"),
        ({"preprocess": dict(CARD["preprocess"], resize_short=10**6)}, "resize_short"),
        ({"preprocess": dict(CARD["preprocess"], mean=[float("nan")] * 3)}, "preprocess.mean"),
        ({"preprocess": dict(CARD["preprocess"], std=[0.5, 0, 0.5])}, "preprocess.std"),
        ({"preprocess": dict(CARD["preprocess"], std=[float("inf")] * 3)}, "preprocess.std"),
    ],
)
def test_card_values_are_bounded_before_anything_is_built(change, named):
    assert ModelCard.from_dict(CARD).preprocess.crop == 224  # positive control
    with pytest.raises(CardError) as err:
        ModelCard.from_dict({**CARD, **change})
    assert named in str(err.value)


@pytest.mark.parametrize(
    ("change", "named"), [({"files": []}, "'files'"), ({"format": ["onnx"]}, "'format'")]
)
def test_broken_export_metadata_is_one_line(tmp_path, capsys, change, named):
    model = _export(tmp_path, CARD)
    meta = json.loads((tmp_path / "ex.onnx.json").read_text())
    (tmp_path / "ex.onnx.json").write_text(json.dumps({**meta, **change}))
    with pytest.raises(ExportedModelError, match=named):
        load_card(model)
    _one_line_exit_2(["predict", str(IMAGE), "--model", str(model)], capsys)


def _onnx_file(nodes: list, initializers: list, output: str, out_shape: list) -> bytes:
    graph = helper.make_graph(
        nodes,
        "hostile",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def _constant_of_shape_bomb() -> bytes:
    """A few hundred bytes whose constant folding would fill 19 GB."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 3, 40000, 40000])
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"]),
        helper.make_node("ReduceSum", ["big"], ["output"], keepdims=0),
    ]
    return _onnx_file(nodes, [shape], "output", [])


def _concat_doubling() -> bytes:
    """Only operators an export holds, but each Concat doubles: 2^12 x the input."""
    nodes, name = [], "input"
    for i in range(12):
        nodes.append(helper.make_node("Concat", [name, name], [f"c{i}"], axis=2))
        name = f"c{i}"
    nodes.append(helper.make_node("GlobalAveragePool", [name], ["output"]))
    return _onnx_file(nodes, [], "output", ["N", 3, 1, 1])


@pytest.mark.parametrize(
    ("body", "named"),
    [(_constant_of_shape_bomb, "operator 'ConstantOfShape'"), (_concat_doubling, "over the limit")],
)
def test_onnx_graph_is_checked_before_any_folding(tmp_path, body, named):
    data = body()
    assert len(data) < 1000
    onnx.checker.check_model(onnx.load_from_string(data))  # a valid graph, not a broken file
    model = _export(tmp_path, CARD, body=data)
    with pytest.raises(ExportedModelError, match=named):
        load_exported(model)


@pytest.mark.parametrize("name", ["sigabrt_seed1_m054.pte", "sigabrt_seed2_m001.pte"])
def test_pte_that_aborts_executorch_is_a_clear_error(tmp_path, name):
    for part in (name, f"{name}.json"):
        shutil.copy(DATA / "crash" / part, tmp_path / part)
    with pytest.raises(ExportedModelError, match="crashed .SIGABRT."):
        load_exported(tmp_path / name)


def _resume(path: Path) -> None:
    checkpoint.restore_training_state(path, {"model": torch.nn.Linear(2, 2)}, rank=0, world=1)


def test_resume_refuses_a_zip_bomb_before_inflating(tmp_path):
    bomb = tmp_path / "last.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", bytes(64 << 20))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(checkpoint.CheckpointError, match="compressed"):
        _resume(bomb)


@pytest.mark.parametrize(
    ("content", "named"),
    [([1, 2, 3], "holds a list"), ({"model": {}}, "missing rng, epoch"), ({}, "missing model")],
)
def test_resume_names_what_the_checkpoint_lacks(tmp_path, content, named):
    path = tmp_path / "last.pt"
    torch.save(content, path)
    with pytest.raises(checkpoint.CheckpointError, match=named):
        _resume(path)
    assert issubclass(checkpoint.CheckpointError, ValueError)  # the CLI's one-line exit 2


def test_convert_destination_errors_are_one_line(tmp_path, capsys):
    src = tmp_path / "w.safetensors"
    src.write_bytes(b"unused: the destination is checked first")
    argv = ["convert", str(src), str(tmp_path), "--model", NAME]
    assert "is a folder" in _one_line_exit_2(argv, capsys)
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["convert", str(src), str(blocker / "sub" / "out.safetensors"), "--model", NAME]
    assert "is a file, not a folder" in _one_line_exit_2(argv, capsys)


def test_weights_from_an_unreadable_special_file_is_one_line(capsys):
    argv = ["predict", str(IMAGE), "--model", NAME, "--weights", "/proc/self/mem"]
    assert "/proc/self/mem: cannot be read" in _one_line_exit_2(argv, capsys)
