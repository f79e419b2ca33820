"""``res2net eval``: top-1 / top-5 of a model on an image folder or a PaddleClas list file."""

from __future__ import annotations

import argparse
import json

from res2net.cli.helpfmt import HelpFormatter
from res2net.cli.paddleclas import add_paddleclas_config_arguments, apply_paddleclas_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        formatter_class=HelpFormatter,
        help="top-1/top-5 accuracy on a labelled image folder (ImageFolder or list file)",
        description="Evaluate with the model's own eval preprocessing. --model names a "
        "registered network or an exported model file; weights written by `res2net train` "
        "carry their architecture.",
    )
    p.add_argument(
        "--model",
        help="registered model name (see `res2net models`), or an exported model (.onnx, .xml, "
        ".pt, .pt2, .pte) run as it is",
    )
    p.add_argument(
        "--weights",
        help="weight file (.safetensors, .pdparams, .pth); alone: a `res2net train` "
        ".safetensors or an exported model",
    )
    p.add_argument(
        "--pretrained", action="store_true", help="use the model's published weights (download)"
    )
    p.add_argument(
        "--data",
        help="image folder: DIR/<class>/<image>, or the root that --list paths are relative to",
    )
    p.add_argument("--list", dest="list_file", help="PaddleClas list file: 'relative/path label'")
    p.add_argument("--batch-size", type=int, default=64, help="images per model call")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="evaluate on Ray: no value starts a local instance; 'auto' or HOST:PORT joins one",
    )
    p.add_argument("--actors", type=int, default=1, help="model replicas with --ray (default 1)")
    add_paddleclas_config_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from res2net.engine.evaluate import evaluate_folder
    from res2net.resolve import is_registered

    apply_paddleclas_config(args, "eval")
    if not args.data:
        raise ValueError("give --data DIR (or --config with a PaddleClas DataLoader.Eval)")
    if not (args.model or args.weights):
        raise ValueError(
            "give --model NAME (with --weights or --pretrained), --model EXPORTED_FILE or "
            "--weights FILE"
        )
    if args.pretrained and args.weights:
        raise ValueError("give either --pretrained or --weights, not both")
    if is_registered(args.model) and not (args.pretrained or args.weights):
        raise ValueError(f"--model {args.model}: give --weights FILE or --pretrained")
    common = {"name": args.model, "weights": args.weights, "pretrained": args.pretrained}
    common |= {"list_file": args.list_file, "device": args.device}
    if args.ray:
        from res2net.batch import evaluate_on_ray

        result = evaluate_on_ray(args.data, address=args.ray, num_actors=args.actors, **common)
    else:
        result = evaluate_folder(
            args.data, batch_size=args.batch_size, num_workers=args.workers, **common
        )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  "
            f"loss {result['loss']:.4f}  images {result['images']}"
        )
    return 0
