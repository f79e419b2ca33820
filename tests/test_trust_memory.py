"""Peak memory of hostile cases (issue 25: model + input + about 200 MB), each measured as
the peak RSS growth of a fresh child process, with the figure printed (``pytest -s``).

Cases that already have such a test are not repeated here: the OpenVINO folding bomb
(tests/test_trust_ir.py), the zip bomb (tests/test_hostile_weights.py), CMYK
and decoded-byte budgets (tests/test_image_budget.py, tests/test_hostile_server.py), and
concurrent JSON bodies (tests/test_hostile_server.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[1]
RANDOM = "--random-weights"  # a registered name runs random weights only when asked for
ENV = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}

# Peak RSS (VmHWM) of the child, in KiB. ``reset`` first lowers the peak to the present RSS
# (Linux's /proc/PID/clear_refs, value 5), so that what start-up touched and freed again
# (imports, warm-up) cannot hide a case's growth below an earlier peak.
_PEAK = """
def peak_kb(reset=False):
    if reset:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
"""

# A server whose model takes about 2.5 s per 25 MB request (10 ms per batch of 8 images), so
# that four concurrent requests overlap. It prints its addresses, then, once told on stdin,
# how far its peak RSS grew while the clients (in the test's own process) called it.
_SERVER = (
    """
import json, sys, time
import numpy as np
import pytest
from res2net.data.preprocess import Preprocess
from res2net.deploy.server import ModelService, ServeConfig, start_server

class Model:
    model_name, labels, num_classes, weights = "m", ["a", "b"], 2, None
    preprocess_cfg = Preprocess(resize_short=32, crop=32)
    def predict_batch(self, batch):
        time.sleep(0.01)
        return np.zeros((len(batch), 2), np.float32)

config = ServeConfig(port=0, grpc_port=0, inflight_bytes=150 * 2**20, timeout_s=120)
running = start_server(ModelService(Model(), config))
"""
    + _PEAK
    + """
before = peak_kb(reset=True)
print(json.dumps({"url": running.url, "grpc_port": running.grpc_port}), flush=True)
sys.stdin.readline()
grew = peak_kb() - before
running.stop()
print(json.dumps({"grew_mb": grew / 1024}), flush=True)
"""
)


def _call(port: int, images: int) -> str:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[images, 3, 32, 32])
    tensor.contents.fp32_contents.extend(np.full(images * 3072, 0.5, np.float32))
    try:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=120)
        return "OK"
    except grpc.RpcError as exc:
        return exc.code().name
    finally:
        channel.close()


def _server_growth(client: Callable[[dict], Any]) -> tuple[Any, float]:
    """Run ``client(addresses)`` against a fresh server child: its result, and how far the
    server's peak RSS grew meanwhile (MB)."""
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=ENV,
    )  # fmt: skip
    try:
        result = client(json.loads(server.stdout.readline()))
        out, err = server.communicate("\n", timeout=300)
    finally:
        server.kill()
    assert server.returncode == 0, err[-2000:]
    return result, json.loads(out.splitlines()[-1])["grew_mb"]


def _four_calls(addresses: dict) -> list[str]:
    codes: list[str] = []
    port = addresses["grpc_port"]
    threads = [threading.Thread(target=lambda: codes.append(_call(port, 2000))) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return codes


def test_concurrent_large_grpc_messages_are_refused_before_they_are_read():
    """Four concurrent 25 MB ``fp32_contents`` messages against a 150 MiB in-flight budget
    (100 MB per message once counted at 4 bytes per byte): the server (measured alone, the
    clients run here) grew 274 MB when grpcio read every message before the budget saw it,
    and 109 MB once a message is read only after its room is reserved. One is answered;
    the others are refused (UNAVAILABLE) without being read."""
    codes, grew = _server_growth(_four_calls)
    print(f"gRPC, four concurrent 25 MB messages: server peak RSS growth {grew:.0f} MB")
    assert "OK" in codes and set(codes) <= {"OK", "UNAVAILABLE"}, codes
    # Four messages held at once, as before, came to 250-300 MB. Run alone, one message at
    # a time comes to 106-114 MB (its 25 MB input and the copies while parsed and batched);
    # in the full suite on 2 busy cores it measured 187 MB once (2026-12-05, Intel Xeon):
    # the budget is returned when the request's tensor is handed over, so a slow server may
    # read the next message while the last one's copies are still alive. Under two
    # messages' worth, with slack, and still below four at once:
    assert grew < 230, grew


# One CLI command in a fresh process: its exit code, and how far its peak RSS grew from
# just before ``main`` ran (imports done).
_CLI_CHILD = (
    _PEAK
    + """
import contextlib, io, json, sys
# What any predict imports, imported before the measure starts: a case's growth is its own.
import cv2, onnx, onnxruntime, torch
import res2net.builder, res2net.deploy.export, res2net.resolve
from res2net.cli import main
before = peak_kb(reset=True)
with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
    code = main(json.loads(sys.argv[1]))
grew = peak_kb() - before
print(json.dumps({"code": code, "err": err.getvalue()[-500:], "grew_mb": grew / 1024}))
"""
)
SLACK_MB = 200


def _cli_growth(argv: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _CLI_CHILD, json.dumps(argv)],
        capture_output=True, text=True, timeout=600, env=ENV,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def _card_export(folder: Path, change: dict, body: bytes = b"onnx") -> Path:
    from test_trust import CARD, _export

    return _export(folder, {**CARD, **change}, body=body)


def _hostile_commands(tmp: Path) -> dict[str, tuple[list[str], bool, str]]:
    """Issue 25's memory cases 6-9 as CLI commands: name -> (argv, whether the network is
    built, words of the error)."""
    from test_trust import CARD, IMAGE, NAME, _constant_of_shape_bomb

    crop = _card_export(tmp / "crop", {"preprocess": dict(CARD["preprocess"], crop=4096)})
    arch = {"depth": 200, "width": 256, "scales": 16, "cardinality": 64}
    huge = _card_export(tmp / "arch", {"arch": arch})
    bomb = _card_export(tmp / "bomb", {}, body=_constant_of_shape_bomb())
    fifo = tmp / "fifo.png"
    os.mkfifo(fifo)
    predict = ["predict", str(IMAGE), "--model"]
    return {
        "6 crop 4096 in the card": ([*predict, str(crop)], False, "crop = 4096"),
        "7 architecture of 2.3 TB": ([*predict, str(huge)], False, "M parameters"),
        "8 ONNX ConstantOfShape": ([*predict, str(bomb)], False, "'ConstantOfShape'"),
        "9 image /dev/zero": (["predict", "/dev/zero", "--model", NAME, RANDOM], True, "/dev/zero"),
        "9 labels /dev/zero": (
            [*predict, NAME, RANDOM, "--labels", "/dev/zero"], True, "/dev/zero"),
        "9 FIFO beside an image": (
            ["predict", str(IMAGE), str(fifo), "--model", NAME, RANDOM], True, "fifo.png"),
    }  # fmt: skip


@pytest.fixture(scope="module")
def plain_predict_mb() -> float:
    """Growth of the same predict on one good image: the network, its runtime and the
    image, against which a case that builds the network is measured."""
    from test_trust import IMAGE, NAME

    result = _cli_growth(["predict", str(IMAGE), "--model", NAME, RANDOM])
    assert result["code"] == 0, result
    print(f"plain predict of one image: peak RSS growth {result['grew_mb']:.0f} MB")
    return result["grew_mb"]


CASES = [
    "6 crop 4096 in the card",
    "7 architecture of 2.3 TB",
    "8 ONNX ConstantOfShape",
    "9 image /dev/zero",
    "9 labels /dev/zero",
    "9 FIFO beside an image",
]


@pytest.mark.parametrize("case", CASES)
def test_hostile_input_stays_within_its_memory_limit(case, tmp_path, plain_predict_mb):
    """Issue 25's figures before: crop 4096 took predict to 4.8 GB, the declared
    architecture and the 248-byte ONNX allocated until the limit (6.9 GB), /dev/zero as an
    image or labels grew to any limit, a FIFO hung predict. Now each is refused (exit 2) or
    fails alone (exit 1) within 200 MB of what a plain predict of a good image takes."""
    argv, builds_network, words = _hostile_commands(tmp_path)[case]
    result = _cli_growth(argv)
    print(f"{case}: peak RSS growth {result['grew_mb']:.0f} MB (exit {result['code']})")
    assert result["code"] in (1, 2) and words in result["err"], result
    limit = SLACK_MB + (plain_predict_mb if builds_network else 0)
    assert result["grew_mb"] < limit, (result, limit)


@pytest.mark.parametrize(
    ("headers", "statuses"),
    [("Content-Length: 2\r\n", {400}), ("", {413, 503})],
    ids=["cl+chunked", "chunked"],
)
def test_chunked_body_of_1000_mb_stays_within_the_body_limit(headers, statuses):
    """Issue 25 case 4: ``Content-Length: 2`` beside ``Transfer-Encoding: chunked`` and a
    1,000 MB body was read whole (+2.0 GB) before a 400. Now it is refused before the body,
    and a plain chunked body is cut off as it arrives, at the 64 MiB body limit (413) or,
    here first, at the server's 150 MiB in-flight budget (503)."""
    from test_hostile_server import _send_chunked

    def send(addresses: dict) -> tuple[int, int]:
        sent, code, _ = _send_chunked(SimpleNamespace(url=addresses["url"]), headers, 1000 << 20)
        return sent, code

    (sent, code), grew = _server_growth(send)
    print(f"chunked 1,000 MB ({headers.strip() or 'no length'}): server peak RSS growth "
          f"{grew:.0f} MB, {sent >> 20} MB sent")  # fmt: skip
    assert code in statuses and sent < 1000 << 20
    assert grew < 64 + SLACK_MB, grew
