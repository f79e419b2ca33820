"""``res2net export``: a registered model (+ weights) to ONNX / OpenVINO / TorchScript / .pt2."""

from __future__ import annotations

import argparse

from res2net.cli.helpfmt import HelpFormatter
from res2net.cli.options import add_model_arguments, add_num_classes_argument


def register(sub: argparse._SubParsersAction) -> None:
    from res2net.deploy.engines import FORMATS

    p = sub.add_parser(
        "export",
        help="export a model for deployment (BN folded, dynamic batch, metadata JSON beside it)",
        description="Export a model to FORMAT. BatchNorm is folded and stage branches grouped; "
        "the batch dimension is dynamic; OUTPUT.json beside the model holds name, "
        "preprocessing, labels and checksums. Weights: --weights FILE; with --model alone, the "
        "model's PUBLISHED weights, downloaded once and cached (needs network the first "
        "time); --random-weights to try a pipeline offline. A .safetensors written by "
        "`res2net train` records its architecture: give it as --weights without --model.",
        formatter_class=HelpFormatter,
    )
    add_model_arguments(
        p,
        model_help="registered model name (see `res2net models`); leave out for a file written "
        "by `res2net train`",
        weights_help="weight file (.pdparams/.safetensors/.pth); without it: the published "
        "weights (downloaded)",
        alternative="--random-weights",
        alternative_help="export with random weights, without download (to try a pipeline)",
    )
    p.add_argument(
        "--format", choices=list(FORMATS), default="onnx", dest="fmt", help="file format to write"
    )
    p.add_argument("--softmax", action="store_true", help="append softmax (output probabilities)")
    p.add_argument(
        "--int8",
        action="store_true",
        help="INT8 post-training quantization (NNCF for openvino, ONNX Runtime for onnx, "
        "PT2E + XNNPACK's quantizer for executorch)",
    )
    p.add_argument("--calib", nargs="+", help="calibration images or folders for --int8")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="bf16: an OpenVINO IR that loads with OpenVINO's BF16 hint (AVX512-BF16/AMX CPUs)",
    )
    add_num_classes_argument(p, help_text="classes of the weights (default: 1000, or the file's)")
    p.add_argument(
        "--labels",
        help="label file (one name per line); default: the training file's class names, "
        "ImageNet's for 1000 classes",
    )
    p.add_argument("--output", help="model file to write (default: exports/NAME.<suffix>)")
    p.set_defaults(func=run)


def _network(args: argparse.Namespace):
    """(network with weights, name, preprocessing, class names or None) to export."""
    from res2net.builder import build_model
    from res2net.card import card_of
    from res2net.models.registry import get_entry
    from res2net.resolve import load_training_export

    if args.model is None:
        if not args.weights:
            raise ValueError(
                "give --model NAME, or --weights FILE written by `res2net train` (it records "
                "its architecture)"
            )
        # The name is res2net.resolve's, the one predict and serve use for this file too.
        network, pre, name, classes = load_training_export(args.weights)
        return network, name, pre, classes
    card = card_of(get_entry(args.model))
    source = args.weights or not args.random_weights
    network = build_model(
        card, weights=source, num_classes=args.num_classes or 1000, skip_head=False
    )
    return network, card.name, card.preprocess, None


def run(args: argparse.Namespace) -> int:
    import sys

    from res2net.data.labels import imagenet_labels, load_label_file
    from res2net.deploy.export import FORMATS, export_model
    from res2net.deploy.int8 import load_calibration

    if args.int8 != bool(args.calib):
        raise ValueError("--int8 and --calib go together: INT8 needs calibration images")
    if args.precision == "bf16" and (args.fmt != "openvino" or args.int8):
        raise ValueError("--precision bf16 goes with --format openvino, without --int8")
    if args.random_weights and args.model is None:
        raise ValueError("--random-weights needs --model NAME")
    model, name, pre, classes = _network(args)
    if args.random_weights:
        print(f"warning: {name} exported with RANDOM weights (--random-weights)", file=sys.stderr)
    labels = load_label_file(args.labels) if args.labels else classes
    if labels is None and model.num_classes == 1000:
        labels = imagenet_labels()
    calib = load_calibration(args.calib, pre) if args.int8 else None
    tag = "_int8" if args.int8 else ("_bf16" if args.precision == "bf16" else "")
    output = args.output or f"exports/{name}{tag}{FORMATS[args.fmt]}"
    path = export_model(
        model, output, fmt=args.fmt, name=name, preprocess=pre,
        labels=labels, softmax=args.softmax, int8_calibration=calib, precision=args.precision,
        random_weights=args.random_weights,
    )  # fmt: skip
    print(f"wrote {path} and {path.name}.json")
    return 0
