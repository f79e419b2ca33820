"""``res2net download``: pre-fetch published weights into the cache, for offline machines."""

from __future__ import annotations

import argparse
import sys

from res2net.cli.helpfmt import HelpFormatter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "download",
        formatter_class=HelpFormatter,
        help="download, verify and cache published weights",
        description="Fetch each model's published weights, check them, convert them once to "
        ".safetensors and keep them in the cache folder. Copy that folder (or point "
        "RES2NET_CACHE at it) to use the weights on a machine without network.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="registered model names")
    p.add_argument("--all", action="store_true", help="every model with published weights")
    p.add_argument(
        "--cache-dir", help="cache folder (default: $RES2NET_CACHE, else ~/.cache/res2net)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from res2net.builder import fetch_weights
    from res2net.models.registry import get_entry, list_models
    from res2net.weights.hub import WeightDownloadError

    names = [n for n in list_models() if get_entry(n).url] if args.all else args.names
    if not names:
        print("res2net download: error: name at least one model, or --all", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        # One bad name or failed download must not stop the others.
        try:
            path = fetch_weights(name, cache_dir=args.cache_dir, progress=not args.quiet)
        except (ValueError, WeightDownloadError) as exc:
            print(f"res2net download: {name}: error: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        print(f"{name}: {path}")
    if failed:
        print(f"res2net download: {len(failed)} failed: {' '.join(failed)}", file=sys.stderr)
        return 1
    return 0
