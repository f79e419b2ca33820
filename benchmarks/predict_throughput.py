"""Write the predict-throughput section of BENCHMARKS.md: end to end against the model alone.

The target (issue 24, item 3): images/s of ``Predictor.predict`` over JPEG photos at least
0.9x the images/s of ``predict_batch`` on the same images already preprocessed, with the
same engine, precision and batch size, timed in turns in one run.

Res2Net50_vd_26w_4s with random weights, six settings, each a ``Predictor``:

- from weights: FP32 (``engine="auto"``), and BF16 where this CPU runs it natively
  (OpenVINO's AVX512-BF16/AMX kernels; a row says why it was skipped elsewhere);
- from files exported into a temporary folder (``export_model``, as ``res2net export``
  writes them; INT8 calibrated on the photos below): OpenVINO IR FP32 and INT8, ONNX FP32
  and INT8, each run by its format's own engine.

The photos: ``--count`` JPEGs made from the six test photos (random crops, 320-1600 px on
the long side). Per setting and batch size, one untimed warm-up of each, then ``--rounds``
rounds; each round times, in turn (the order alternating from round to round, so that a
busy spell hits both alike):

- end to end: ``predict(files)`` over all photos (decode + preprocess in ``--workers``
  threads, overlapped with the model), images/s;
- model alone: ``predict_batch`` over the same photos already preprocessed, in batches of
  the same size, images/s;
- preprocessing alone: decode + preprocess of every photo in one thread, ms/image.

Reported: the median and best images/s of both, their ratio (median over median, best over
best) and whether the median ratio reaches 0.9x. Run it on a quiet machine (nothing else
running): the section is refused otherwise (see ``--allow-noisy``).

    .venv/bin/python benchmarks/predict_throughput.py                           # full run
    .venv/bin/python benchmarks/predict_throughput.py --count 8 --rounds 1 --dry-run
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from photos import random_crops

from res2net.bench.quiet import LoadWatch, add_noise_argument, own_cores
from res2net.bench.report import cpu_name, write_section
from res2net.deploy.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
MODEL = "Res2Net50_vd_26w_4s"
TARGET = 0.9  # end to end / model alone, issue 24 item 3
# Setting name -> (export format or None for weights, precision).
SETTINGS: dict[str, tuple[str | None, str]] = {
    "weights-fp32": (None, "fp32"),
    "weights-bf16": (None, "bf16"),
    "openvino-fp32": ("openvino", "fp32"),
    "openvino-int8": ("openvino", "int8"),
    "onnx-fp32": ("onnx", "fp32"),
    "onnx-int8": ("onnx", "int8"),
}
FORMAT_ENGINE = {"openvino": "openvino", "onnx": "onnxruntime"}


def log(message: str) -> None:
    """A progress line on stderr (stdout carries the section in a dry run)."""
    print(f"[predict_throughput {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr,
          flush=True)  # fmt: skip


def make_folder(folder: Path, count: int = 48, seed: int = 0) -> list[Path]:
    """``count`` varied JPEG photos: random crops of the test photos, 320-1600 px long side."""
    paths = []
    for i, crop in enumerate(random_crops(count, seed)):
        paths.append(folder / f"photo_{i:02d}.jpg")
        crop.save(paths[-1], quality=90)
    return paths


@dataclass
class Row:
    """One setting at one batch size: its timings, or why it was skipped."""

    setting: str
    precision: str
    batch: int
    engine: str = "-"
    ready_s: float = 0.0  # building the Predictor (converting, or loading the file)
    skipped: str = ""
    e2e: list[float] = field(default_factory=list)  # images/s per round
    model: list[float] = field(default_factory=list)  # images/s per round
    prep_ms: list[float] = field(default_factory=list)  # ms/image per round
    # This process's CPU seconds per wall second (cores kept busy), per round
    e2e_cores: list[float] = field(default_factory=list)
    model_cores: list[float] = field(default_factory=list)

    def ratio(self, pick: Callable[[list[float]], float]) -> float:
        """End to end over model alone, each summarized by ``pick`` (median or best)."""
        return pick(self.e2e) / pick(self.model)


def bf16_skip_reason() -> str:
    """Why BF16 from weights is not measured here, or "" when this CPU runs it natively."""
    from res2net.deploy.runtimes import engine_precisions

    if "bf16" in engine_precisions("openvino"):
        return ""
    return (
        "skipped: no native BF16 here (OpenVINO's CPU plugin lists no BF16 among its "
        "OPTIMIZATION_CAPABILITIES: needs AVX512-BF16 or AMX-BF16)"
    )


def engine_skip_reason(fmt: str | None) -> str:
    """Why an export's setting cannot run here (its engine is not installed), or ""."""
    from res2net.deploy.runtimes import available_engines

    if fmt is None or FORMAT_ENGINE[fmt] in available_engines():
        return ""
    return f"skipped: engine {FORMAT_ENGINE[fmt]!r} is not installed"


def export_files(
    settings: list[str], folder: Path, calibration_files: list[Path], calib: int
) -> dict[str, Path]:
    """Each export setting's file, written by ``export_model`` as ``res2net export`` does."""
    from res2net.builder import create_model
    from res2net.card import load_card
    from res2net.deploy.export import export_model
    from res2net.deploy.int8 import load_calibration

    wanted = [s for s in settings if SETTINGS[s][0] and not engine_skip_reason(SETTINGS[s][0])]
    if not wanted:
        return {}
    model, card = create_model(MODEL, pretrained=False).eval(), load_card(MODEL)
    calibration = None
    if any(SETTINGS[s][1] == "int8" for s in wanted):
        calibration = load_calibration(calibration_files, card.preprocess, limit=calib)
    files = {}
    for setting in wanted:
        fmt, precision = SETTINGS[setting]
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout is the section
            files[setting] = export_model(
                model, folder / f"{MODEL}_{setting}", fmt=fmt, name=MODEL,
                preprocess=card.preprocess,
                int8_calibration=calibration if precision == "int8" else None,
            )  # fmt: skip
        log(f"exported {setting} in {time.perf_counter() - start:.1f} s")
    return files


def build_predictor(setting: str, exported: dict[str, Path], batch: int, workers: int):
    """The setting's Predictor: from weights (random), or from its exported file."""
    fmt, precision = SETTINGS[setting]
    if fmt is None:
        return Predictor(MODEL, weights=None, engine="auto", precision=precision,
                         batch_size=batch, num_workers=workers)  # fmt: skip
    return Predictor(exported[setting], batch_size=batch, num_workers=workers)


def time_round(row: Row, predictor: Predictor, files: list[Path], batches, flip: bool) -> None:
    """One round: end to end, model alone (in the order ``flip`` says) and preprocessing."""

    def end_to_end() -> None:
        start, cpu = time.perf_counter(), time.process_time()
        predictor.predict(files, progress=False)
        wall = time.perf_counter() - start
        row.e2e.append(len(files) / wall)
        row.e2e_cores.append((time.process_time() - cpu) / wall)

    def model_alone() -> None:
        start, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            predictor.predict_batch(batch)
        wall = time.perf_counter() - start
        row.model.append(len(files) / wall)
        row.model_cores.append((time.process_time() - cpu) / wall)

    for turn in (model_alone, end_to_end) if flip else (end_to_end, model_alone):
        turn()
    start = time.perf_counter()
    for f in files:
        predictor.preprocess(f)
    row.prep_ms.append(1000 * (time.perf_counter() - start) / len(files))


def measure(row: Row, exported: dict[str, Path], files: list[Path], args) -> None:
    """Build the setting's Predictor and time it over ``args.rounds`` rounds into ``row``."""
    start = time.perf_counter()
    predictor = build_predictor(row.setting, exported, row.batch, args.workers)
    row.ready_s, row.engine = time.perf_counter() - start, predictor.runtime.engine
    tensors = np.stack([predictor.preprocess(f).numpy() for f in files])
    batches = [tensors[i : i + row.batch] for i in range(0, len(files), row.batch)]
    predictor.predict(files, progress=False)  # warm-up of both paths, untimed
    for batch in batches:
        predictor.predict_batch(batch)
    for r in range(args.rounds):
        time_round(row, predictor, files, batches, flip=r % 2 == 1)
        log(f"{row.setting} ({row.engine}) batch {row.batch} round {r + 1}/{args.rounds}: "
            f"end to end {row.e2e[-1]:.1f} img/s, model {row.model[-1]:.1f} img/s")  # fmt: skip


def run_all(args, folder: Path) -> list[Row]:
    """Make the photos and the exports, then measure every setting at every batch size."""
    files = make_folder(folder, args.count)
    log(f"made {len(files)} JPEG photos")
    exported = export_files(args.settings, folder, files, args.calib)
    rows = []
    for setting in args.settings:
        fmt, precision = SETTINGS[setting]
        skip = engine_skip_reason(fmt) or (bf16_skip_reason() if setting == "weights-bf16" else "")
        if skip:
            log(f"{setting}: {skip}")
        for batch in args.batch_sizes:
            row = Row(setting, precision, batch, skipped=skip)
            if not skip:
                measure(row, exported, files, args)
            rows.append(row)
    return rows


def _cells(row: Row) -> str:
    if row.skipped:
        return f"{row.skipped} | | | | | |"
    best, med = max, statistics.median
    meets = "yes" if row.ratio(med) >= TARGET else "**no**"
    return (
        f"{med(row.e2e):.1f} ({best(row.e2e):.1f}) | {med(row.model):.1f} "
        f"({best(row.model):.1f}) | {row.ratio(med):.3f} | {row.ratio(best):.3f} | {meets} "
        f"| {med(row.prep_ms):.1f} | {row.ready_s:.1f}"
    )


def section(rows: list[Row], args) -> str:
    """The Markdown text between the markers."""
    cores = len(os.sched_getaffinity(0))
    lines = [
        "## Predict throughput (CPU): end to end against the model alone",
        "",
        f"Measured {datetime.date.today()} on {cpu_name()}, {cores} cores, by "
        f"`python benchmarks/predict_throughput.py`: {MODEL} (random weights) over "
        f"{args.count} JPEG photos (crops of the test photos, 320-1600 px), {args.workers} "
        f"decoding threads. Per setting and batch size: a warm-up, then {args.rounds} timed "
        "round(s); each round times in turn (order alternating) end to end = "
        "`Predictor.predict(files)` and model alone = `predict_batch` over the same photos "
        "already preprocessed, in batches of the same size, same engine and precision. "
        "Images/s as median (best) over rounds; the ratio is end to end / model alone; "
        f"target >= {TARGET}x on the median ratio. Preprocess = decode + preprocess alone, "
        "one thread; ready = building the Predictor (converting the weights, or loading the "
        "exported file). Exports are written by `export_model` as `res2net export` does; "
        f"INT8 calibrated on {min(args.calib, args.count)} of the photos.",
        "",
        "| Setting | Engine | Precision | Batch | End to end (img/s) | Model alone (img/s) "
        "| Ratio, median | Ratio, best | >= 0.9x | Preprocess (ms/img) | Ready (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.setting} | {row.engine} | {row.precision} | {row.batch} | {_cells(row)} |"
        )
    missed = [line for row in rows if (line := reason(row))]
    if missed:
        lines += [
            "",
            "Where the CPU went, for each missed ratio (CPU = this process's user + system "
            "seconds, all threads; medians over rounds): the model's CPU per image alone plus "
            "one thread's decode + preprocess per image, spread over the cores, bounds end to "
            "end; the rest is what end to end spent beyond that sum.",
            "",
            *[f"- {line}" for line in missed],
        ]
    return "\n".join(lines)


def reason(row: Row) -> str:
    """For a missed row, the CPU bound and the measured CPU per image; else ''."""
    if row.skipped or row.ratio(statistics.median) >= TARGET:
        return ""
    med = statistics.median
    cores = len(os.sched_getaffinity(0))
    model, e2e = med(row.model), med(row.e2e)
    model_ms = 1000 * med(row.model_cores) / model  # CPU-ms per image, model alone
    e2e_ms = 1000 * med(row.e2e_cores) / e2e  # CPU-ms per image, end to end
    prep = med(row.prep_ms)
    bound = min(model, 1000 * cores / (model_ms + prep))
    return (
        f"{row.setting} batch {row.batch}: {row.ratio(med):.3f}x. The model alone kept "
        f"{med(row.model_cores):.2f} of {cores} cores busy, {model_ms:.1f} CPU-ms per image; "
        f"decode + preprocess {prep:.1f} ms per image, so the cores allow {bound:.1f} img/s "
        f"({bound / model:.2f}x). End to end kept {med(row.e2e_cores):.2f} cores busy, "
        f"{e2e_ms:.1f} CPU-ms per image ({e2e_ms - model_ms - prep:+.1f} beyond the model "
        f"and the preprocessing measured alone), measured {e2e:.1f} img/s."
    )


def parse_args() -> argparse.Namespace:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default=",".join(SETTINGS),
                    help=f"comma-separated, of: {', '.join(SETTINGS)}")  # fmt: skip
    ap.add_argument("--batch-sizes", default="8", help="comma-separated, e.g. 1,8,16")
    ap.add_argument("--workers", type=int, default=2, help="decoding threads of predict")
    ap.add_argument("--count", type=int, default=48, help="JPEG photos per round")
    ap.add_argument("--rounds", type=int, default=8, help="timed rounds per setting and batch")
    ap.add_argument("--calib", type=int, default=32, help="INT8 calibration photos (at most)")
    ap.add_argument("--dry-run", action="store_true", help="print the section, write nothing")
    add_noise_argument(ap)
    args = ap.parse_args()
    args.settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in args.settings if s not in SETTINGS]
    if unknown:
        ap.error(f"--settings: unknown {', '.join(unknown)}; choose from {', '.join(SETTINGS)}")
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        ap.error(f"--batch-sizes {args.batch_sizes!r}: give whole numbers, e.g. 1,8")
    if min(args.batch_sizes) < 1 or min(args.count, args.rounds, args.calib) < 1:
        ap.error("--batch-sizes, --count, --rounds and --calib must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    # predict's decoding threads are runnable beside the engine's, one per core: both count
    # as this run's own load.
    own = own_cores() + args.workers
    with tempfile.TemporaryDirectory() as tmp, LoadWatch(own_threads=own) as load:
        rows = run_all(args, Path(tmp))
    text = section(rows, args)
    if args.dry_run:
        print(text)
    else:
        path = write_section(ROOT / "BENCHMARKS.md", "predict-throughput", text, load=load,
                             allow_noisy=args.allow_noisy)  # fmt: skip
        print(f"updated {path}")


if __name__ == "__main__":
    main()
