"""``res2net models``: the model table, counted and published figures side by side."""

from __future__ import annotations

import argparse

from res2net.cli.helpfmt import HelpFormatter
from res2net.cli.output import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list registered models with params, FLOPs and accuracy",
        description="The registered models: parameters and GFLOPs counted from the networks "
        "(shipped with the package, recounted by its tests), next to the published figures.",
        formatter_class=HelpFormatter,
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON with every field")
    out.add_argument(
        "--wide", action="store_true", help="every column, weight URLs included (over 200 wide)"
    )
    p.add_argument("--family", choices=["paddleclas", "official"], help="only this family")
    p.add_argument("--cache-dir", help="weight cache folder to check (default: as `download`)")
    p.set_defaults(func=run)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _wide_lines(infos: list[dict]) -> list[str]:
    header = (
        f"{'Model':<27} {'Family':<10} {'Params (M)':>10} {'GFLOPs':>7} "
        f"{'Pub. params':>11} {'Pub. GFLOPs':>11} {'Top-1':>6} {'Top-5':>6} {'Cached':>6}  "
        f"{'SHA-256':<18}  Weights URL"
    )
    lines = [header, "-" * len(header)]
    for info in infos:
        pub = info["published"]
        flag = {k: "*" if k in info["mismatch"] else " " for k in ("gflops", "params_m")}
        lines.append(
            f"{info['name']:<27} {info['family']:<10} {info['params'] / 1e6:>10.2f} "
            f"{info['gflops']:>7.2f} {_fmt(pub['params_m'], '.2f'):>10}{flag['params_m']} "
            f"{_fmt(pub['gflops'], '.2f'):>10}{flag['gflops']} {_fmt(pub['top1'], '.3f'):>6} "
            f"{_fmt(pub['top5'], '.3f'):>6} {'yes' if info['cached'] else 'no':>6}  "
            f"{info['pin']:<18}  {info['url'] or '-'}"
        )
    return lines


def _narrow_lines(infos: list[dict]) -> list[str]:
    """At most 100 columns: published params/GFLOPs folded into one column, no URL."""
    header = (
        f"{'Model':<27} {'Family':<10} {'Params M':>8} {'GFLOPs':>7} {'Published':>13} "
        f"{'Top-1':>6} {'Top-5':>6} {'Cached':>6}"
    )
    lines = [header, "-" * len(header)]
    for info in infos:
        pub = info["published"]
        published = "-"
        if pub["params_m"] is not None or pub["gflops"] is not None:
            star = "*" if info["mismatch"] else ""
            published = f"{_fmt(pub['params_m'], '.2f')}/{_fmt(pub['gflops'], '.2f')}{star}"
        lines.append(
            f"{info['name']:<27} {info['family']:<10} {info['params'] / 1e6:>8.2f} "
            f"{info['gflops']:>7.2f} {published:>13} {_fmt(pub['top1'], '.3f'):>6} "
            f"{_fmt(pub['top5'], '.3f'):>6} {'yes' if info['cached'] else 'no':>6}"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    from res2net.builder import cached_path, pin_status, weight_url
    from res2net.models.registry import list_models, model_info

    infos = [model_info(name) for name in list_models(args.family)]
    for info in infos:
        # The URL actually used (a mirror when RES2NET_WEIGHTS_URL is set) and cache state.
        info["url"] = weight_url(info["name"])
        info["cached"] = cached_path(info["name"], args.cache_dir) is not None
        info["pin"] = pin_status(info["name"], args.cache_dir)
    if args.json:
        print_json(infos, indent=2)
        return 0
    print("\n".join(_wide_lines(infos) if args.wide else _narrow_lines(infos)))
    if any(info["mismatch"] for info in infos):
        print(
            "\n* published value differs from the one counted from the network (more than\n"
            "1.5%). PaddleClas's table swaps the FLOPs/params of Res2Net50_vd_26w_4s and\n"
            "Res2Net50_14w_8s; the counted values are right."
        )
    print(
        "\nParams: trainable, 1000 classes. GFLOPs: 2 x MACs at 224x224, counted by\n"
        "torch.utils.flop_counter. Published: params (M) / GFLOPs. Accuracy: ImageNet-1k val,\n"
        "as published." + ("" if args.wide else " --wide adds the weight URLs, --json all.")
    )
    if args.wide:
        print(
            "SHA-256: 'pinned' weights are checked against the registry's hash; 'trust on first\n"
            "use' ones against the hash recorded at this cache's first download ('recorded')."
        )
    return 0
