"""Crafted weight files: every one is refused with a WeightFileError naming the file, the
interpreter survives, and memory stays bounded (peak RSS of a child process)."""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from res2net.weights.io import WeightFileError, read_weight_file

REPO = Path(__file__).resolve().parents[1]
# Tensors a crafted file could make the reader allocate; the budget is far below it.
BUDGET_MB = 100

# The child reads one file and reports its outcome and how far its peak RSS grew (KiB on
# Linux) over the peak it had after importing everything.
_CHILD = """
import json, resource, sys
from res2net.weights.io import read_weight_file
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    read_weight_file(sys.argv[1])
    outcome = ["ok", ""]
except BaseException as exc:
    outcome = [type(exc).__name__, str(exc)]
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"outcome": outcome, "grew_mb": grew / 1024}))
"""


def read_in_child(path: Path) -> dict:
    """Read ``path`` in a fresh interpreter: a crash there fails the test, not the run."""
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"reader crashed (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.splitlines()[-1])


# -- crafting pickles opcode by opcode (pickle's own opcode values, Lib/pickle.py) ---------


def _text(s: str) -> bytes:
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()  # GLOBAL


def _int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)  # BININT


def _array(shape: tuple[int, ...], spec: str, raw: bytes) -> bytes:
    """numpy's own recipe: _reconstruct(ndarray, (0,), b'b') then BUILD with its state."""
    dims = b"(" + b"".join(_int(d) for d in shape) + b"t"
    dtype = (
        _global("numpy", "dtype") + _text(spec) + b"\x89\x88\x87R"  # dtype(spec, False, True)
        + b"(" + _int(3) + _text("<") + b"NNN" + _int(-1) + _int(-1) + _int(0) + b"tb"
    )  # fmt: skip
    data = (
        b"C" + bytes([len(raw)]) + raw
        if len(raw) < 256
        else b"B" + struct.pack("<I", len(raw)) + raw
    )
    return (
        _global("numpy.core.multiarray", "_reconstruct") + _global("numpy", "ndarray")
        + _int(0) + b"\x85" + b"C\x01b" + b"\x87R"
        + b"(" + _int(1) + dims + dtype + b"\x89" + data + b"tb"
    )  # fmt: skip


def _dict_file(path: Path, *pairs: bytes) -> Path:
    path.write_bytes(b"\x80\x03}(" + b"".join(pairs) + b"u.")
    return path


def test_crafted_array_recipe_is_what_numpy_writes(tmp_path):
    """Control: the hand-made recipe is a real array pickle (plain pickle agrees)."""
    raw = np.arange(6, dtype="<f4").tobytes()
    path = _dict_file(tmp_path / "ok.pdparams", _text("w") + _array((2, 3), "f4", raw))
    assert pickle.loads(path.read_bytes())["w"].shape == (2, 3)
    state, fmt, _ = read_weight_file(path)
    assert fmt == "pdparams" and state["w"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_deeply_nested_keys_are_refused_without_crashing(tmp_path):
    # A key of 300,000 nested tuples: building then hashing it overflows the C stack.
    key = b")" + b"\x85" * 300_000
    path = _dict_file(tmp_path / "deep.pdparams", key + b"N")
    result = read_in_child(path)
    assert result["outcome"][0] == "WeightFileError"
    assert "deep.pdparams" in result["outcome"][1]


def test_deeply_nested_values_are_refused(tmp_path):
    path = _dict_file(tmp_path / "lists.pdparams", _text("w") + b"]" * 5000 + b"a" * 4999)
    with pytest.raises(WeightFileError, match=r"lists\.pdparams: .*nested"):
        read_weight_file(path)


@pytest.mark.parametrize(
    "shape,spec",
    [((1 << 30,), "f4"), ((1 << 20, 1 << 20), "u1"), ((1 << 16,) * 4, "f8"), ((1 << 28,), "O")],
)
def test_declared_size_is_checked_before_allocating(tmp_path, shape, spec):
    path = _dict_file(tmp_path / "huge.pdparams", _text("w") + _array(shape, spec, b"\0" * 8))
    result = read_in_child(path)
    kind, message = result["outcome"]
    assert kind == "WeightFileError" and "huge.pdparams" in message, message
    assert result["grew_mb"] < BUDGET_MB


def test_void_and_object_scalars_are_refused(tmp_path):
    scalar = (
        _global("numpy.core.multiarray", "scalar") + _global("numpy", "dtype")
        + _text("V2000000000") + b"\x89\x88\x87R" + b"C\x00\x86R"
    )  # fmt: skip
    path = _dict_file(tmp_path / "void.pdparams", _text("w") + scalar)
    result = read_in_child(path)
    assert result["outcome"][0] == "WeightFileError", result
    assert result["grew_mb"] < BUDGET_MB


def test_non_string_keys_and_non_arrays_are_refused(tmp_path):
    raw = np.zeros(2, "<f4").tobytes()
    for name, pair in {
        "intkey": _int(7) + _array((2,), "f4", raw),
        "text": _text("w") + _text("not an array"),
    }.items():
        path = _dict_file(tmp_path / f"{name}.pdparams", pair)
        with pytest.raises(WeightFileError, match=rf"{name}\.pdparams: "):
            read_weight_file(path)


def test_security_refusal_is_a_weight_file_error(tmp_path):
    path = _dict_file(tmp_path / "evil.pdparams", _text("w") + _global("os", "system"))
    with pytest.raises(WeightFileError, match=r"evil\.pdparams: refused to load os\.system"):
        read_weight_file(path)


def _stored_pth(path: Path, numel: int = 1000) -> Path:
    torch.save({"w": torch.zeros(numel)}, path)
    return path


def test_compressed_pth_entries_are_refused(tmp_path):
    src = _stored_pth(tmp_path / "plain.pth")
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bomb, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info), compress_type=zipfile.ZIP_DEFLATED)
    assert torch.load(bomb, weights_only=True)["w"].numel() == 1000  # torch itself inflates it
    with pytest.raises(WeightFileError, match=r"bomb\.pth: zip entry .* is compressed"):
        read_weight_file(bomb)
    assert read_weight_file(src)[0]["w"].numel() == 1000


def test_training_export_metadata_is_checked_before_building(tmp_path):
    from safetensors.torch import save_file

    from res2net.engine.evaluate import model_from_weights

    arch = {"depth": 50, "width": 26, "scales": 4}
    pre = {"resize_short": 256, "crop": 224, "mean": [0, 0, 0], "std": [1, 1, 1]}
    good = {"arch": arch, "num_classes": 10, "preprocess": pre}
    cases = {
        "unknown": dict(good, extra=1),
        "missing": {k: v for k, v in good.items() if k != "preprocess"},
        "absurd": dict(good, num_classes=10**12),
        "mismatch": good,  # the file holds a 2-class head and nothing else
        "bigwidth": dict(good, arch=dict(arch, width=10**6)),
    }
    for name, meta in cases.items():
        path = tmp_path / f"{name}.safetensors"
        metadata = {"res2net_training": json.dumps(meta)}
        save_file({"fc.weight": torch.zeros(2, 8)}, str(path), metadata=metadata)
        with pytest.raises(WeightFileError, match=rf"{name}\.safetensors: not a valid"):
            model_from_weights(path)


def test_cli_commands_refuse_bad_weights_with_exit_2(tmp_path):
    from PIL import Image

    bad = {
        ".pdparams": b"\x80\x03}(" + _int(7) + b"Nu.",
        ".pth": b"PK\x03\x04" + b"\0" * 60,
        ".safetensors": struct.pack("<Q", 1 << 40) + b"{" + b"x" * 64,
    }
    files = []
    for suffix, data in bad.items():
        files.append(tmp_path / f"bad{suffix}")
        files[-1].write_bytes(data)
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    model = ["--model", "Res2Net50_26w_4s"]
    commands = [
        ["convert", str(files[0]), str(tmp_path / "o.safetensors"), *model],
        ["predict", str(image), *model, "--weights", str(files[1])],
        ["eval", "--data", str(tmp_path), *model, "--weights", str(files[2])],
        ["export", *model, "--weights", str(files[0])],
        ["serve", *model, "--weights", str(files[1]), "--port", "0", "--no-grpc"],
    ]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    for args, path in zip(commands, files * 2, strict=False):
        proc = subprocess.run(
            [sys.executable, "-m", "res2net", *args], capture_output=True, text=True, env=env
        )
        assert proc.returncode == 2, (args, proc.stderr[-1500:])
        assert "error:" in proc.stderr and path.name in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


# -- property-based fuzzing: any bytes give a WeightFileError or arrays, nothing else ------

_FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip


def _fragments() -> st.SearchStrategy[bytes]:
    raw = np.arange(4, dtype="<f4").tobytes()
    pieces = [
        b"}", b"(", b"t", b"u", b"s", b"R", b"b", b"N", b"]", b"a", b")", b"\x85", b"\x87",
        b"q\x00", b"h\x00", b"\x94", _text("w"), _int(1 << 30), _int(-1),
        _array((4,), "f4", raw), _array((1 << 30,), "f4", raw),
        _global("numpy", "dtype"), _global("numpy.core.multiarray", "_reconstruct"),
        _global("_codecs", "encode"), _global("builtins", "eval"),
    ]  # fmt: skip
    return st.lists(st.sampled_from(pieces), max_size=40).map(b"".join)


@_FUZZ
@given(body=_fragments(), tail=st.binary(max_size=16))
def test_fuzz_pdparams_reader(tmp_path, body, tail):
    path = tmp_path / "fuzz.pdparams"
    path.write_bytes(b"\x80\x03}(" + body + tail + b"u.")
    try:
        state, _, _ = read_weight_file(path)
    except WeightFileError as exc:
        assert str(exc).startswith(str(path))
    else:
        assert all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())


@_FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8))
def test_fuzz_safetensors_and_pth_readers(tmp_path, flips):
    from safetensors.torch import save_file

    for path in (tmp_path / "f.safetensors", tmp_path / "f.pth"):
        if path.suffix == ".pth":
            _stored_pth(path, 16)
        else:
            save_file({"w": torch.zeros(16)}, str(path))
        data = bytearray(path.read_bytes())
        for where, value in flips:
            data[where % len(data)] = value
        path.write_bytes(bytes(data))
        try:
            read_weight_file(path)
        except WeightFileError as exc:
            assert str(path) in str(exc)
