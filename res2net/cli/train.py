"""``res2net train``: train or distill from a YAML config, with ``key=value`` overrides."""

from __future__ import annotations

import argparse
import json

from res2net.cli.helpfmt import HelpFormatter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        formatter_class=HelpFormatter,
        help="train (or distill) a Res2Net from a YAML config; runs under torchrun as well",
        description="Train from a config (see configs/). Extra key=value arguments override "
        "config keys by dotted path, e.g. optim.lr=0.05 train.batch_size=32. Under torchrun "
        "every process runs this same command.",
    )
    p.add_argument(
        "--config", required=True, help="YAML config file, e.g. configs/digits_demo.yaml"
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        help="continue exactly from a checkpoint (default: OUTPUT_DIR/last.pt)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from res2net.engine.checkpoint import LAST
    from res2net.engine.config import load_config
    from res2net.engine.train import train

    cfg = load_config(args.config, args.overrides)
    resume = args.resume
    if resume == "auto":
        resume = Path(cfg.output.dir) / LAST
    result = train(cfg, resume=resume)
    if result.final_weights is not None:
        last = result.history[-1] if result.history else {}
        summary = {k: v for k, v in last.items() if k.startswith("val_")}
        print(json.dumps({"final_weights": str(result.final_weights), **summary}))
    return 0
