"""Write the C++-vs-Python section of BENCHMARKS.md: the same OpenVINO model, both front ends.

Res2Net50_vd_26w_4s (random weights) is exported once as OpenVINO IR (FP32). Per round, in
turn: the C++ program (``res2net-cpp bench``: model latency at each batch size on a random
input, then end-to-end images/s of ``Predictor::predict`` over a folder of photos) and the
Python side (model latency of ``load_exported(..., engine="openvino")`` on the same file and
input; end-to-end images/s of ``Predictor(engine="openvino")``, which is `res2net predict
--engine openvino`, over the same folder). Rounds alternate so that a busy spell of the machine
hits both; each figure is the median over rounds (and the best), each round itself a median
after warm-up. Both compile with OpenVINO's LATENCY hint on every allowed core, FP32.

    .venv/bin/python benchmarks/cpp_vs_python.py                      # full run
    .venv/bin/python benchmarks/cpp_vs_python.py --short --dry-run    # check, print only
"""

from __future__ import annotations

import argparse
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

from res2net.bench.quiet import LoadWatch, add_noise_argument
from res2net.bench.report import cpu_name, write_section
from res2net.bench.timing import time_calls

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "build" / "cpp" / "res2net-cpp"
MODEL = "Res2Net50_vd_26w_4s"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_throughput import make_folder  # noqa: E402  (the same photo folder)


def export(folder: Path) -> Path:
    from res2net.builder import create_model
    from res2net.deploy.export import export_model
    from res2net.models.registry import get_entry

    model = create_model(MODEL, pretrained=False)
    return export_model(
        model, folder / MODEL, fmt="openvino", name=MODEL, preprocess=get_entry(MODEL).preprocess
    )


def cpp_round(model: Path, photos: Path, sizes: list[int], args) -> dict:
    cmd = [
        str(CPP), "bench", "--model", str(model), "--batch-sizes", ",".join(map(str, sizes)),
        "--warmup", str(args.warmup), "--iters", str(args.iters), "--images", str(photos),
        "--json",
    ]  # fmt: skip
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return {
        row["batch"]: {"latency_ms": row["median_ms"], "images_per_s": row["images_per_s"]}
        for row in out["rows"]
    }


_PREDICTORS: dict = {}


def python_round(model: Path, files: list[Path], sizes: list[int], args) -> dict:
    from res2net.deploy.export import load_exported
    from res2net.deploy.predictor import Predictor

    runtime = load_exported(model, engine="openvino")
    result = {}
    for batch in sizes:
        x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
        latency = statistics.median(time_calls(lambda x=x: runtime(x), args.warmup, args.iters))
        if batch not in _PREDICTORS:  # converting is slow: once per batch size, not per round
            _PREDICTORS[batch] = Predictor(
                MODEL, engine="openvino", batch_size=batch, num_workers=2
            )
        predictor = _PREDICTORS[batch]
        predictor.predict(files, progress=False)  # warm-up
        start = time.perf_counter()
        predictor.predict(files, progress=False)
        result[batch] = {
            "latency_ms": latency,
            "images_per_s": len(files) / (time.perf_counter() - start),
        }
    return result


def summarize(rounds: list[dict], batch: int, key: str, best) -> tuple[float, float]:
    values = [r[batch][key] for r in rounds]
    return statistics.median(values), best(values)


def section(cpp: list[dict], py: list[dict], sizes: list[int], args) -> str:
    cores = len(os.sched_getaffinity(0))
    lines = [
        "## C++ predictor vs Python (OpenVINO, CPU)",
        "",
        f"Measured {datetime.date.today()} on {cpu_name()}, {cores} cores, by "
        f"`python benchmarks/cpp_vs_python.py{' --short' if args.short else ''}`: {MODEL} "
        f"(random weights) exported as OpenVINO IR, FP32, {args.rounds} alternating rounds; "
        f"each round {args.warmup} warm-up calls then the median of {args.iters} "
        f"(latency), and one warm-up pass then one timed pass over {args.count} photos "
        "(end to end: decode, preprocess, model, top-5). Figures: median over rounds "
        "(best in brackets). Python end to end is `Predictor(engine='openvino')` with 2 "
        "decoding threads, as `res2net predict --engine openvino`.",
        "",
        "| Batch | Model latency C++ (ms) | Python (ms) | End to end C++ (img/s) "
        "| Python (img/s) | C++ / Python img/s |",
        "|---|---|---|---|---|---|",
    ]
    for b in sizes:
        cl, cl_best = summarize(cpp, b, "latency_ms", min)
        pl, pl_best = summarize(py, b, "latency_ms", min)
        ce, ce_best = summarize(cpp, b, "images_per_s", max)
        pe, pe_best = summarize(py, b, "images_per_s", max)
        lines.append(
            f"| {b} | {cl:.1f} ({cl_best:.1f}) | {pl:.1f} ({pl_best:.1f}) | {ce:.1f} "
            f"({ce_best:.1f}) | {pe:.1f} ({pe_best:.1f}) | {ce / pe:.2f} |"
        )
    if args.note:
        lines += ["", args.note]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--count", type=int, default=64, help="photos in the end-to-end folder")
    ap.add_argument("--short", action="store_true", help="3 rounds, 2+5 calls, 16 photos")
    ap.add_argument("--note", default="", help="a line to add under the table")
    ap.add_argument("--dry-run", action="store_true", help="print, write nothing")
    add_noise_argument(ap)
    args = ap.parse_args()
    if args.short:
        args.rounds, args.warmup, args.iters, args.count = 3, 2, 5, 16
    if not CPP.exists():
        sys.exit(f"{CPP} is missing: build it with bash scripts/build_cpp.sh")
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    cpp, py = [], []
    with tempfile.TemporaryDirectory() as tmp, LoadWatch() as load:
        model = export(Path(tmp))
        photos = Path(tmp) / "photos"
        photos.mkdir()
        files = make_folder(photos, args.count)
        for i in range(args.rounds):
            cpp.append(cpp_round(model, photos, sizes, args))
            py.append(python_round(model, files, sizes, args))
            print(f"round {i + 1}: C++ {cpp[-1]}\n         Python {py[-1]}", flush=True)
    text = section(cpp, py, sizes, args)
    if args.dry_run:
        print(text)
    else:
        path = write_section(ROOT / "BENCHMARKS.md", "cpp-vs-python", text, load=load,
                             allow_noisy=args.allow_noisy)  # fmt: skip
        print(f"updated {path}")


if __name__ == "__main__":
    main()
