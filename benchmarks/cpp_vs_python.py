"""Write the C++-vs-Python section of BENCHMARKS.md: the same exported file, both front ends.

The targets (issue 24, item 5): on the same OpenVINO IR, the C++ program's model latency
within 5% of Python's, and its end-to-end images/s at least 1.0x Python's, FP32 and INT8.

Res2Net50_vd_26w_4s (random weights) is exported twice into a temporary folder by
``export_model``, as ``res2net export [--int8]`` writes it: OpenVINO IR FP32, and INT8
calibrated on ``tests/data/images``. Per round, for each file and in turn (the order
alternating from round to round, so that a busy spell hits both sides alike):

- C++: ``res2net-cpp bench`` (model latency at each batch size on a random input, then
  images/s of ``Predictor::predict`` over the photo folder, after one untimed pass);
- Python: the same on ``Predictor(file)`` (``res2net predict --model FILE``): latency of its
  runtime on the same kind of input, then images/s of ``predict`` over the same photos.

Both sides compile with the same settings, set explicitly: OpenVINO's LATENCY hint,
``INFERENCE_NUM_THREADS`` = ``--threads`` (default: every allowed core) and
``INFERENCE_PRECISION_HINT`` f32 (an INT8 file runs its quantized operations in INT8, the
rest in f32); the precision each compiled model really runs is read back from both and the
run stops if they differ (OpenVINO computes in bf16 by default on CPUs with AMX or
AVX512-BF16). Both load the OpenVINO runtime and its libtbb from the same ``openvino`` wheel
(scripts/build_cpp.sh links the C++ program against it). Each figure is the median over
rounds (best in brackets), each round's latency itself a median after warm-up.

    .venv/bin/python benchmarks/cpp_vs_python.py                      # full run (~5 min, 2 cores)
    .venv/bin/python benchmarks/cpp_vs_python.py --short --dry-run    # check, print only
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from res2net.bench.quiet import LoadWatch, add_noise_argument, own_cores
from res2net.bench.report import cpu_name, write_section
from res2net.bench.timing import time_calls

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "build" / "cpp" / "res2net-cpp"
MODEL = "Res2Net50_vd_26w_4s"
CALIBRATION = ROOT / "tests" / "data" / "images"
LATENCY_TOLERANCE = 0.05  # C++ model latency within 5% of Python's (issue 24 item 5)
E2E_TARGET = 1.0  # C++ end-to-end images/s at least Python's
sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_throughput import make_folder  # noqa: E402  (the same photo folder)


def log(message: str) -> None:
    """A progress line on stderr (stdout carries the section in a dry run)."""
    print(f"[cpp_vs_python {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def export(folder: Path, precisions: list[str]) -> dict[str, Path]:
    """Each precision's IR, written by ``export_model`` as ``res2net export [--int8]`` does."""
    from res2net.builder import create_model
    from res2net.card import load_card
    from res2net.deploy.export import export_model
    from res2net.deploy.int8 import load_calibration

    model, card = create_model(MODEL, pretrained=False).eval(), load_card(MODEL)
    files = {}
    for precision in precisions:
        start = time.perf_counter()
        calib = load_calibration([CALIBRATION], card.preprocess) if precision == "int8" else None
        with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout is the section
            files[precision] = export_model(
                model, folder / f"{MODEL}_{precision}", fmt="openvino", name=MODEL,
                preprocess=card.preprocess, int8_calibration=calib,
            )  # fmt: skip
        log(f"exported {precision} in {time.perf_counter() - start:.1f} s")
    return files


def cpp_round(model: Path, photos: Path, args) -> dict:
    """``res2net-cpp bench`` on ``model``: {batch: {latency_ms, images_per_s, runs}}."""
    cmd = [
        str(CPP), "bench", "--model", str(model), "--batch-sizes",
        ",".join(map(str, args.batch_sizes)), "--warmup", str(args.warmup), "--iters",
        str(args.iters), "--precision", "fp32", "--threads", str(args.threads), "--images",
        str(photos), "--json",
    ]  # fmt: skip
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return {
        row["batch"]: {
            "latency_ms": row["median_ms"],
            "images_per_s": row["images_per_s"],
            "runs": row["inference_precision"],
        }  # fmt: skip
        for row in out["rows"]
    }


_PREDICTORS: dict = {}


def _predictor(model: Path, batch: int):
    """One Python Predictor per file and batch size, built once (compiling is not timed)."""
    from res2net.deploy.predictor import Predictor

    if (model, batch) not in _PREDICTORS:
        _PREDICTORS[model, batch] = Predictor(model, batch_size=batch, num_workers=2)
    return _PREDICTORS[model, batch]


def python_round(model: Path, files: list[Path], args) -> dict:
    """The same measurements in Python on ``Predictor(model)``."""
    result = {}
    for batch in args.batch_sizes:
        predictor = _predictor(model, batch)
        x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
        times = time_calls(lambda x=x, run=predictor.runtime: run(x), args.warmup, args.iters)
        predictor.predict(files, progress=False)  # warm-up, as the C++ side
        start = time.perf_counter()
        predictor.predict(files, progress=False)
        result[batch] = {
            "latency_ms": statistics.median(times),
            "images_per_s": len(files) / (time.perf_counter() - start),
            "runs": "/".join(sorted(predictor.runtime.inference_precisions())),
        }
    return result


def check_same_precision(cpp: dict, py: dict, precision: str) -> None:
    """Stop when the two compiled models run different precisions (e.g. bf16 vs f32)."""
    for batch in cpp:
        if cpp[batch]["runs"] != py[batch]["runs"]:
            sys.exit(
                f"{precision} batch {batch}: C++ runs {cpp[batch]['runs']}, Python "
                f"{py[batch]['runs']}: not the same model; check INFERENCE_PRECISION_HINT"
            )


def run_rounds(models: dict[str, Path], photos: Path, files: list[Path], args) -> dict:
    """{precision: {"cpp": [round...], "py": [round...]}}, the two sides in turns."""
    results = {p: {"cpp": [], "py": []} for p in models}
    for r in range(args.rounds):
        for precision, model in models.items():
            turns = [("cpp", lambda m=model: cpp_round(m, photos, args)),
                     ("py", lambda m=model: python_round(m, files, args))]  # fmt: skip
            for side, measure in turns[:: -1 if r % 2 else 1]:
                results[precision][side].append(measure())
            cpp, py = results[precision]["cpp"][-1], results[precision]["py"][-1]
            check_same_precision(cpp, py, precision)
            log_round(r, precision, cpp, py)
    return results


def log_round(r: int, precision: str, cpp: dict, py: dict) -> None:
    for b in cpp:
        log(
            f"round {r + 1} {precision} batch {b}: latency C++ {cpp[b]['latency_ms']:.1f} / "
            f"Python {py[b]['latency_ms']:.1f} ms; end to end C++ {cpp[b]['images_per_s']:.1f}"
            f" / Python {py[b]['images_per_s']:.1f} img/s"
        )


def summarize(rounds: list[dict], batch: int, key: str, best) -> tuple[float, float]:
    values = [r[batch][key] for r in rounds]
    return statistics.median(values), best(values)


def table_row(precision: str, batch: int, sides: dict) -> tuple[str, list[str]]:
    """One table line and the verdicts (misses) it implies."""
    cl, cl_best = summarize(sides["cpp"], batch, "latency_ms", min)
    pl, pl_best = summarize(sides["py"], batch, "latency_ms", min)
    ce, ce_best = summarize(sides["cpp"], batch, "images_per_s", max)
    pe, pe_best = summarize(sides["py"], batch, "images_per_s", max)
    runs = sides["cpp"][0][batch]["runs"]
    lat, e2e = cl / pl, ce / pe
    misses = []
    if lat > 1 + LATENCY_TOLERANCE:
        misses.append(f"{precision} batch {batch}: C++ model latency {lat:.2f}x Python's "
                      f"(target within {LATENCY_TOLERANCE:.0%})")  # fmt: skip
    if e2e < E2E_TARGET:
        misses.append(f"{precision} batch {batch}: C++ end to end {e2e:.2f}x Python's "
                      f"(target {E2E_TARGET:.1f}x)")  # fmt: skip
    line = (
        f"| {precision.upper()} | {batch} | {runs} | {cl:.1f} ({cl_best:.1f}) | {pl:.1f} "
        f"({pl_best:.1f}) | {lat:.2f} | {ce:.1f} ({ce_best:.1f}) | {pe:.1f} ({pe_best:.1f}) "
        f"| {e2e:.2f} |"
    )
    return line, misses


def section(results: dict, args) -> str:
    lines = [
        "## C++ predictor vs Python (OpenVINO, CPU)",
        "",
        f"Measured {datetime.date.today()} on {cpu_name()}, {own_cores()} cores, by "
        f"`python benchmarks/cpp_vs_python.py{' --short' if args.short else ''}`: {MODEL} "
        "(random weights) exported as OpenVINO IR by `export_model` (as `res2net export` "
        f"writes it), FP32 and INT8 (calibrated on the {len(list(CALIBRATION.iterdir()))} "
        f"files of tests/data/images); {args.rounds} rounds, the two sides in turns. Both "
        f"compile with the LATENCY hint, {args.threads} inference threads and "
        "INFERENCE_PRECISION_HINT f32 (the 'Runs' column: the precision read back from "
        f"both compiled models). Latency: {args.warmup} warm-up calls then the median of "
        f"{args.iters} on a random batch. End to end: one warm-up pass, then one timed pass "
        f"over {args.count} JPEG photos (320-1600 px; decode, preprocess, model, top-5); "
        "C++ is `res2net-cpp bench`, Python `Predictor(file)` (`res2net predict --model "
        "FILE`, 2 decoding threads). Figures: median over rounds (best in brackets); the "
        f"targets: C++ latency within {LATENCY_TOLERANCE:.0%} of Python's (ratio <= "
        f"{1 + LATENCY_TOLERANCE:.2f}) and C++ end to end >= {E2E_TARGET:.1f}x Python's.",
        "",
        "| Precision | Batch | Runs | Model latency C++ (ms) | Python (ms) | C++ / Python "
        "latency | End to end C++ (img/s) | Python (img/s) | C++ / Python img/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    misses = []
    for precision, sides in results.items():
        for b in args.batch_sizes:
            line, missed = table_row(precision, b, sides)
            lines.append(line)
            misses += missed
    lines += ["", verdict(misses)]
    if args.note:
        lines += ["", args.note]
    return "\n".join(lines)


def verdict(misses: list[str]) -> str:
    if not misses:
        return "Every target is met (medians over rounds)."
    return (
        "Targets missed (medians over rounds): " + "; ".join(misses) + ". Both sides ran the "
        "same file with the same threads, hint and precision (checked above), so a miss is "
        "the front end's own cost or the run's noise: compare the best-round columns."
    )


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--precisions", default="fp32,int8", help="fp32 and/or int8")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=12)
    ap.add_argument("--count", type=int, default=32, help="photos in the end-to-end folder")
    ap.add_argument("--threads", type=int, default=own_cores(), help="inference threads, both")
    ap.add_argument("--short", action="store_true", help="2 rounds, 1+3 calls, 8 photos")
    ap.add_argument("--note", default="", help="a line to add under the table")
    ap.add_argument("--dry-run", action="store_true", help="print, write nothing")
    add_noise_argument(ap)
    args = ap.parse_args()
    if args.short:
        args.rounds, args.warmup, args.iters, args.count = 2, 1, 3, 8
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.precisions = args.precisions.split(",")
    if not set(args.precisions) <= {"fp32", "int8"}:
        ap.error("--precisions: fp32 and/or int8")
    return args


def main() -> None:
    args = parse_args()
    if not CPP.exists():
        sys.exit(f"{CPP} is missing: build it with bash scripts/build_cpp.sh")
    # Python's runtimes read the thread count from here (res2net.deploy.runtimes.cpu_threads).
    os.environ["RES2NET_THREADS"] = str(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, LoadWatch() as load:
        models = export(Path(tmp), args.precisions)
        photos = Path(tmp) / "photos"
        photos.mkdir()
        files = make_folder(photos, args.count)
        results = run_rounds(models, photos, files, args)
    log(f"done in {time.perf_counter() - start:.0f} s")
    text = section(results, args)
    if args.dry_run:
        print(text)
    else:
        path = write_section(ROOT / "BENCHMARKS.md", "cpp-vs-python", text, load=load,
                             allow_noisy=args.allow_noisy)  # fmt: skip
        print(f"updated {path}")


if __name__ == "__main__":
    main()
