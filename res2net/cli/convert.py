"""``res2net convert``: weight files between formats (.pdparams/.pth/.safetensors)."""

from __future__ import annotations

import argparse

from res2net.cli.helpfmt import HelpFormatter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        formatter_class=HelpFormatter,
        help="convert weights (.pdparams / .pth / .safetensors / a PaddleClas inference "
        "model) to our .safetensors, or to PaddleClas's .pdparams",
        description="Read SRC (any supported format), check that it loads strictly into "
        "MODEL, and write DST: .safetensors with timm-compatible key names, or, for a DST "
        "ending in .pdparams, the file PaddleClas loads (paddle flavour only).",
    )
    p.add_argument(
        "src",
        help="source weights: .pdparams, .pth, .safetensors, or a PaddleClas inference model "
        "(its directory, .pdiparams, .pdmodel or .json)",
    )
    p.add_argument("dst", help="destination .safetensors or .pdparams file")
    p.add_argument(
        "--model",
        help="registered model name the weights are for; may be left out for weights written "
        "by `res2net train` (their architecture and class count are read from the file)",
    )
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
        message = str(exc).replace("naming='timm'", "--to timm").replace("model= ", "--model ")
        raise ValueError(message.replace("dst=", "DST ")) from None
    except OSError as exc:
        raise ValueError(f"cannot write {args.dst}: {exc.strerror or exc}") from None
    print(f"wrote {out}")
    return 0
