"""``res2net eval``: top-1 / top-5 of a model on an image folder or a PaddleClas list file."""

from __future__ import annotations

import argparse

from res2net.cli.helpfmt import HelpFormatter
from res2net.cli.options import add_loader_arguments, add_model_arguments, add_ray_arguments
from res2net.cli.output import print_json
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
    add_model_arguments(
        p,
        model_help="registered model name (see `res2net models`), an exported model (.onnx, "
        ".xml, .pt, .pt2, .pte) run as it is, or a PaddleClas inference model",
        weights_help="weight file (.safetensors, .pdparams, .pth, a PaddleClas inference "
        "model); alone: a `res2net train` .safetensors or an exported model",
        alternative_help="use the model's published weights (download)",
    )
    p.add_argument(
        "--data",
        help="image folder: DIR/<class>/<image>, or the root that --list paths are relative to",
    )
    p.add_argument("--list", dest="list_file", help="PaddleClas list file: 'relative/path label'")
    add_loader_arguments(p, batch_size=64, workers_help="DataLoader worker processes")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_ray_arguments(p, what="evaluate")
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
    if is_registered(args.model) and not (args.pretrained or args.weights):
        raise ValueError(f"--model {args.model}: give --weights FILE or --pretrained")
    common = {"name": args.model, "weights": args.weights, "pretrained": args.pretrained}
    common |= {"list_file": args.list_file, "device": args.device}
    if args.ray:
        from res2net.batch import evaluate_on_ray

        result = evaluate_on_ray(args.data, address=args.ray, num_actors=args.actors, **common)
    else:
        result = evaluate_folder(
            args.data, batch_size=args.batch_size, num_workers=args.num_workers, **common
        )
    if args.json:
        print_json(result)
    else:
        print(
            f"top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  "
            f"loss {result['loss']:.4f}  images {result['images']}"
        )
    return 0
