"""``res2net models``: the model table, counted and published figures side by side."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models with params, FLOPs and accuracy")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--family", choices=["paddleclas", "official"], help="only this family")
    p.add_argument("--cache-dir", help="weight cache folder to check (default: as `download`)")
    p.set_defaults(func=run)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def run(args: argparse.Namespace) -> int:
    from res2net.models.registry import list_models, model_info
    from res2net.weights.hub import cached_path, weight_url

    infos = [model_info(name) for name in list_models(args.family)]
    for info in infos:
        # The URL actually used (a mirror when RES2NET_WEIGHTS_URL is set) and cache state.
        info["url"] = weight_url(info["name"]) if info["url"] else ""
        info["cached"] = cached_path(info["name"], args.cache_dir) is not None
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    header = (
        f"{'Model':<27} {'Family':<10} {'Params (M)':>10} {'GFLOPs':>7} "
        f"{'Pub. params':>11} {'Pub. GFLOPs':>11} {'Top-1':>6} {'Top-5':>6} {'Cached':>6}  "
        "Weights URL"
    )
    print(header)
    print("-" * len(header))
    for info in infos:
        pub = info["published"]
        flag = {k: "*" if k in info["mismatch"] else " " for k in ("gflops", "params_m")}
        print(
            f"{info['name']:<27} {info['family']:<10} {info['params'] / 1e6:>10.2f} "
            f"{info['gflops']:>7.2f} {_fmt(pub['params_m'], '.2f'):>10}{flag['params_m']} "
            f"{_fmt(pub['gflops'], '.2f'):>10}{flag['gflops']} {_fmt(pub['top1'], '.3f'):>6} "
            f"{_fmt(pub['top5'], '.3f'):>6} {'yes' if info['cached'] else 'no':>6}  "
            f"{info['url'] or '-'}"
        )
    if any(info["mismatch"] for info in infos):
        print(
            "\n* published value differs from the one counted from the network (more than "
            "1.5%). PaddleClas's table swaps the FLOPs/params of Res2Net50_vd_26w_4s and "
            "Res2Net50_14w_8s; the counted values are right."
        )
    print(
        "\nParams: trainable, 1000 classes. GFLOPs: 2 x MACs at 224x224, counted by "
        "torch.utils.flop_counter. Accuracy: ImageNet-1k val, as published."
    )
    return 0
