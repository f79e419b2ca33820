"""``res2net bench``: latency of models x engines x batch sizes, optionally beside the peers."""

from __future__ import annotations

import argparse

from res2net.cli.helpfmt import HelpFormatter


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure inference latency (median after warm-up, random 224 input)",
        description="Median latency of each MODEL in each ENGINE at each batch size, as "
        "PaddleClas measures (random 224x224 input, warm-up, then timed runs). Prints a "
        "Markdown table; the fastest of our engines is in bold. A .safetensors written by "
        "`res2net train` records its architecture: give it as --weights without --model.",
        formatter_class=HelpFormatter,
    )
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
        type=lambda s: [int(b) for b in _csv(s)],
        default="1,4,8",
        help="B[,B...]: images per call",
    )
    p.add_argument(
        "--precision",
        type=_csv,
        default="fp32",
        help="P[,P...]: fp32,bf16,int8 on cpu; fp32,fp16,bf16 on cuda",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu or cuda: on cuda the batch stays on the card and the peer is timm eager",
    )
    p.add_argument("--warmup", type=int, default=10, help="untimed runs per batch size")
    p.add_argument("--iters", type=int, default=50, help="timed runs per batch size")
    p.add_argument("--calib", nargs="+", help="images/folders to calibrate int8 (default: noise)")
    p.add_argument("--compare", action="store_true", help="also timm eager, plain OpenVINO, Paddle")
    p.add_argument(
        "--limits",
        action="store_true",
        help="also measure this machine's GEMM rates and show each result against that floor",
    )
    p.add_argument("--with-preprocess", action="store_true", help="also time decode+preprocess")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of the table")
    p.add_argument("--plot", help="write PNGs: latency vs top-1, per-image latency vs batch")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from res2net.bench.latency import (
        limit_lines,
        machine_lines,
        markdown_table,
        plot,
        ratios,
        run_benchmark,
        to_json,
    )

    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: no CUDA GPU is usable here; use cpu")
        if args.limits:
            raise ValueError("--limits measures CPU GEMM rates; leave it out with --device cuda")
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
        models, args.engine, args.batch_sizes, args.precision, compare=args.compare,
        with_preprocess=args.with_preprocess, warmup=args.warmup, iters=args.iters, calib=calib,
        limits=limits, device=args.device, weights=args.weights,
    )  # fmt: skip
    if not rows:
        raise RuntimeError("nothing was measured (see the messages above)")
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
    return 0
