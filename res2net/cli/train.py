"""``res2net train``: train or distill from a YAML config, with ``key=value`` overrides."""

from __future__ import annotations

import argparse

from res2net.cli.helpfmt import HelpFormatter
from res2net.cli.output import print_json
from res2net.cli.paddleclas import add_paddleclas_override_argument


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
        "--config",
        required=True,
        help="YAML config file, e.g. configs/digits_demo.yaml, or a PaddleClas training config "
        "(ppcls/configs/.../*.yaml) as PaddleClas ships it",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    add_paddleclas_override_argument(p)
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        help="continue exactly from a checkpoint (default: OUTPUT_DIR/last.pt)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the final result as one JSON line on stdout"
    )
    p.set_defaults(func=run)


def _summary(result) -> str:
    """The run's outcome in words: where the weights are and how good they are."""
    from res2net.engine.report import CSV_NAME, PLOT_NAME
    from res2net.engine.run_folder import BEST_WEIGHTS

    out = result.out_dir
    last = result.history[-1] if result.history else {}
    lines = [f"trained {last.get('epoch', 0):g} epochs ({result.global_step} steps)."]
    if "val_top1" in last:
        lines.append(
            f"validation: top-1 {last['val_top1']:.2%}, top-5 {last['val_top5']:.2%} "
            f"(best top-1 {result.best_top1:.2%})."
        )
    lines.append(f"weights: {result.final_weights} (best top-1: {out / BEST_WEIGHTS})")
    lines.append(f"curves: {out / PLOT_NAME}  metrics: {out / CSV_NAME}")
    lines.append(
        f"next: res2net predict IMAGES --weights {result.final_weights}  "
        f"(or eval/export/serve/bench with --weights)"
    )
    return "\n".join(lines)


def _train(cfg, resume):
    from res2net.engine.train import train

    return train(cfg, resume=resume)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from res2net.engine.config import config_to_dict
    from res2net.engine.paddleclas_config import load_any_config
    from res2net.engine.run_folder import LAST, finished_run

    cfg = load_any_config(args.config, args.overrides, args.paddleclas_overrides)
    resume = args.resume
    if resume == "auto":
        resume = Path(cfg.output.dir) / LAST
    done = resume and finished_run(Path(cfg.output.dir), config_to_dict(cfg), Path(resume))
    # Nothing left to do: answered from the run's record, without importing torch.
    result = done or _train(cfg, resume)
    if result.final_weights is None:  # not rank 0 under torchrun: rank 0 reports
        return 0
    if args.json:
        last = result.history[-1] if result.history else {}
        summary = {k: v for k, v in last.items() if k.startswith("val_")}
        print_json({"final_weights": str(result.final_weights), **summary})
    else:
        print(_summary(result))
    return 0
