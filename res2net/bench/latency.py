"""Latency of Res2Net engines, measured the way PaddleClas measures (random 224 input).

For each model x engine x precision x batch size: build the runtime, warm it up, then time
``iters`` calls on one fixed random batch and keep the median (and the 90th percentile).
Optionally the same with image decoding + preprocessing included (real photos), and the
peers in the same run: timm eager, a plain OpenVINO conversion (no rewrites, default
settings) and Paddle Inference with oneDNN (run in the PaddleClas interpreter).

On a GPU (``device="cuda"``) the batch lives on the card and each timed call ends with a
``torch.cuda.synchronize()``: the time is the network's, without host-device copies
(those are in the ``e2e`` column). The peer there is timm eager on the same card, at the
same precision.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Registry name -> timm name of the same architecture (timm computes the official flavour,
# which costs the same FLOPs; REFERENCE.md section 4).
TIMM_EQUIVALENT = {
    "Res2Net50_26w_4s": "res2net50_26w_4s",
    "Res2Net50_14w_8s": "res2net50_14w_8s",
    "Res2Net50_vd_26w_4s": "res2net50d",
    "Res2Net50_vd_26w_4s_ssld": "res2net50d",
    "Res2Net101_vd_26w_4s": "res2net101d",
    "Res2Net101_vd_26w_4s_ssld": "res2net101d",
}
PEERS = ("timm-eager", "openvino-plain", "paddle-inference")
# Peers that run only on the CPU, in FP32.
CPU_FP32_PEERS = ("paddle-inference",)
# Engines measured in INT8, each with its own quantizer (res2net.deploy.int8, .executorch).
INT8_ENGINES = ("openvino", "onnxruntime", "executorch")
PADDLE_SCRIPT = Path(__file__).with_name("paddle_inference_peer.py")


@dataclass
class Measurement:
    """One row of the latency table (times in milliseconds, memory in MiB)."""

    model: str
    engine: str
    precision: str
    batch: int
    median_ms: float
    p90_ms: float
    per_image_ms: float
    peak_rss_mib: float | None = None
    with_preprocess_ms: float | None = None
    peer: bool = False
    gflops: float | None = None
    top1: float | None = None
    # Least possible time for this batch at the GEMM rate measured in the same run
    # (res2net.bench.limits); None unless the run measured limits.
    limit_ms: float | None = None
    device: str = "cpu"
    # torch.cuda.max_memory_allocated while building and warming up (GPU runs).
    peak_gpu_mib: float | None = None
    # Reduced precisions against eager FP32 on real photos: the share of photos whose top-1
    # is unchanged, and the largest |logit difference| / max|FP32 logit| over the photos.
    top1_agreement: float | None = None
    max_rel_diff: float | None = None
    # OpenVINO rows: the INFERENCE_PRECISION_HINT the compiled model itself reports.
    runs_as: str | None = None


def time_calls(fn: Callable[[], Any], warmup: int, iters: int) -> list[float]:
    """Wall times in ms of ``iters`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so each engine gets its own peak.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mib() -> float | None:
    """This process's peak resident memory since the last reset (Linux), in MiB."""
    return _status_mib("VmHWM")


def rss_mib() -> float | None:
    """This process's resident memory now (Linux), in MiB."""
    return _status_mib("VmRSS")


def _random_batch(batch: int, side: int = 224) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, 3, side, side), dtype=np.float32)


def runs(engine: str, precision: str, device: str) -> bool:
    """Whether the bench measures ``engine`` (ours or a peer) at ``precision`` on ``device``."""
    from res2net.deploy.runtimes import engine_precisions

    if engine in CPU_FP32_PEERS:
        return device == "cpu" and precision == "fp32"
    if engine == "openvino-plain":
        # Measured at OpenVINO's default (bf16 on CPUs with it) and, beside it, the other.
        return device == "cpu" and precision in engine_precisions("openvino", device)
    if precision == "int8":
        return device == "cpu" and engine in INT8_ENGINES
    return precision in engine_precisions("eager" if engine == "timm-eager" else engine, device)


def build_runtime(
    model: Any,
    name: str,
    engine: str,
    precision: str,
    calib: np.ndarray | None,
    device: str = "cpu",
):
    """A runtime of ``engine`` at ``precision`` on ``device``.

    ``int8``: ``openvino`` quantized with NNCF, ``onnxruntime`` with ONNX Runtime's
    quantizer, ``executorch`` with PT2E (XNNPACK's quantizer), calibrated on ``calib``
    (random noise when None: fine for timing only).

    :raises ValueError: a combination the bench does not measure (:func:`runs`).
    """
    from res2net.deploy.runtimes import OnnxRuntime, OpenVinoRuntime, create_runtime

    if not runs(engine, precision, device):
        raise ValueError(f"{engine} is not measured at {precision} on {device}")
    if engine == "timm-eager":
        import timm

        from res2net.deploy.runtimes import EagerRuntime

        return EagerRuntime(timm.create_model(TIMM_EQUIVALENT[name]), device, precision=precision)
    if engine == "openvino-plain":
        import openvino as ov
        import torch

        from res2net.deploy.runtimes import openvino_default_precision

        # What a user gets from OpenVINO out of the box: the unmodified network, defaults;
        # at the precision OpenVINO does not default to, only that precision is stated.
        with torch.no_grad():
            converted = ov.convert_model(model.eval(), example_input=torch.zeros(1, 3, 224, 224))
        stated = None if precision == openvino_default_precision() else precision
        return OpenVinoRuntime(converted, hint=None, precision=stated)
    if precision == "int8":
        if engine not in INT8_ENGINES:
            raise ValueError(f"int8 is measured with {' and '.join(INT8_ENGINES)}, not {engine}")
        from res2net.deploy.export import export_onnx_int8
        from res2net.deploy.int8 import quantize_openvino
        from res2net.deploy.runtimes import convert_openvino, prepare_for_inference

        prepared = prepare_for_inference(model, channels_last=False)
        data = calib if calib is not None else _random_batch(32)
        if engine == "openvino":
            quantized = quantize_openvino(convert_openvino(prepared), data)
            return OpenVinoRuntime(quantized, precision="int8")
        if engine == "executorch":
            return _executorch_int8(prepared, data)
        with tempfile.TemporaryDirectory() as tmp:
            return OnnxRuntime(export_onnx_int8(prepared, Path(tmp) / "int8.onnx", data), "cpu")
    return create_runtime(model, engine, device=device, precision=precision)


def _executorch_int8(prepared: Any, calib: np.ndarray) -> Any:
    """An INT8 XNNPACK program (PT2E), through a ``.pte`` file as an app would load it."""
    from res2net.deploy.executorch import ExecuTorchRuntime, export_executorch

    with tempfile.TemporaryDirectory() as tmp:
        side = calib.shape[-1]
        return ExecuTorchRuntime(export_executorch(prepared, Path(tmp) / "m.pte", side, calib))


def _photos() -> list[Path]:
    photos = sorted(Path(__file__).resolve().parents[2].glob("tests/data/images/*.*"))
    photos = [p for p in photos if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    if not photos:
        raise FileNotFoundError("no photos under tests/data/images of the source checkout")
    return photos


def _photo_batch_fn(cfg: Any, batch: int) -> Callable[[], np.ndarray]:
    """Decode + preprocess ``batch`` real photos with ``cfg`` (a ``Preprocess``) into one
    model input: the end-to-end extra cost."""
    from res2net.data.transforms import preprocess

    photos = _photos()
    chosen = [photos[i % len(photos)] for i in range(batch)]
    return lambda: np.stack([preprocess(p, cfg).numpy() for p in chosen])


def check_photos(name: str, calib: np.ndarray | None) -> np.ndarray:
    """The photos reduced precisions are checked on: the calibration images when given,
    else the source checkout's test photos, preprocessed as ``name``'s weights expect."""
    if calib is not None:
        return calib
    from res2net.data.transforms import preprocess
    from res2net.models.registry import get_entry

    cfg = get_entry(name).preprocess
    return np.stack([preprocess(p, cfg).numpy() for p in _photos()])


def agreement(out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(share of images with the same top-1, largest |out - ref| / max|ref| of an image)."""
    same = float((out.argmax(1) == ref.argmax(1)).mean())
    rel = np.abs(out - ref).max(axis=1) / np.abs(ref).max(axis=1)
    return same, float(rel.max())


def logits_in_chunks(runtime: Any, photos: np.ndarray, size: int) -> np.ndarray:
    """Logits of ``photos``, ``size`` at a time (the last chunk padded), so the runtime
    sees only a batch shape it was warmed up with (``compile`` specialises per shape)."""
    out = []
    for start in range(0, len(photos), size):
        chunk = photos[start : start + size]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])
        out.append(np.asarray(runtime(padded), dtype=np.float32)[: len(chunk)])
    return np.concatenate(out)


def _check_against_fp32(contenders: Sequence[Any], model: Any, photos: np.ndarray, size: int):
    """Fill each reduced-precision contender's ``accuracy`` against eager FP32 on ``photos``
    (timm has other weights and Paddle runs in another process: those are left out)."""
    from res2net.deploy.runtimes import EagerRuntime

    reduced = [
        c for c in contenders
        if c.precision != "fp32" and c.engine not in ("timm-eager", "paddle-inference")
    ]  # fmt: skip
    if not reduced:
        return
    reference = logits_in_chunks(EagerRuntime(model), photos, size)
    for c in reduced:
        c.accuracy = agreement(logits_in_chunks(c.runtime, photos, size), reference)


@dataclass
class _Contender:
    """One engine of one model, built and warmed up, waiting for its timed turns."""

    engine: str
    precision: str
    runtime: Any
    peak_rss_mib: float | None
    times: dict[int, list[float]]
    device: str = "cpu"
    peak_gpu_mib: float | None = None
    # (share of photos with the same top-1, largest relative logit difference) vs FP32.
    accuracy: tuple[float, float] | None = None
    # With decoding + preprocessing timed: per call, that part and the model call after it.
    e2e: dict[int, list[float]] = field(default_factory=dict)

    def caller(self, x: np.ndarray) -> Callable[[], Any]:
        """One timed call on ``x``: numpy in and out on the CPU (and for engines that only
        take numpy); for the PyTorch engines on a GPU the batch is copied to the card once,
        and the call waits for the card to finish."""
        if not (self.device.startswith("cuda") and hasattr(self.runtime, "device_call")):
            return lambda: self.runtime(x)
        import torch

        on_card = self.runtime.device_input(x)

        def call() -> None:
            self.runtime.device_call(on_card)
            torch.cuda.synchronize(self.device)

        return call


def _build_contender(
    model: Any,
    name: str,
    engine: str,
    precision: str,
    batch_sizes: Sequence[int],
    warmup: int,
    calib: np.ndarray | None,
    base_rss: float | None = None,
    device: str = "cpu",
) -> _Contender:
    """Build the runtime and warm it up at every batch size, measuring its peak memory.

    The engines built before this one stay resident (they are timed later, in turns), so
    the figure is ``base_rss`` (the process before any engine) plus this build's own rise:
    the peak a process holding only this engine would reach. On a GPU, the card's peak
    allocation during the build and warm-up is recorded too.
    """
    gpu = device.startswith("cuda")
    if gpu:
        import torch

        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    _reset_peak_rss()
    before = rss_mib()
    runtime = build_runtime(model, name, engine, precision, calib, device)
    contender = _Contender(engine, precision, runtime, None, {b: [] for b in batch_sizes}, device)
    for batch in batch_sizes:
        call = contender.caller(_random_batch(batch))
        for _ in range(max(1, warmup)):
            call()
    peak = peak_rss_mib()
    if None not in (peak, before, base_rss):
        peak = base_rss + peak - before
    contender.peak_rss_mib = peak
    if gpu:
        contender.peak_gpu_mib = torch.cuda.max_memory_allocated(device) / 2**20
    return contender


def time_round_robin(
    contenders: Sequence[_Contender],
    batch_sizes: Sequence[int],
    iters: int,
    inputs: Callable[[int], Callable[[], np.ndarray]] | None = None,
) -> None:
    """Time ``iters`` calls of each contender per batch size, taking turns.

    Each turn is one untimed call (it wakes the engine's thread pool, which another engine
    may have left asleep) then a few timed ones, so a slow spell of a shared machine hits
    every engine alike instead of whichever happened to run then.

    :param inputs: batch size -> a function making a model input from real photos. Each
        timed call then first decodes + preprocesses (timed apart), then runs the model on
        what it made: ``e2e`` holds their sums, so an e2e figure is never below the model's.
    """
    per_turn = max(1, iters // 10)
    for batch in batch_sizes:
        x = _random_batch(batch)
        make = inputs(batch) if inputs else None
        while any(len(c.times[batch]) < iters for c in contenders):
            for c in contenders:
                left = iters - len(c.times[batch])
                if left <= 0:
                    continue
                if make is None:
                    c.times[batch] += time_calls(c.caller(x), 1, min(per_turn, left))
                    continue
                c.caller(x)()  # untimed, as above
                for _ in range(min(per_turn, left)):
                    start = time.perf_counter()
                    call = c.caller(make())
                    made = time.perf_counter()
                    call()
                    end = time.perf_counter()
                    c.times[batch].append((end - made) * 1e3)
                    c.e2e.setdefault(batch, []).append((end - start) * 1e3)


def bench_model(name: str | None, weights: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The network to time (eval mode) and the facts its rows carry: ``name`` (the row's
    model column), ``gflops``, ``published`` top-1 and ``preprocess_cfg``.

    :param name: a registered model; ``None`` takes the network from ``weights``, a file
        written by ``res2net train`` (its GFLOPs counted at 224x224, as for the registry).
    :param weights: a weight file (default: random weights, which time the same).
    """
    from res2net.models.registry import model_info

    if name is None:
        from res2net.deploy.predictor import load_training_export
        from res2net.models.counting import count_model

        network, pre, _, _ = load_training_export(weights)
        _, gflops = count_model(network.config, 224, network.num_classes)
        facts = {"name": str(weights), "gflops": round(gflops, 3), "published": {"top1": None}}
        return network, {**facts, "preprocess_cfg": pre}
    from res2net.builder import create_model
    from res2net.engine.evaluate import model_from_weights
    from res2net.models.registry import get_entry

    network = model_from_weights(weights, name)[0] if weights else create_model(name)
    return network.eval(), {**model_info(name), "preprocess_cfg": get_entry(name).preprocess}


def measure_engines(
    name: str | None,
    plan: Sequence[tuple[str, str]],
    batch_sizes: Sequence[int],
    *,
    warmup: int = 10,
    iters: int = 50,
    with_preprocess: bool = False,
    calib: np.ndarray | None = None,
    device: str = "cpu",
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
    weights: str | None = None,
) -> list[Measurement]:
    """Latency rows of one model in each (engine, precision) of ``plan``, timed together.

    All runtimes are built and warmed up first (each one's peak memory measured alone), then
    timed round-robin (:func:`time_round_robin`); with ``with_preprocess`` every timed call
    decodes + preprocesses real photos first, so the model-only and end-to-end figures come
    from the same calls. An engine that cannot be built here is skipped with a message.
    """
    model, info = bench_model(name, weights)
    base_rss = rss_mib()
    contenders = []
    for engine, precision in plan:
        log(f"{info['name']} {engine} {precision}: build + warm-up")
        try:
            contenders.append(
                _build_contender(
                    model, name, engine, precision, batch_sizes, warmup, calib, base_rss, device
                )
            )
        except (ImportError, FileNotFoundError, RuntimeError, ValueError) as exc:
            log(f"  skipped {engine}: {str(exc).splitlines()[0]}")
    log(f"{info['name']}: timing {len(contenders)} engines in turns")
    cfg = info["preprocess_cfg"]
    inputs = (lambda batch: _photo_batch_fn(cfg, batch)) if with_preprocess else None
    time_round_robin(contenders, batch_sizes, iters, inputs)
    if any(c.precision != "fp32" for c in contenders):
        log(f"{info['name']}: reduced precisions against eager FP32 on the photos")
        _check_against_fp32(contenders, model, check_photos(name, calib), batch_sizes[-1])
    rows = []
    for c in contenders:
        for batch in batch_sizes:
            times = c.times[batch]
            median = statistics.median(times)
            row = Measurement(
                info["name"], c.engine, c.precision, batch, round(median, 3),
                round(float(np.percentile(times, 90)), 3), round(median / batch, 3),
                peak_rss_mib=c.peak_rss_mib, gflops=info["gflops"],
                top1=info["published"]["top1"]
                if _published_top1_applies(c.engine, c.precision) else None,
                peer=c.engine in PEERS, device=device,
                peak_gpu_mib=None if c.peak_gpu_mib is None else round(c.peak_gpu_mib, 1),
            )  # fmt: skip
            if c.accuracy is not None:
                row.top1_agreement, row.max_rel_diff = c.accuracy
            if hasattr(c.runtime, "inference_precisions"):
                row.runs_as = ",".join(sorted(c.runtime.inference_precisions()))
            if c.e2e.get(batch):
                row.with_preprocess_ms = round(statistics.median(c.e2e[batch]), 3)
            rows.append(row)
    return rows


def measure_paddle_inference(
    name: str, batch_sizes: Sequence[int], *, warmup: int, iters: int, python: str | None = None
) -> list[Measurement]:
    """Paddle Inference + oneDNN on PaddleClas's own model, in the PaddleClas interpreter.

    :param python: the interpreter with paddlepaddle + paddleclas (default: ``.venv-ref``
        next to the package checkout, or ``RES2NET_REF_PYTHON``).
    :raises FileNotFoundError: no such interpreter.
    """
    from res2net.models.registry import model_info

    root = Path(__file__).resolve().parents[2]
    python = python or os.environ.get("RES2NET_REF_PYTHON") or str(root / ".venv-ref/bin/python")
    if not Path(python).exists():
        raise FileNotFoundError(
            f"PaddleClas interpreter {python} not found (set RES2NET_REF_PYTHON)"
        )
    sizes = ",".join(map(str, batch_sizes))
    cmd = [python, str(PADDLE_SCRIPT), name, sizes, str(warmup), str(iters)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    rows = []
    for item in json.loads(proc.stdout.strip().splitlines()[-1]):
        times = item["times_ms"]
        median = statistics.median(times)
        rows.append(
            Measurement(
                name,
                "paddle-inference",
                "fp32",
                item["batch"],
                round(median, 2),
                round(float(np.percentile(times, 90)), 2),
                round(median / item["batch"], 2),
                peak_rss_mib=item.get("peak_rss_mib"),
                peer=True,
                top1=model_info(name)["published"]["top1"],
            )
        )
    return rows


def run_benchmark(
    models: Sequence[str],
    engines: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = (1, 4, 8),
    precisions: Sequence[str] = ("fp32",),
    *,
    compare: bool = False,
    with_preprocess: bool = False,
    warmup: int = 10,
    iters: int = 50,
    calib: np.ndarray | None = None,
    limits: Any = None,
    device: str = "cpu",
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
    weights: str | None = None,
) -> list[Measurement]:
    """Measure every model x engine x precision x batch size (and the peers with ``compare``).

    :param engines: default: every engine available on ``device`` (on the CPU without
        ``tensorrt``).
    :param limits: a :class:`res2net.bench.limits.Limits` measured in this run; fills each
        CPU row's ``limit_ms``.
    :param precisions: ``fp32`` (every engine), ``bf16`` (the PyTorch engines), ``fp16``
        (the PyTorch engines on a GPU), ``int8`` (:data:`INT8_ENGINES`, CPU); a combination
        not measured (:func:`runs`) is skipped with a message.
    :param device: ``"cpu"`` or ``"cuda"``; on a GPU the peer is timm eager at every
        precision, on the CPU all of :data:`PEERS` (OpenVINO's plain conversion at fp32 and,
        where native, bf16; Paddle Inference in fp32).
    :param weights: a weight file for the model(s) (default random; the "vs FP32" agreement
        of reduced precisions means most with real weights); with ``models=[None]``, a file
        written by ``res2net train``, whose network is timed (see :func:`bench_model`).
    """
    from res2net.deploy.runtimes import available_engines

    engines = list(engines or [e for e in available_engines(device) if e != "tensorrt"])
    if device.startswith("cuda"):
        import torch

        # cuDNN picks its fastest kernels for every engine, not only for those that ask.
        torch.backends.cudnn.benchmark = True
    rows: list[Measurement] = []
    for name in models:
        plan = [(e, p) for p in precisions for e in engines]
        if compare:
            plan += [(peer, p) for p in precisions for peer in PEERS]
        chosen = []
        for engine, precision in plan:
            if engine == "timm-eager" and name not in TIMM_EQUIVALENT:
                continue
            if not runs(engine, precision, device):
                # Peers and INT8 are measured where they exist; say so for the rest.
                if engine not in PEERS and precision != "int8":
                    log(f"skip {engine} {precision}: not measured on {device}")
                continue
            chosen.append((engine, precision))
        in_process = [(e, p) for e, p in chosen if e != "paddle-inference"]
        rows += measure_engines(
            name, in_process, batch_sizes, warmup=warmup, iters=iters,
            with_preprocess=with_preprocess, calib=calib, device=device, log=log, weights=weights,
        )  # fmt: skip
        if ("paddle-inference", "fp32") in chosen and name is not None:
            # Another interpreter (PaddleClas's venv), so it runs after ours, not in turns.
            log(f"{name} paddle-inference fp32 ...")
            try:
                rows += measure_paddle_inference(name, batch_sizes, warmup=warmup, iters=iters)
            except (FileNotFoundError, RuntimeError) as exc:
                log(f"  skipped paddle-inference: {str(exc).splitlines()[0]}")
    if limits is not None:
        from res2net.models.registry import model_info

        for row in rows:
            if row.device != "cpu":
                continue
            row.gflops = row.gflops or model_info(row.model)["gflops"]
            floor = limits.floor_ms(row.gflops, row.batch, row.precision)
            row.limit_ms = None if floor is None else round(floor, 2)
    return rows


def fastest(rows: Sequence[Measurement]) -> dict[tuple[str, str, int], str]:
    """(model, precision, batch) -> the engine of ours with the lowest median."""
    best: dict[tuple[str, str, int], Measurement] = {}
    for row in rows:
        key = (row.model, row.precision, row.batch)
        if not row.peer and (key not in best or row.median_ms < best[key].median_ms):
            best[key] = row
    return {key: row.engine for key, row in best.items()}


def machine_lines(device: str = "cpu", precisions: Sequence[str] = ("fp32",)) -> list[str]:
    """Lines above the table: the CPU with its ISA (AVX2 / AVX-512 / VNNI / AMX), threads,
    the engine ``engine="auto"`` picks per precision, and what OpenVINO runs by default (the
    "plain conversion" peer's precision)."""
    from res2net.bench.limits import cpu_isa
    from res2net.bench.report import cpu_name
    from res2net.deploy.runtimes import (
        AUTO_ORDER,
        auto_engine,
        cpu_threads,
        openvino_default_precision,
    )

    kind = "cuda" if device.startswith("cuda") else "cpu"
    picks = [f"{auto_engine(device, p)} for {p}" for p in precisions if (kind, p) in AUTO_ORDER]
    lines = [f"CPU: {cpu_name()} ({cpu_isa()}), {cpu_threads()} threads"]
    lines += [f"engine='auto' picks: {', '.join(picks)}"] if picks else []
    if device == "cpu" and importlib.util.find_spec("openvino") is not None:
        lines.append(
            f"openvino-plain: the unmodified network with OpenVINO's defaults, which on this "
            f"CPU run {openvino_default_precision()}; at the other precision only "
            "INFERENCE_PRECISION_HINT is set. [runs X]: what the compiled model reports."
        )
    return lines


def _ms(value: float) -> str:
    """A latency for the table: 0.1 ms resolution, 0.01 ms below 10 ms (GPU figures)."""
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _vs_fp32(rows: Sequence[Measurement]) -> str:
    """The accuracy cell of a reduced precision: "top-1 agree% / max rel. logit diff"."""
    row = next((r for r in rows if r.top1_agreement is not None), None)
    if row is None:
        return ""
    return f"{100 * row.top1_agreement:.0f}% / {row.max_rel_diff:.1e}"


def _engine_label(engine: str, runs_as: str | None) -> str:
    label = f"{engine} (peer)" if engine in PEERS else engine
    return f"{label} [runs {runs_as}]" if runs_as else label


def markdown_table(rows: Sequence[Measurement]) -> str:
    """PaddleClas's latency-table layout: one line per model/engine/precision, ms per batch.

    Columns: batch-size latencies (median ms); the fastest of our engines is in bold; OpenVINO
    rows name the precision the compiled model reports (``[runs bf16]``); with reduced
    precisions, a column "vs FP32": top-1 agreement with eager FP32 on the photos and the
    largest logit difference relative to the largest FP32 logit.
    """
    sizes = sorted({r.batch for r in rows})
    marks = fastest(rows)
    on_gpu = bool(rows) and all(r.device != "cpu" for r in rows)
    memory = "Peak GPU memory (MiB)" if on_gpu else "Peak RSS (MiB)"
    checked = any(r.top1_agreement is not None for r in rows)
    head = ["Model", "Engine", "Precision", *[f"bs={b} (ms)" for b in sizes], memory]
    head += ["vs FP32: top-1 agree / max rel diff"] if checked else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups: dict[tuple[str, str, str], dict[int, Measurement]] = {}
    for r in rows:
        groups.setdefault((r.model, r.engine, r.precision), {})[r.batch] = r
    for (model, engine, precision), by_batch in groups.items():
        cells = []
        for b in sizes:
            r = by_batch.get(b)
            text = "" if r is None else _ms(r.median_ms)
            if r is not None and r.with_preprocess_ms is not None:
                text += f" ({_ms(r.with_preprocess_ms)} e2e)"
            if r is not None and marks.get((model, precision, b)) == engine:
                text = f"**{text}**"
            cells.append(text)
        peaks = [r.peak_gpu_mib if on_gpu else r.peak_rss_mib for r in by_batch.values()]
        peaks = [p for p in peaks if p is not None]
        label = _engine_label(engine, next(iter(by_batch.values())).runs_as)
        peak = f"{max(peaks):.0f}" if peaks else ""
        extra = [_vs_fp32(list(by_batch.values()))] if checked else []
        lines.append("| " + " | ".join([model, label, precision, *cells, peak, *extra]) + " |")
    return "\n".join(lines)


def ratios(rows: Sequence[Measurement]) -> list[str]:
    """Lines "peer / our fastest" per model, precision and batch size (peers measured at
    that precision: FP32 on the CPU, every precision on a GPU)."""
    marks = fastest(rows)
    index = {(r.model, r.engine, r.precision, r.batch): r for r in rows}
    out = []
    for (model, precision, batch), engine in sorted(marks.items()):
        ours = index[(model, engine, precision, batch)]
        for peer in PEERS:
            other = index.get((model, peer, precision, batch))
            if other is not None:
                ratio = other.median_ms / ours.median_ms
                verdict = f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"
                digits = 1 if ours.median_ms >= 10 else 3
                out.append(
                    f"{model} bs={batch} {precision}: {engine} {ours.median_ms:.{digits}f} ms vs "
                    f"{peer} {other.median_ms:.{digits}f} ms = {verdict}"
                )
    return out


def limit_lines(rows: Sequence[Measurement], limits: Any) -> list[str]:
    """How close our fastest engine comes to the machine's limit, per model/precision/batch."""
    others = ", ".join(f"{name} {rate:.0f}" for name, rate in limits.rates.items())
    bf16 = f", BF16 {limits.bf16_gflops:.0f} GFLOP/s" if limits.bf16_gflops else ""
    int8 = f", INT8 {limits.int8_gops:.0f} GOP/s" if limits.int8_gops else ""
    isa = f" on {limits.isa}" if limits.isa else ""
    out = [
        f"Limit measured in this run{isa}: FP32 {limits.fp32_gflops:.0f} GFLOP/s "
        f"({limits.fp32_source}){bf16}{int8}; all GEMM rates: {others}"
    ]
    index = {(r.model, r.engine, r.precision, r.batch): r for r in rows}
    for (model, precision, batch), engine in sorted(fastest(rows).items()):
        row = index[(model, engine, precision, batch)]
        if row.limit_ms:
            # The INT8 rate is one library's integer matrix product, not a bound: an engine's
            # own INT8 convolution kernels can beat it (over 100%).
            caveat = " (a reference rate, not a bound)" if precision == "int8" else ""
            out.append(
                f"{model} bs={batch} {precision}: floor {row.limit_ms:.1f} ms; {engine} "
                f"{row.median_ms:.1f} ms = {100 * row.limit_ms / row.median_ms:.0f}% of the limit"
                + caveat
            )
    return out


def plot(
    rows: Sequence[Measurement], path: str | os.PathLike, batch: int = 1, where: str | None = None
) -> list[Path]:
    """Two PNGs (:mod:`res2net.plotting`): batch-``batch`` latency against top-1 at ``path``,
    and the first model's per-image latency against batch size beside it (``*_batch.png``).

    Top-1 is drawn only where a row carries one (:func:`_published_top1_applies`); the
    others sit on a latency-only strip.

    :param where: the machine and date for the titles (default: this machine, today).
    """
    from res2net.bench.report import machine_line
    from res2net.plotting import LatencyPoint, batch_scaling, latency_accuracy

    path = Path(path)
    where = where or machine_line(rows[0].device if rows else "cpu")
    points = [
        LatencyPoint(r.model, f"{r.engine} {r.precision}", r.median_ms, r.top1, r.peer)
        for r in rows
        if r.batch == batch
    ]
    first = latency_accuracy(
        points, path, title=f"Res2Net latency at batch {batch} vs top-1\n{where}",
        xlabel=f"median latency, batch {batch}, random 224x224 input (ms, log scale)",
        ylabel="top-1 (%) as PaddleClas publishes it",
    )  # fmt: skip
    model = rows[0].model if rows else ""
    scaling: dict[str, dict[int, float]] = {}
    for r in rows:
        if r.model == model:
            scaling.setdefault(f"{r.engine} {r.precision}", {})[r.batch] = r.per_image_ms
    peers = [f"{r.engine} {r.precision}" for r in rows if r.peer]
    second = batch_scaling(
        scaling, path.with_name(f"{path.stem}_batch{path.suffix}"), peers=peers,
        title=f"{model}: latency per image vs batch size\n{where}",
    )  # fmt: skip
    return [first, second]


def _published_top1_applies(engine: str, precision: str) -> bool:
    """PaddleClas's published top-1 belongs to a row only where the row computes PaddleClas's
    function in FP32 (ours match its logits; Paddle Inference is PaddleClas's own model).
    INT8 and BF16 change the numbers, timm computes another flavour: no accuracy for those
    was measured here, so none is claimed."""
    return precision == "fp32" and engine != "timm-eager"


def to_json(rows: Sequence[Measurement]) -> str:
    """The rows as a JSON list of objects."""
    return json.dumps([asdict(r) for r in rows], indent=2)
