"""An OpenVINO IR is checked before OpenVINO compiles it (issue 25, as ONNX already is).

``compile_model`` folds constant subgraphs, so a 4 KB IR can ask for any amount of memory
before a single image is given. Each hostile IR here is a valid IR (OpenVINO reads it),
written beside metadata whose checksums are right (what an attacker who ships all three
files controls); each is refused by ``load_exported`` with the file and the layer named,
and a real export still loads and gives the network's logits.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
import torch

from res2net.card import ExportedModelError
from res2net.deploy.export import export_model, load_exported, metadata_path

REPO = Path(__file__).resolve().parents[1]
SIDE = 32
TINY_ARCH = {"depth": 50, "width": 4, "scales": 4, "deep_stem": True, "avg_down": True}
PRE = {"resize_short": 36, "crop": SIDE, "mean": [0.5] * 3, "std": [0.5] * 3}


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A tiny Res2Net exported as `res2net export --format openvino` writes it."""
    from res2net.data.preprocess import Preprocess
    from res2net.models.res2net import Res2Net, Res2NetConfig

    torch.manual_seed(0)
    net = Res2Net(Res2NetConfig(**TINY_ARCH), num_classes=10).eval()
    folder = tmp_path_factory.mktemp("ir")
    path = export_model(
        net, folder / "tiny.x", fmt="openvino", name="tiny", preprocess=Preprocess.from_dict(PRE)
    )
    return path, net


def _install(model: ov.Model, real: Path, folder: Path) -> Path:
    """Save ``model`` as an IR beside a copy of the real export's metadata, its file list
    and checksums rewritten for the new files."""
    xml = folder / "m.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    _write_meta(xml, real)
    return xml


def _write_meta(xml: Path, real: Path) -> None:
    meta = json.loads(metadata_path(real).read_text())
    meta["files"] = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (xml, xml.with_suffix(".bin"))
    }
    metadata_path(xml).write_text(json.dumps(meta))


def _graph(make_side_branch) -> ov.Model:
    """input -> mean over H, W, plus the mean of a side branch made from constants only."""
    x = ops.parameter([-1, 3, SIDE, SIDE], np.float32, name="input")
    axes = ops.constant(np.array([2, 3], np.int64))
    side = ops.reduce_mean(make_side_branch(), axes, keep_dims=False)
    return ov.Model([ops.add(ops.reduce_mean(x, axes, keep_dims=False), side)], [x], "hostile")


def _broadcast_bomb() -> ov.Model:
    """Broadcast of 1.0 to 12000 x 12000: OpenVINO folds it when it compiles."""
    target = ops.constant(np.array([1, 1, 12000, 12000], np.int64))
    return _graph(lambda: ops.broadcast(ops.constant(np.float32(1.0)), target))


def _tile_bomb() -> ov.Model:
    repeats = ops.constant(np.array([1, 1, 12000, 12000], np.int64))
    return _graph(lambda: ops.tile(ops.constant(np.ones((1, 1, 1, 1), np.float32)), repeats))


def _concat_doubling() -> ov.Model:
    """Only layer types an export holds, but each Concat doubles: 2^15 x the input."""
    x = ops.parameter([-1, 3, SIDE, SIDE], np.float32, name="input")
    y = x
    for _ in range(15):
        y = ops.concat([y, y], axis=2)
    return ov.Model([ops.reduce_mean(y, ops.constant(np.array([2, 3], np.int64)))], [x], "dbl")


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (_broadcast_bomb, "layer type 'Broadcast'"),
        (_tile_bomb, "layer type 'Tile'"),
        (_concat_doubling, "over the limit of"),
    ],
)
def test_ir_that_would_allocate_is_refused_before_compiling(real, tmp_path, make, named):
    xml = _install(make(), real[0], tmp_path)
    ov.Core().read_model(str(xml))  # a valid IR, not a broken file
    with pytest.raises(ExportedModelError, match=named) as err:
        load_exported(xml)
    assert str(xml) in str(err.value)


def _edit_const(real: Path, folder: Path, edit) -> Path:
    """A copy of the real export with the first ``<data ... offset=...>`` of a Const edited."""
    xml = folder / "m.xml"
    shutil.copy(real.with_suffix(".bin"), xml.with_suffix(".bin"))
    text = real.read_text()
    start = text.index('type="Const"')
    head, tail = text[:start], text[start:]
    line = tail[tail.index("<data") : tail.index("/>") + 2]
    xml.write_text(head + tail.replace(line, edit(line), 1))
    _write_meta(xml, real)
    return xml


def _bin_size(real: Path) -> int:
    return real.with_suffix(".bin").stat().st_size


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        # Bytes past the end of the .bin: the .xml and .bin do not belong together.
        (lambda r, line: _set(line, "offset", str(_bin_size(r) - 2)), "not inside its .bin"),
        # A shape whose element count disagrees with the bytes stored.
        (lambda r, line: _set(line, "shape", "1000,1000"), "needs 4,000,000"),
        (lambda r, line: _set(line, "element_type", "string"), "needs element_type"),
        (lambda r, line: _set(line, "shape", "100000,100000"), "over the limit of"),
    ],
)
def test_const_must_lie_inside_the_bin_and_match_its_shape(real, tmp_path, edit, named):
    xml = _edit_const(real[0], tmp_path, lambda line: edit(real[0], line))
    with pytest.raises(ExportedModelError, match=named):
        load_exported(xml)


def _set(line: str, key: str, value: str) -> str:
    start = line.index(f'{key}="') + len(key) + 2
    return line[:start] + value + line[line.index('"', start) :]


def test_ir_with_a_dtd_or_the_wrong_input_is_refused(real, tmp_path):
    text = real[0].read_text()
    xml = _edit_const(real[0], tmp_path, lambda line: line)
    laughs = '<!DOCTYPE n [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;">]>\n'
    xml.write_text(text.replace("?>", "?>\n" + laughs, 1))
    _write_meta(xml, real[0])
    with pytest.raises(ExportedModelError, match="holds no DTD"):
        load_exported(xml)
    # An IR for 64 x 64 images under metadata that says 32: they do not belong together.
    x = ops.parameter([-1, 3, 64, 64], np.float32, name="input")
    wrong = ov.Model([ops.relu(x)], [x], "wrong")
    with pytest.raises(ExportedModelError, match=r"differs from its metadata's \[N, 3, 32, 32\]"):
        load_exported(_install(wrong, real[0], tmp_path / "w"))


def test_real_export_still_loads_and_matches_the_network(real):
    path, net = real
    batch = torch.rand(2, 3, SIDE, SIDE)
    with torch.no_grad():
        eager = net(batch).numpy()
    got = load_exported(path)(batch.numpy())
    np.testing.assert_allclose(got, eager, atol=1e-4 * float(np.abs(eager).max()))


_LOAD_CHILD = """
import json, resource, sys
import numpy as np
from res2net.deploy.export import load_exported
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:  # OpenVINO compiles on the first image of each size
    load_exported(sys.argv[1])(np.zeros((1, 3, int(sys.argv[2]), int(sys.argv[2])), np.float32))
    outcome = "ran"
except ValueError as exc:
    outcome = str(exc)
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"outcome": outcome, "grew_mb": grew / 1024}))
"""


def test_broadcast_bomb_costs_no_memory(real, tmp_path):
    """Peak RSS growth of a fresh process loading the 4 KB Broadcast IR and giving it one
    image: 260 MB when OpenVINO compiled it (the old code), none when it is refused before
    compiling."""
    xml = _install(_broadcast_bomb(), real[0], tmp_path)
    assert xml.stat().st_size + xml.with_suffix(".bin").stat().st_size < 8192
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_CHILD, str(xml), str(SIDE)],
        capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    print(f"Broadcast IR: peak RSS growth {result['grew_mb']:.0f} MB")
    assert "Broadcast" in result["outcome"], result
    assert result["grew_mb"] < 200, result
