"""``res2net convert``: weight files between formats (.pdparams/.pth/.safetensors)."""

from __future__ import annotations

import argparse

from res2net.cli.helpfmt import HelpFormatter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        formatter_class=HelpFormatter,
        help="convert .pdparams / .pth / .safetensors weights to our .safetensors",
        description="Read SRC (any supported format), check that it loads strictly into "
        "MODEL, and write DST as .safetensors with timm-compatible key names.",
    )
    p.add_argument("src", help="source weight file (.pdparams, .pth or .safetensors)")
    p.add_argument("dst", help="destination .safetensors file")
    p.add_argument("--model", required=True, help="registered model name the weights are for")
    p.add_argument(
        "--to",
        choices=["res2net", "timm"],
        default="res2net",
        help="key naming of DST (timm's keys equal ours; 'timm' writes a file for "
        "timm.create_model(MODEL), official-flavour models only)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from res2net.builder import convert_weights

    try:
        out = convert_weights(args.src, args.dst, args.model, naming=args.to)
    except ValueError as exc:
        raise ValueError(
            str(exc).replace("naming='timm'", "--to timm").replace("dst=", "DST ")
        ) from None
    except OSError as exc:
        raise ValueError(f"cannot write {args.dst}: {exc.strerror or exc}") from None
    print(f"wrote {out}")
    return 0
