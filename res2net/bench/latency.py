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
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
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
CPU_FP32_PEERS = ("openvino-plain", "paddle-inference")
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

        # What a user gets from OpenVINO out of the box: the unmodified network, defaults.
        with torch.no_grad():
            converted = ov.convert_model(model.eval(), example_input=torch.zeros(1, 3, 224, 224))
        return OpenVinoRuntime(converted, hint=None)
    if precision == "int8":
        if engine not in INT8_ENGINES:
            raise ValueError(f"int8 is measured with {' and '.join(INT8_ENGINES)}, not {engine}")
        from res2net.deploy.export import export_onnx_int8
        from res2net.deploy.int8 import quantize_openvino
        from res2net.deploy.runtimes import convert_openvino, prepare_for_inference

        prepared = prepare_for_inference(model, channels_last=False)
        data = calib if calib is not None else _random_batch(32)
        if engine == "openvino":
            return OpenVinoRuntime(quantize_openvino(convert_openvino(prepared), data))
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


def _preprocess_fn(runtime, name: str, batch: int) -> Callable[[], Any]:
    """Decode + preprocess ``batch`` real photos, then run: the end-to-end cost."""
    from res2net.data.transforms import preprocess
    from res2net.models.registry import get_entry

    photos = sorted(Path(__file__).resolve().parents[2].glob("tests/data/images/*.*"))
    photos = [p for p in photos if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    if not photos:
        raise FileNotFoundError("no photos under tests/data/images for --with-preprocess")
    cfg = get_entry(name).preprocess
    chosen = [photos[i % len(photos)] for i in range(batch)]
    return lambda: runtime(np.stack([preprocess(p, cfg).numpy() for p in chosen]))


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
    contenders: Sequence[_Contender], batch_sizes: Sequence[int], iters: int
) -> None:
    """Time ``iters`` calls of each contender per batch size, taking turns.

    Each turn is one untimed call (it wakes the engine's thread pool, which another engine
    may have left asleep) then a few timed ones, so a slow spell of a shared machine hits
    every engine alike instead of whichever happened to run then.
    """
    per_turn = max(1, iters // 10)
    for batch in batch_sizes:
        x = _random_batch(batch)
        while any(len(c.times[batch]) < iters for c in contenders):
            for c in contenders:
                left = iters - len(c.times[batch])
                if left > 0:
                    c.times[batch] += time_calls(c.caller(x), 1, min(per_turn, left))


def measure_engines(
    name: str,
    plan: Sequence[tuple[str, str]],
    batch_sizes: Sequence[int],
    *,
    warmup: int = 10,
    iters: int = 50,
    with_preprocess: bool = False,
    calib: np.ndarray | None = None,
    device: str = "cpu",
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> list[Measurement]:
    """Latency rows of one model in each (engine, precision) of ``plan``, timed together.

    All runtimes are built and warmed up first (each one's peak memory measured alone), then
    timed round-robin (:func:`time_round_robin`); the end-to-end times follow, one engine
    after another. An engine that cannot be built here is skipped with a message.
    """
    from res2net.models.registry import create_model, model_info

    info = model_info(name)
    model = create_model(name).eval()
    base_rss = rss_mib()
    contenders = []
    for engine, precision in plan:
        log(f"{name} {engine} {precision}: build + warm-up")
        try:
            contenders.append(
                _build_contender(
                    model, name, engine, precision, batch_sizes, warmup, calib, base_rss, device
                )
            )
        except (ImportError, FileNotFoundError, RuntimeError, ValueError) as exc:
            log(f"  skipped {engine}: {str(exc).splitlines()[0]}")
    log(f"{name}: timing {len(contenders)} engines in turns")
    time_round_robin(contenders, batch_sizes, iters)
    rows = []
    for c in contenders:
        for batch in batch_sizes:
            times = c.times[batch]
            median = statistics.median(times)
            row = Measurement(
                name, c.engine, c.precision, batch, round(median, 3),
                round(float(np.percentile(times, 90)), 3), round(median / batch, 3),
                peak_rss_mib=c.peak_rss_mib, gflops=info["gflops"],
                top1=info["published"]["top1"], peer=c.engine in PEERS, device=device,
                peak_gpu_mib=None if c.peak_gpu_mib is None else round(c.peak_gpu_mib, 1),
            )  # fmt: skip
            if with_preprocess:
                e2e = time_calls(_preprocess_fn(c.runtime, name, batch), 2, max(5, iters // 5))
                row.with_preprocess_ms = round(statistics.median(e2e), 3)
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
        precision, on the CPU all of :data:`PEERS` in FP32.
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
            with_preprocess=with_preprocess, calib=calib, device=device, log=log,
        )  # fmt: skip
        if ("paddle-inference", "fp32") in chosen:
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


def _ms(value: float) -> str:
    """A latency for the table: 0.1 ms resolution, 0.01 ms below 10 ms (GPU figures)."""
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def markdown_table(rows: Sequence[Measurement]) -> str:
    """PaddleClas's latency-table layout: one line per model/engine/precision, ms per batch.

    Columns: batch-size latencies (median ms); the fastest of our engines is in bold.
    """
    sizes = sorted({r.batch for r in rows})
    marks = fastest(rows)
    on_gpu = bool(rows) and all(r.device != "cpu" for r in rows)
    memory = "Peak GPU memory (MiB)" if on_gpu else "Peak RSS (MiB)"
    head = ["Model", "Engine", "Precision", *[f"bs={b} (ms)" for b in sizes], memory]
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
        label = f"{engine} (peer)" if engine in PEERS else engine
        peak = f"{max(peaks):.0f}" if peaks else ""
        lines.append("| " + " | ".join([model, label, precision, *cells, peak]) + " |")
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
    int8 = f", INT8 {limits.int8_gops:.0f} GOP/s" if limits.int8_gops else ""
    out = [
        f"Limit measured in this run: FP32 {limits.fp32_gflops:.0f} GFLOP/s ({limits.fp32_source})"
        f"{int8}; all GEMM rates: {others}"
    ]
    index = {(r.model, r.engine, r.precision, r.batch): r for r in rows}
    for (model, precision, batch), engine in sorted(fastest(rows).items()):
        row = index[(model, engine, precision, batch)]
        if row.limit_ms:
            out.append(
                f"{model} bs={batch} {precision}: floor {row.limit_ms:.1f} ms; {engine} "
                f"{row.median_ms:.1f} ms = {100 * row.limit_ms / row.median_ms:.0f}% of the limit"
            )
    return out


def plot(rows: Sequence[Measurement], path: str | os.PathLike, batch: int = 1) -> Path:
    """PNG: batch-``batch`` latency of each engine against GFLOPs, and published top-1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [r for r in rows if r.batch == batch and r.gflops is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for engine in sorted({(r.engine, r.precision) for r in chosen}):
        pts = [r for r in chosen if (r.engine, r.precision) == engine]
        label = f"{engine[0]} {engine[1]}"
        left.plot([r.gflops for r in pts], [r.median_ms for r in pts], "o-", label=label)
        tops = [r for r in pts if r.top1 is not None]
        right.plot([r.median_ms for r in tops], [100 * r.top1 for r in tops], "o", label=label)
    left.set(xlabel="GFLOPs (counted, 224x224)", ylabel=f"median latency, batch {batch} (ms)")
    right.set(xlabel=f"median latency, batch {batch} (ms)", ylabel="published top-1 (%)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend(fontsize=7)
    where = "GPU" if chosen and all(r.device != "cpu" for r in chosen) else "CPU"
    fig.suptitle(f"Res2Net {where} latency (random 224 input, median after warm-up)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def to_json(rows: Sequence[Measurement]) -> str:
    """The rows as a JSON list of objects."""
    return json.dumps([asdict(r) for r in rows], indent=2)
