"""The latency report: its rows (:class:`Measurement`), the Markdown table, the peer ratios,
the machine-limit lines, the plots, and BENCHMARKS.md, where each benchmark script owns one
marked section and rewrites only that."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from res2net.bench.quiet import LoadWatch, section_note

HEADER = """# Benchmarks

Every section below is written by a script in `benchmarks/` (named in the section), with the
peers measured in the same run. The list of machines is written by the same scripts: each
records the processor, its vector instructions and the date of its own run."""
UNRECORDED = "not recorded (written before machines were recorded; re-run its script)"
_MACHINE_LINE = re.compile(r"^- `([^`]+)`: (.*)$", re.M)


def write_section(
    path: str | Path, name: str, text: str, *, machine: str | None = None,
    load: LoadWatch | None = None, allow_noisy: bool = False,
) -> Path:  # fmt: skip
    """Replace the ``<!-- NAME:begin -->`` ... ``<!-- NAME:end -->`` block, or append it,
    and record ``machine`` (default: this one, :func:`machine_line`) for it in the header.

    Other sections are left as they are, so scripts can be rerun one at a time.

    :param load: the :class:`~res2net.bench.quiet.LoadWatch` of the run: its load figures
        end the section, and a noisy run raises
        :class:`~res2net.bench.quiet.NoisyMachineError` (nothing written) unless
        ``allow_noisy``, which marks the section NOISY.
    """
    if load is not None:
        text = f"{text.rstrip()}\n\n{section_note(load, allow_noisy)}"
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    new = _replace_block(old, name, text)
    recorded = dict(_MACHINE_LINE.findall(_block(new, "machines") or ""))
    recorded[name] = machine or machine_line()
    machines = {  # only sections still in the file: a removed section's machine goes too
        section: recorded.get(section, UNRECORDED)
        for section in re.findall(r"<!-- ([\w-]+):begin -->", new)
        if section not in ("header", "machines")
    }
    listing = "\n".join(f"- `{key}`: {value}" for key, value in sorted(machines.items()))
    new = _replace_block(new, "machines", "Machines, per section:\n\n" + listing, first=True)
    new = _replace_block(new, "header", HEADER, first=True)
    path.write_text(new)
    return path


def _block(text: str, name: str) -> str | None:
    found = re.search(f"<!-- {name}:begin -->\n(.*?)\n<!-- {name}:end -->", text, re.S)
    return found.group(1) if found else None


def _replace_block(text: str, name: str, body: str, *, first: bool = False) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    if first:  # the header and machine list go before every section
        return f"{block}\n\n{text.lstrip()}"
    return f"{text.rstrip()}\n\n{block}\n"


def cpu_name() -> str:
    """The processor's model name, for the machine line of a benchmark section."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_isa(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The widest vector / matrix instructions this CPU has, e.g. ``AVX2`` or
    ``AVX-512 + VNNI + AMX`` (the ones that decide FP32 / INT8 / BF16 kernel speed)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return platform.machine() or "unknown ISA"
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags = set(line.split(":", 1)[1].split())
            break
    if "avx512f" in flags:
        parts = ["AVX-512"]
    elif "avx2" in flags:
        parts = ["AVX2"]
    elif "asimd" in flags:
        parts = ["NEON"]
    else:
        parts = [platform.machine() or "unknown ISA"]
    if flags & {"avx512_vnni", "avx_vnni"}:
        parts.append("VNNI")
    if flags & {"amx_tile", "amx_int8", "amx_bf16"}:
        parts.append("AMX")
    return " + ".join(parts)


def machine_line(device: str = "cpu") -> str:
    """What a figure was measured on, for its title: processor (and ISA) and today's date."""
    import datetime

    today = datetime.date.today().isoformat()
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(device)}, {today}"
    return f"{cpu_name()} ({cpu_isa()}), {today}"


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
    # The side of the square random input timed: the model's own crop size.
    input_side: int = 224


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
    from res2net.bench.limits import cpu_isa as cpu_extensions
    from res2net.deploy.engines import AUTO_ORDER
    from res2net.deploy.runtimes import auto_engine, cpu_threads, openvino_default_precision

    kind = "cuda" if device.startswith("cuda") else "cpu"
    picks = [f"{auto_engine(device, p)} for {p}" for p in precisions if (kind, p) in AUTO_ORDER]
    lines = [f"CPU: {cpu_name()} ({cpu_extensions()}), {cpu_threads()} threads"]
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


def _engine_label(engine: str, runs_as: str | None, peer: bool) -> str:
    label = f"{engine} (peer)" if peer else engine
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
        first = next(iter(by_batch.values()))
        label = _engine_label(engine, first.runs_as, first.peer)
        peak = f"{max(peaks):.0f}" if peaks else ""
        extra = [_vs_fp32(list(by_batch.values()))] if checked else []
        lines.append("| " + " | ".join([model, label, precision, *cells, peak, *extra]) + " |")
    return "\n".join(lines)


def ratios(rows: Sequence[Measurement]) -> list[str]:
    """Lines "peer / our fastest" per model, precision and batch size (peers measured at
    that precision: FP32 on the CPU, every precision on a GPU)."""
    marks = fastest(rows)
    index = {(r.model, r.engine, r.precision, r.batch): r for r in rows}
    peers = list(dict.fromkeys(r.engine for r in rows if r.peer))
    out = []
    for (model, precision, batch), engine in sorted(marks.items()):
        ours = index[(model, engine, precision, batch)]
        for peer in peers:
            other = index.get((model, peer, precision, batch))
            if other is not None and other.peer:
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
    and the first model's per-image latency against batch size beside it (``*_batch.png``),
    with one colour per engine and one marker per precision across both.

    Top-1 is drawn only where a row carries one (rows computing PaddleClas's function in FP32); the
    others sit on a latency-only strip.

    :param where: the machine and date for the titles (default: this machine, today).
    """
    from res2net.plotting import LatencyPoint, SeriesStyle, batch_scaling, latency_accuracy

    path = Path(path)
    where = where or machine_line(rows[0].device if rows else "cpu")
    style = SeriesStyle.of([r.engine for r in rows], [r.precision for r in rows])
    points = [
        LatencyPoint(r.model, r.engine, r.precision, r.median_ms, r.top1, r.peer, r.batch)
        for r in rows
        if r.batch == batch
    ]
    first = latency_accuracy(
        points, path, title=f"Res2Net latency at batch {batch} vs top-1\n{where}",
        xlabel=f"median latency, batch {batch}, {input_words(rows)} (ms, log scale)",
        ylabel="top-1 (%) as PaddleClas publishes it", style=style,
    )  # fmt: skip
    model = rows[0].model if rows else ""
    mine = [r for r in rows if r.model == model]
    scaling = [
        LatencyPoint(r.model, r.engine, r.precision, r.per_image_ms, None, r.peer, r.batch)
        for r in mine
    ]
    second = batch_scaling(
        scaling, path.with_name(f"{path.stem}_batch{path.suffix}"), style=style,
        title=f"{model}: latency per image vs batch size, {input_words(mine)}"
        f"\n{where}",
    )  # fmt: skip
    return [first, second]


def input_words(rows: Sequence[Measurement]) -> str:
    """What was timed, for a chart's label: "random 32x32 input" (each model at its own
    input size; several sizes are listed)."""
    sides = sorted({r.input_side for r in rows}) or [224]
    return "random " + "/".join(f"{s}x{s}" for s in sides) + " input"


def to_json(rows: Sequence[Measurement]) -> str:
    """The rows as a JSON list of objects."""
    return json.dumps([asdict(r) for r in rows], indent=2)
