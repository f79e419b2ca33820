"""Latency of Res2Net engines, measured the way PaddleClas measures (random 224 input).

For each model x engine x precision x batch size: build the runtime, warm it up, then time
``iters`` calls on one fixed random batch and keep the median (and the 90th percentile).
Optionally the same with image decoding + preprocessing included (real photos), and the
peers in the same run: timm eager, a plain OpenVINO conversion (no rewrites, default
settings) and Paddle Inference with oneDNN (run in the PaddleClas interpreter).
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
# Engines measured in INT8, each with its own quantizer (res2net.deploy.int8).
INT8_ENGINES = ("openvino", "onnxruntime")
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


def build_runtime(model: Any, name: str, engine: str, precision: str, calib: np.ndarray | None):
    """A runtime of ``engine`` at ``precision``.

    ``int8``: ``openvino`` quantized with NNCF, or ``onnxruntime`` with ONNX Runtime's
    quantizer, calibrated on ``calib`` (random noise when None: fine for timing only).
    """
    from res2net.deploy.runtimes import OnnxRuntime, OpenVinoRuntime, create_runtime

    if engine == "timm-eager":
        import timm

        from res2net.deploy.runtimes import EagerRuntime

        return EagerRuntime(timm.create_model(TIMM_EQUIVALENT[name]))
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
        with tempfile.TemporaryDirectory() as tmp:
            return OnnxRuntime(export_onnx_int8(prepared, Path(tmp) / "int8.onnx", data), "cpu")
    return create_runtime(model, engine)


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


def _build_contender(
    model: Any,
    name: str,
    engine: str,
    precision: str,
    batch_sizes: Sequence[int],
    warmup: int,
    calib: np.ndarray | None,
    base_rss: float | None = None,
) -> _Contender:
    """Build the runtime and warm it up at every batch size, measuring its peak memory.

    The engines built before this one stay resident (they are timed later, in turns), so
    the figure is ``base_rss`` (the process before any engine) plus this build's own rise:
    the peak a process holding only this engine would reach.
    """
    _reset_peak_rss()
    before = rss_mib()
    runtime = build_runtime(model, name, engine, precision, calib)
    for batch in batch_sizes:
        x = _random_batch(batch)
        for _ in range(max(1, warmup)):
            runtime(x)
    peak = peak_rss_mib()
    if None not in (peak, before, base_rss):
        peak = base_rss + peak - before
    return _Contender(engine, precision, runtime, peak, {b: [] for b in batch_sizes})


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
                    call = lambda c=c, x=x: c.runtime(x)  # noqa: E731
                    c.times[batch] += time_calls(call, 1, min(per_turn, left))


def measure_engines(
    name: str,
    plan: Sequence[tuple[str, str]],
    batch_sizes: Sequence[int],
    *,
    warmup: int = 10,
    iters: int = 50,
    with_preprocess: bool = False,
    calib: np.ndarray | None = None,
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
                    model, name, engine, precision, batch_sizes, warmup, calib, base_rss
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
                name, c.engine, c.precision, batch, round(median, 2),
                round(float(np.percentile(times, 90)), 2), round(median / batch, 2),
                peak_rss_mib=c.peak_rss_mib, gflops=info["gflops"],
                top1=info["published"]["top1"], peer=c.engine in PEERS,
            )  # fmt: skip
            if with_preprocess:
                e2e = time_calls(_preprocess_fn(c.runtime, name, batch), 2, max(5, iters // 5))
                row.with_preprocess_ms = round(statistics.median(e2e), 2)
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
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> list[Measurement]:
    """Measure every model x engine x precision x batch size (and the peers with ``compare``).

    :param engines: default: every available engine except plain ``eager`` duplicates.
    :param limits: a :class:`res2net.bench.limits.Limits` measured in this run; fills each
        row's ``limit_ms``.
    :param precisions: ``fp32`` (every engine), ``int8`` (:data:`INT8_ENGINES`); others skipped
        with a message.
    """
    from res2net.deploy.runtimes import available_engines

    engines = list(engines or [e for e in available_engines() if e != "tensorrt"])
    rows: list[Measurement] = []
    for name in models:
        plan = [(e, p) for p in precisions for e in engines]
        if compare:
            plan += [(peer, "fp32") for peer in PEERS]
        chosen = []
        for engine, precision in plan:
            if precision == "int8" and engine not in INT8_ENGINES:
                continue
            if precision not in ("fp32", "int8"):
                log(f"skip {precision}: only fp32 and int8 are measured on CPU")
                continue
            if engine == "timm-eager" and name not in TIMM_EQUIVALENT:
                continue
            chosen.append((engine, precision))
        in_process = [(e, p) for e, p in chosen if e != "paddle-inference"]
        rows += measure_engines(
            name, in_process, batch_sizes, warmup=warmup, iters=iters,
            with_preprocess=with_preprocess, calib=calib, log=log,
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


def markdown_table(rows: Sequence[Measurement]) -> str:
    """PaddleClas's latency-table layout: one line per model/engine/precision, ms per batch.

    Columns: batch-size latencies (median ms); the fastest of our engines is in bold.
    """
    sizes = sorted({r.batch for r in rows})
    marks = fastest(rows)
    head = ["Model", "Engine", "Precision", *[f"bs={b} (ms)" for b in sizes], "Peak RSS (MiB)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups: dict[tuple[str, str, str], dict[int, Measurement]] = {}
    for r in rows:
        groups.setdefault((r.model, r.engine, r.precision), {})[r.batch] = r
    for (model, engine, precision), by_batch in groups.items():
        cells = []
        for b in sizes:
            r = by_batch.get(b)
            text = "" if r is None else f"{r.median_ms:.1f}"
            if r is not None and r.with_preprocess_ms is not None:
                text += f" ({r.with_preprocess_ms:.1f} e2e)"
            if r is not None and marks.get((model, precision, b)) == engine:
                text = f"**{text}**"
            cells.append(text)
        peaks = [r.peak_rss_mib for r in by_batch.values() if r.peak_rss_mib is not None]
        label = f"{engine} (peer)" if engine in PEERS else engine
        peak = f"{max(peaks):.0f}" if peaks else ""
        lines.append("| " + " | ".join([model, label, precision, *cells, peak]) + " |")
    return "\n".join(lines)


def ratios(rows: Sequence[Measurement]) -> list[str]:
    """Lines "peer / our fastest" per model, precision fp32 and batch size."""
    marks = fastest(rows)
    index = {(r.model, r.engine, r.precision, r.batch): r for r in rows}
    out = []
    for (model, precision, batch), engine in sorted(marks.items()):
        ours = index[(model, engine, precision, batch)]
        for peer in PEERS:
            other = index.get((model, peer, "fp32", batch))
            if other is not None and precision == "fp32":
                ratio = other.median_ms / ours.median_ms
                verdict = f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"
                out.append(
                    f"{model} bs={batch}: {engine} {ours.median_ms:.1f} ms vs {peer} "
                    f"{other.median_ms:.1f} ms = {verdict}"
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
    fig.suptitle("Res2Net CPU latency (random 224 input, median after warm-up)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def to_json(rows: Sequence[Measurement]) -> str:
    """The rows as a JSON list of objects."""
    return json.dumps([asdict(r) for r in rows], indent=2)
