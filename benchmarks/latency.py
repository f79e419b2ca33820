"""Write the deployment section of BENCHMARKS.md and docs/latency.png.

Runs ``res2net bench --compare`` over the given models (ours: every available engine, FP32,
BF16 and INT8; peers: timm eager, plain OpenVINO at its default precision and at the other
one, Paddle Inference + oneDNN) and replaces the
text between the ``<!-- latency:begin -->`` / ``<!-- latency:end -->`` markers. Run it on a
quiet machine (nothing else running): other processes make every figure worse.

    .venv/bin/python benchmarks/latency.py                      # full run, ~15-25 min
    .venv/bin/python benchmarks/latency.py --iters 5 --dry-run  # check it works, print only
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from res2net.bench.latency import (
    limit_lines,
    machine_lines,
    markdown_table,
    plot,
    ratios,
    run_benchmark,
)
from res2net.bench.limits import cpu_isa, measure_limits
from res2net.bench.report import cpu_name, write_section
from res2net.deploy.int8 import load_calibration

ROOT = Path(__file__).resolve().parents[1]
# BF16 rows appear where an engine runs it (OpenVINO only with native BF16).
PRECISIONS = ("fp32", "bf16", "int8")


def section(rows, models, args, limits) -> str:
    """The Markdown text between the markers."""
    import os

    cores = len(os.sched_getaffinity(0))
    lines = [
        "## Deployment latency (CPU)",
        "",
        f"Measured {datetime.date.today()} on {cpu_name()}, {cores} cores, by "
        f"`python benchmarks/latency.py` (`res2net bench --compare`): random 224x224 input, "
        f"{args.warmup} warm-up runs, median of {args.iters}; bold = fastest of our engines; "
        "`e2e` = with decoding + preprocessing of real photos; INT8 = post-training "
        "quantization calibrated on the 6 test photos (NNCF for `openvino`, ONNX Runtime's "
        "quantizer for `onnxruntime`). Every engine of a model, ours and the in-process peers, "
        "is built and warmed up first, then timed in turns (a few calls each, round-robin), so "
        "a slow spell of this shared VM hits all of them alike; Paddle Inference runs in "
        "PaddleClas's own interpreter right after. "
        f"CPU extensions: {cpu_isa()}. Peak RSS = the process's "
        "resident memory before the model's first engine plus that engine's own rise while "
        "built and warmed up (a model measured later in the run also carries heap that the "
        "earlier ones left behind).",
        "",
        *machine_lines("cpu", PRECISIONS),
        "",
        markdown_table(rows),
        "",
        *[f"- {line}" for line in ratios(rows)],
        "",
        "How close to the machine (`res2net bench --limits`): the floor is counted FLOPs "
        "divided by the best rate of a 3072x3072 matrix product measured at the start of "
        "this run with the fastest kernel of each precision here: FP32 (NumPy, PyTorch, "
        "OpenVINO `MatMul` f32), BF16 (PyTorch, OpenVINO `MatMul` bf16; where native) and "
        "INT8 (ONNX Runtime `MatMulInteger`, OpenVINO's quantized `MatMul`).",
        "",
        *[f"- {line}" for line in limit_lines(rows, limits)],
        "",
        "![latency vs top-1](docs/latency.png)",
        "",
        "![latency per image vs batch size](docs/latency_batch.png)",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="Res2Net50_26w_4s,Res2Net50_vd_26w_4s,Res2Net50_14w_8s")
    ap.add_argument("--batch-sizes", default="1,4,8")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--dry-run", action="store_true", help="print, write nothing")
    args = ap.parse_args()
    models = args.models.split(",")
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    limits = measure_limits()
    calib = load_calibration([ROOT / "tests" / "data" / "images"])
    rows = run_benchmark(
        models, None, sizes, PRECISIONS, compare=True, with_preprocess=True,
        warmup=args.warmup, iters=args.iters, calib=calib, limits=limits,
    )  # fmt: skip
    text = section(rows, models, args, limits)
    if args.dry_run:
        print(text)
        return
    plot(rows, ROOT / "docs" / "latency.png")
    bench = write_section(ROOT / "BENCHMARKS.md", "latency", text)
    print(f"updated {bench} and docs/latency.png")


if __name__ == "__main__":
    main()
