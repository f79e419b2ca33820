"""``res2net digits``: render scikit-learn's handwritten digits as an image folder (offline)."""

from __future__ import annotations

import argparse

from res2net.cli.helpfmt import HelpFormatter
from res2net.cli.options import number


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "digits",
        formatter_class=HelpFormatter,
        help="write scikit-learn's handwritten digits as OUT/{train,val}/<digit>/*.png",
    )
    p.add_argument("out_dir", help="folder to write (e.g. data/digits)")
    p.add_argument(
        "--size", type=number(1, 1024, integer=True), default=32, help="image side in pixels"
    )
    # scikit-learn's stratified split needs at least one image of each of the 10 digits on
    # each side: 1% of 1797 is 18.
    p.add_argument(
        "--val-fraction",
        type=number(0.01, 0.99),
        default=0.2,
        help="share held out for validation",
    )
    p.add_argument(
        "--seed",
        type=number(0, 2**32 - 1, integer=True),  # numpy's RandomState takes 32 bits
        default=0,
        help="seed of the train/val split",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from res2net.data.datasets import render_digits

    counts = render_digits(
        args.out_dir, size=args.size, val_fraction=args.val_fraction, seed=args.seed
    )
    print(
        f"wrote {counts['train']} train and {counts['val']} val images to {args.out_dir} "
        f"(class names: {args.out_dir}/labels.txt)"
    )
    return 0
