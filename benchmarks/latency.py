"""Our engines beside the peers (timm eager, plain OpenVINO, Paddle Inference), timed in turns.

Takes every option of ``res2net bench`` (same model selection, engines, precisions...) and
adds the peers of ``benchmarks/peers.py`` to the same round-robin turns; Paddle Inference
runs in PaddleClas's interpreter (``.venv-ref``) and takes its turns over a pipe. Prints the
table; ``--write`` instead measures the deployment section of BENCHMARKS.md (three models,
FP32/BF16/INT8, decoding included, the machine's limits, INT8 calibrated on the test photos)
and replaces the text between ``<!-- latency:begin -->`` / ``<!-- latency:end -->``, plus
docs/latency*.png. Run that on a quiet machine: other processes make every figure worse.

    .venv/bin/python benchmarks/latency.py --model Res2Net50_vd_26w_4s --precision fp32,int8
    .venv/bin/python benchmarks/latency.py --write                      # ~15-25 min
    .venv/bin/python benchmarks/latency.py --write --iters 5 --dry-run  # check it works
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from peers import PEERS  # noqa: E402

from res2net.bench.limits import cpu_isa  # noqa: E402
from res2net.bench.quiet import LoadWatch, add_noise_argument  # noqa: E402
from res2net.bench.report import (  # noqa: E402
    cpu_name,
    limit_lines,
    machine_lines,
    markdown_table,
    plot,
    ratios,
    write_section,
)
from res2net.cli.bench import DESCRIPTION, add_arguments, measure, report  # noqa: E402
from res2net.cli.helpfmt import HelpFormatter  # noqa: E402

PHOTOS = ROOT / "tests" / "data" / "images"
# What --write measures (BF16 rows appear where an engine runs it: OpenVINO only with
# native BF16).
SECTION = {
    "model": ["Res2Net50_26w_4s", "Res2Net50_vd_26w_4s", "Res2Net50_14w_8s"],
    "precision": ["fp32", "bf16", "int8"],
    "with_preprocess": True,
    "limits": True,
    "calib": [str(PHOTOS)],
}


def section(rows, args, limits) -> str:
    """The Markdown text between the markers."""
    cores = len(os.sched_getaffinity(0))
    lines = [
        "## Deployment latency (CPU)",
        "",
        f"Measured {datetime.date.today()} on {cpu_name()}, {cores} cores, by "
        f"`python benchmarks/latency.py --write`: random 224x224 input, "
        f"{args.warmup} warm-up runs, median of {args.iters}; bold = fastest of our engines; "
        "`e2e` = with decoding + preprocessing of real photos; INT8 = post-training "
        "quantization calibrated on the test photos (NNCF for `openvino`, ONNX Runtime's "
        "quantizer for `onnxruntime`, PT2E for `executorch`): the same files `res2net export "
        "--int8` writes. Every engine of a model, ours and the peers, is built and warmed up "
        "first, then timed in turns (a few calls each, round-robin), so a slow spell of this "
        "shared VM hits all of them alike. Paddle Inference runs in PaddleClas's own "
        "interpreter, a second process kept alive for the whole run: at its turn it is asked "
        "over a pipe to time the same number of calls and send the times back (clocked in "
        "that process, without the pipe; model only, no e2e), so its turns alternate with "
        "ours; its memory is "
        "that process's own peak. "
        f"CPU extensions: {cpu_isa()}. Peak RSS = the process's "
        "resident memory before the model's first engine plus that engine's own rise while "
        "built and warmed up (a model measured later in the run also carries heap that the "
        "earlier ones left behind).",
        "",
        *machine_lines("cpu", args.precision),
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


def parser(write: bool) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] + " " + DESCRIPTION, formatter_class=HelpFormatter
    )
    add_arguments(ap)
    ap.add_argument(
        "--write", action="store_true", help="measure and write BENCHMARKS.md's section"
    )
    ap.add_argument("--dry-run", action="store_true", help="with --write: print, write nothing")
    add_noise_argument(ap)
    if write:
        ap.set_defaults(**SECTION)
    return ap


def main() -> None:
    args = parser("--write" in sys.argv[1:]).parse_args()
    try:
        with LoadWatch() as load:
            rows, limits = measure(args, PEERS)
    except (ValueError, RuntimeError) as exc:
        sys.exit(f"error: {exc}")
    if not args.write:
        report(args, rows, limits)
        return
    text = section(rows, args, limits)
    if args.dry_run:
        print(text)
        return
    bench = write_section(ROOT / "BENCHMARKS.md", "latency", text, load=load,
                          allow_noisy=args.allow_noisy)  # fmt: skip
    plot(rows, ROOT / "docs" / "latency.png")  # only once the section was accepted
    print(f"updated {bench} and docs/latency.png")


if __name__ == "__main__":
    main()
