"""``res2net export``: a registered model (+ weights) to ONNX / OpenVINO / TorchScript / .pt2."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from res2net.deploy.export import FORMATS

    p = sub.add_parser(
        "export",
        help="export a model for deployment (BN folded, dynamic batch, metadata JSON beside it)",
        description="Export MODEL with the given weights (default: its published weights) to "
        "FORMAT. BatchNorm is folded and stage branches grouped; the batch dimension is "
        "dynamic; OUTPUT.json beside the model holds name, preprocessing, labels and checksums.",
    )
    p.add_argument("--model", required=True, help="registered model name (see `res2net models`)")
    p.add_argument(
        "--weights", help="weight file (.pdparams/.safetensors/.pth); default: published"
    )
    p.add_argument("--format", choices=list(FORMATS), default="onnx", dest="fmt")
    p.add_argument("--softmax", action="store_true", help="append softmax (output probabilities)")
    p.add_argument(
        "--int8",
        action="store_true",
        help="INT8 post-training quantization (NNCF for openvino, ONNX Runtime for onnx, "
        "PT2E + XNNPACK's quantizer for executorch)",
    )
    p.add_argument("--calib", nargs="+", help="calibration images or folders for --int8")
    p.add_argument("--num-classes", type=int, help="classes of the weights (default: 1000)")
    p.add_argument("--labels", help="label file (one name per line); default: ImageNet for 1000")
    p.add_argument("--output", help="model file to write (default: exports/MODEL.<suffix>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from res2net.data.labels import imagenet_labels, load_label_file
    from res2net.deploy.export import FORMATS, export_model
    from res2net.deploy.int8 import load_calibration
    from res2net.models.registry import create_model, get_entry

    if args.int8 != bool(args.calib):
        raise ValueError("--int8 and --calib go together: INT8 needs calibration images")
    entry = get_entry(args.model)
    num_classes = args.num_classes or 1000
    model = create_model(
        args.model, pretrained=args.weights or True, num_classes=num_classes, skip_head=False
    )
    labels = load_label_file(args.labels) if args.labels else None
    if labels is None and num_classes == 1000:
        labels = imagenet_labels()
    calib = load_calibration(args.calib, entry.preprocess) if args.int8 else None
    output = args.output or f"exports/{args.model}{'_int8' if args.int8 else ''}{FORMATS[args.fmt]}"
    path = export_model(
        model, output, fmt=args.fmt, name=args.model, preprocess=entry.preprocess,
        labels=labels, softmax=args.softmax, int8_calibration=calib,
    )  # fmt: skip
    print(f"wrote {path} and {path.name}.json")
    return 0
