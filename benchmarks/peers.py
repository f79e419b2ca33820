"""The comparison peers of the latency benchmark (not part of the installed package).

* ``timm-eager``: timm's model of the same architecture in PyTorch eager (timm computes the
  official flavour, which costs the same FLOPs), at the same precision, CPU or GPU.
* ``openvino-plain``: what a user gets from OpenVINO out of the box: ``convert_model`` of
  the unmodified network, default settings; at the precision OpenVINO does not default to,
  only that precision is stated.
* ``paddle-inference``: PaddleClas's own model in Paddle Inference with oneDNN, in the
  PaddleClas interpreter (``.venv-ref``, or ``RES2NET_REF_PYTHON``). It runs in another
  process, kept alive by :class:`PaddleInference`: each of its turns asks it over a pipe
  (JSON lines) to time a few calls and send the times back, so it takes its turns between
  ours like an engine of this process (``paddle_inference_peer.py``).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from res2net.bench.latency import Peer
from res2net.bench.latency import runs as runs_ours

ROOT = Path(__file__).resolve().parents[1]
PADDLE_SCRIPT = Path(__file__).with_name("paddle_inference_peer.py")

# Registry name -> timm name of the same architecture. timm's res2net50d/101d are the "vd"
# networks (deep stem, average-pool shortcut: Bag of Tricks, He et al. 2019, "ResNet-D"),
# and res2net50_26w_4s/14w_8s the paper's (Gao et al. 2019, "Res2Net"), same widths/scales.
TIMM_EQUIVALENT = {
    "Res2Net50_26w_4s": "res2net50_26w_4s",
    "Res2Net50_14w_8s": "res2net50_14w_8s",
    "Res2Net50_vd_26w_4s": "res2net50d",
    "Res2Net50_vd_26w_4s_ssld": "res2net50d",
    "Res2Net101_vd_26w_4s": "res2net101d",
    "Res2Net101_vd_26w_4s_ssld": "res2net101d",
}


def reference_python() -> str:
    """The PaddleClas interpreter: ``RES2NET_REF_PYTHON`` or the checkout's ``.venv-ref``."""
    return os.environ.get("RES2NET_REF_PYTHON") or str(ROOT / ".venv-ref" / "bin" / "python")


class PaddleInference:
    """Paddle Inference in the PaddleClas interpreter, alive for as long as it is timed.

    :param weights: a PaddleClas ``.pdparams`` (default: random weights, which time the same).
    :raises FileNotFoundError: no PaddleClas interpreter.
    :raises RuntimeError: the peer process failed (its stderr tail is in the message).
    """

    engine = "paddle-inference"

    def __init__(self, name: str, weights: str | None = None, python: str | None = None) -> None:
        python = python or reference_python()
        if not Path(python).exists():
            raise FileNotFoundError(
                f"PaddleClas interpreter {python} not found (set RES2NET_REF_PYTHON)"
            )
        cmd = [python, str(PADDLE_SCRIPT), name] + (["--weights", str(weights)] if weights else [])
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        self._read()  # {"ready": true} once the predictor is built

    def _read(self) -> dict[str, Any]:
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait(timeout=30)
            self._stderr.seek(0)
            tail = self._stderr.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"paddle-inference peer exited ({self._proc.returncode}):\n{tail}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"paddle-inference peer: {answer['error']}")
        return answer

    def _ask(self, **request: Any) -> dict[str, Any]:
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def time_calls(self, batch: int, warmup: int, iters: int) -> list[float]:
        """Times (ms) of ``iters`` calls after ``warmup``, clocked in the peer process."""
        return self._ask(op="time", batch=batch, warmup=warmup, iters=iters)["times_ms"]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Paddle Inference's logits of a preprocessed float32 N x 3 x 224 x 224 batch."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        data = base64.b64encode(x.tobytes()).decode()
        answer = self._ask(op="run", shape=list(x.shape), data=data)
        out = np.frombuffer(base64.b64decode(answer["data"]), dtype=np.float32)
        return out.reshape(answer["shape"]).copy()

    def peak_rss_mib(self) -> float | None:
        """The peer process's own peak resident memory."""
        return self._ask(op="memory")["peak_rss_mib"]

    def close(self) -> None:
        if self._proc.poll() is None:
            self._ask(op="quit")
            self._proc.wait(timeout=30)
        self._stderr.close()


def _timm(model: Any, name: str | None, precision: str, device: str) -> Any:
    import timm

    from res2net.deploy.runtimes import EagerRuntime

    return EagerRuntime(timm.create_model(TIMM_EQUIVALENT[name]), device, precision=precision)


def _openvino_plain(model: Any, name: str | None, precision: str, device: str) -> Any:
    import openvino as ov
    import torch

    from res2net.deploy.runtimes import OpenVinoRuntime, openvino_default_precision

    with torch.no_grad():
        converted = ov.convert_model(model.eval(), example_input=torch.zeros(1, 3, 224, 224))
    stated = None if precision == openvino_default_precision() else precision
    return OpenVinoRuntime(converted, hint=None, precision=stated)


def _paddle(model: Any, name: str | None, precision: str, device: str) -> Any:
    return PaddleInference(name)


PEERS = (
    Peer(
        "timm-eager",
        lambda name, p, device: name in TIMM_EQUIVALENT and runs_ours("eager", p, device),
        _timm,
        same_function=False,  # other weights, the official flavour
    ),
    Peer(
        "openvino-plain",
        # At OpenVINO's default (bf16 on CPUs with it) and, beside it, the other.
        lambda name, p, device: (
            device == "cpu" and p != "int8" and runs_ours("openvino", p, device)
        ),
        _openvino_plain,
    ),
    Peer(
        "paddle-inference",
        lambda name, p, device: name is not None and device == "cpu" and p == "fp32",
        _paddle,
    ),
)


def runs(engine: str, precision: str, device: str, name: str | None = "Res2Net50_26w_4s") -> bool:
    """Whether the benchmark measures ``engine`` (ours or a peer) at ``precision`` on
    ``device`` (for model ``name``)."""
    for peer in PEERS:
        if peer.name == engine:
            return peer.runs(name, precision, device)
    return runs_ours(engine, precision, device)
