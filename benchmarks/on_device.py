"""Write the ExecuTorch section of BENCHMARKS.md: ``.pte`` sizes and batch-1 latency.

Exports the model as FP32 and INT8 ``.pte`` programs (XNNPACK; INT8 by PT2E, calibrated on
the test photos) and records their size on disk, then times the ``executorch`` engine at
FP32 and INT8 beside our other CPU engines in one run (``res2net bench``: every engine built
and warmed up first, then timed in turns). Sizes and times do not depend on the weights'
values, so the registry's architecture runs with random weights (no download).

    .venv/bin/python benchmarks/on_device.py                       # ~10 min on 2 cores
    .venv/bin/python benchmarks/on_device.py --iters 5 --dry-run   # check it works, print only
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
from pathlib import Path

from res2net.bench.latency import run_benchmark
from res2net.bench.quiet import LoadWatch, add_noise_argument
from res2net.bench.report import cpu_name, markdown_table, write_section
from res2net.builder import create_model
from res2net.deploy.export import export_model
from res2net.deploy.int8 import cpu_has_vnni, load_calibration
from res2net.models.registry import get_entry

ROOT = Path(__file__).resolve().parents[1]
ENGINES = "fused,onnxruntime,openvino,executorch"


def pte_sizes(name: str, calib) -> dict[str, float]:
    """Size on disk (MiB) of the FP32 and the INT8 ``.pte`` of ``name``."""
    model = create_model(name).eval()
    pre = get_entry(name).preprocess
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision, data in (("fp32", None), ("int8", calib)):
            path = export_model(
                model, Path(tmp) / precision, fmt="executorch", name=name, preprocess=pre,
                int8_calibration=data,
            )  # fmt: skip
            sizes[precision] = path.stat().st_size / 2**20
    return sizes


def section(name: str, sizes: dict[str, float], rows, args) -> str:
    """The Markdown text between the markers."""
    cores = len(os.sched_getaffinity(0))
    lines = [
        "## On device: ExecuTorch `.pte` (CPU)",
        "",
        f"Measured {datetime.date.today()} on {cpu_name()}, {cores} cores "
        f"({'with' if cpu_has_vnni() else 'no'} VNNI), by `python benchmarks/on_device.py`. "
        "`executorch` = the `.pte` program (XNNPACK delegate) in ExecuTorch's Python runtime, "
        "the kernels a phone runs, built for x86; INT8 = PT2E with XNNPACK's quantizer for "
        "`executorch`, NNCF for `openvino`, ONNX Runtime's quantizer for `onnxruntime`, all "
        "calibrated on the 6 test photos. Random 224x224 input at batch 1, "
        f"{args.warmup} warm-up runs, median of {args.iters}; every engine built and warmed "
        "up first, then timed in turns; bold = fastest." + (f" {args.note}" if args.note else ""),
        "",
        f"| {name} `.pte` | size on disk (MiB) |",
        "|---|---|",
        *[f"| {precision.upper()} | {mib:.1f} |" for precision, mib in sizes.items()],
        "",
        markdown_table(rows),
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="Res2Net50_vd_26w_4s")
    ap.add_argument("--engines", default=ENGINES)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--note", default="", help="a sentence appended to the section's header")
    ap.add_argument("--dry-run", action="store_true", help="print, write nothing")
    add_noise_argument(ap)
    args = ap.parse_args()
    calib = load_calibration([ROOT / "tests" / "data" / "images"], get_entry(args.model).preprocess)
    with LoadWatch() as load:
        sizes = pte_sizes(args.model, calib)
        rows = run_benchmark(
            [args.model], args.engines.split(","), [1], ("fp32", "int8"),
            warmup=args.warmup, iters=args.iters, calib=calib,
        )  # fmt: skip
    text = section(args.model, sizes, rows, args)
    if args.dry_run:
        print(text)
        return
    path = write_section(ROOT / "BENCHMARKS.md", "executorch", text, load=load,
                         allow_noisy=args.allow_noisy)  # fmt: skip
    print(f"updated {path}")


if __name__ == "__main__":
    main()
