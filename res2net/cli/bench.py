"""``res2net bench``: latency of models x engines x batch sizes (our engines; the peer
comparison is ``python benchmarks/latency.py``, which reuses these options)."""

from __future__ import annotations

import argparse

from res2net.cli.helpfmt import HelpFormatter
from res2net.cli.options import MAX_BATCH, number, number_list
from res2net.deploy.engines import precisions_on


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


DESCRIPTION = (
    "Median latency of each MODEL in each ENGINE at each batch size, as PaddleClas measures "
    "(random input at the model's own size, 224x224 for the registry, a training file's crop "
    "for its network; warm-up, then timed runs, the engines in turns). Prints a "
    "Markdown table; the fastest of our engines is in bold. A .safetensors written by "
    "`res2net train` records its architecture: give it as --weights without --model."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure inference latency (median after warm-up, random input at the model's size)",
        description=DESCRIPTION + " Beside timm, plain OpenVINO and Paddle Inference: "
        "`python benchmarks/latency.py` in a source checkout (same options).",
        formatter_class=HelpFormatter,
    )
    add_arguments(p)
    # Moved out of the installed package: a clear message instead of "unrecognized".
    p.add_argument("--compare", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``res2net bench`` (``benchmarks/latency.py`` takes the same)."""
    p.add_argument(
        "--model",
        type=_csv,
        help="NAME[,NAME...] (default: Res2Net50_vd_26w_4s, or the network of --weights)",
    )
    p.add_argument(
        "--weights",
        help="weight file; a `res2net train` file needs no --model (default: random weights, "
        "which time the same)",
    )
    p.add_argument(
        "--engine",
        type=_csv,
        help="E[,E...] (default: every engine that runs here; on this machine's CPU: %(engines)s)",
    )
    p.add_argument(
        "--batch-sizes",
        type=number_list(1, MAX_BATCH, integer=True),
        default="1,4,8",
        help="B[,B...]: images per call",
    )
    p.add_argument(
        "--precision",
        type=_csv,
        default="fp32",
        help=f"P[,P...]: {','.join(precisions_on('cpu'))} on cpu; "
        f"{','.join(precisions_on('cuda'))} on cuda",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu or cuda: on cuda the batch stays on the card and the peer is timm eager",
    )
    p.add_argument(
        "--warmup",
        type=number(0, 100_000, integer=True),
        default=10,
        help="untimed runs per batch size",
    )
    p.add_argument(
        "--iters",
        type=number(1, 100_000, integer=True),
        default=50,
        help="timed runs per batch size",
    )
    p.add_argument("--calib", nargs="+", help="images/folders to calibrate int8 (default: noise)")
    p.add_argument(
        "--photos",
        nargs="+",
        help="images/folders decoded by --with-preprocess and used to check reduced "
        "precisions against FP32 (default: the --calib images)",
    )
    p.add_argument(
        "--limits",
        action="store_true",
        help="also measure this machine's GEMM rates and show each result against that floor",
    )
    p.add_argument(
        "--with-preprocess", action="store_true", help="also time decode+preprocess of --photos"
    )
    p.add_argument("--json", action="store_true", help="print JSON rows instead of the table")
    p.add_argument("--plot", help="write PNGs: latency vs top-1, per-image latency vs batch")


def run(args: argparse.Namespace) -> int:
    if args.compare:
        raise ValueError(
            "--compare: the peers (timm, plain OpenVINO, Paddle Inference) live with the "
            "benchmarks, not in the package: run `python benchmarks/latency.py` from a source "
            "checkout, with the same options"
        )
    rows, limits = measure(args)
    report(args, rows, limits)
    return 0


def measure(args: argparse.Namespace, peers=()) -> tuple[list, object]:
    """The rows of ``args`` (and ``peers``, from ``benchmarks/peers.py``) and the limits."""
    from res2net.bench.latency import run_benchmark

    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: no CUDA GPU is usable here; use cpu")
        if args.limits:
            raise ValueError("--limits measures CPU GEMM rates; leave it out with --device cuda")
    photos = args.photos or args.calib
    if args.with_preprocess and not photos:
        raise ValueError("--with-preprocess decodes real photos: give --photos IMAGES|FOLDERS")
    models = args.model or ([None] if args.weights else ["Res2Net50_vd_26w_4s"])
    calib = None
    if args.calib:
        from res2net.card import load_card
        from res2net.deploy.int8 import load_calibration

        pre = load_card(models[0] or args.weights).preprocess
        calib = load_calibration(args.calib, pre)
    limits = None
    if args.limits:
        from res2net.bench.limits import measure_limits

        limits = measure_limits()
    rows = run_benchmark(
        models, args.engine, args.batch_sizes, args.precision, peers=peers,
        with_preprocess=args.with_preprocess, warmup=args.warmup, iters=args.iters, calib=calib,
        photos=photos, limits=limits, device=args.device, weights=args.weights,
    )  # fmt: skip
    if not rows:
        raise RuntimeError("nothing was measured (see the messages above)")
    return rows, limits


def report(args: argparse.Namespace, rows: list, limits: object) -> None:
    """Print the table (or JSON), the peer ratios and the limit lines; write the plots."""
    from res2net.bench.report import (
        limit_lines,
        machine_lines,
        markdown_table,
        plot,
        ratios,
        to_json,
    )

    if args.json:
        print(to_json(rows))
    else:
        for line in machine_lines(args.device, args.precision):
            print(line)
        print(markdown_table(rows))
        for line in ratios(rows):
            print(line)
        for line in limit_lines(rows, limits) if limits else []:
            print(line)
    if args.plot:
        print("wrote " + ", ".join(map(str, plot(rows, args.plot))))
