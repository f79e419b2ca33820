"""``res2net predict``: classify image files and folders (see res2net.deploy.predictor)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from res2net.cli.helpfmt import HelpFormatter
from res2net.cli.options import (
    add_loader_arguments,
    add_model_arguments,
    add_num_classes_argument,
    add_ray_arguments,
    add_runtime_arguments,
    chosen_weights,
    number,
)
from res2net.cli.output import print_json
from res2net.cli.paddleclas import add_paddleclas_config_arguments, apply_paddleclas_config

# --max-pixels above this is no limit at all: 2**40 RGB pixels are 3 TB decoded.
MAX_PIXELS = 2**40


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand."""
    p = subparsers.add_parser(
        "predict",
        formatter_class=HelpFormatter,
        help="classify images (files or folders, walked recursively)",
        description="Classify images with a Res2Net, using its weights' own preprocessing. "
        "Exit code: 0 all classified, 1 some images failed, 2 usage error.",
    )
    p.add_argument("inputs", nargs="*", metavar="IMAGES_OR_FOLDERS")
    add_model_arguments(
        p,
        model_help="registered name (see `res2net models`), an exported model (.onnx, .xml, "
        ".pt, .pt2, .pte: run as it is, with the preprocessing and labels of its .json), a "
        "PaddleClas inference model (folder or .pdiparams), or a .safetensors written by "
        "`res2net train` (records architecture, preprocessing, classes)",
        weights_help="with a registered --model: .pdparams / .safetensors / .pth weight file or a "
        "PaddleClas inference model; alone: an exported model or a `res2net train` .safetensors",
        random_weights=True,
    )
    p.add_argument(
        "--topk", type=number(1, 10_000, integer=True), default=5, help="classes per image"
    )
    add_loader_arguments(p, batch_size=8, workers_help="decoding threads")
    add_runtime_arguments(p)
    p.add_argument("--labels", help="label file: one name per line, or PaddleClas 'id name'")
    add_num_classes_argument(p, help_text="classifier size (default: from labels, 1000)")
    p.add_argument(
        "--max-pixels",
        type=number(0, MAX_PIXELS, integer=True),
        default=None,
        help="refuse images with more pixels (default 89,478,485; 0: no limit)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    _add_batch_options(p)
    add_paddleclas_config_arguments(p)
    p.set_defaults(func=run)


def _add_batch_options(p: argparse.ArgumentParser) -> None:
    """Options of large jobs (res2net.batch): stream to a file, resume, run on Ray."""
    g = p.add_argument_group("large collections (see README: Classify a large collection)")
    g.add_argument(
        "--output",
        metavar="RESULTS.parquet|.jsonl",
        help="write one row per image into this folder of part files instead of printing",
    )
    g.add_argument("--resume", action="store_true", help="skip images already in --output")
    add_ray_arguments(g, what="run")
    g.add_argument(
        "--cpus-per-actor",
        type=number(0, 1024),
        default=0.5,
        help="CPUs Ray reserves per actor",
    )
    g.add_argument(
        "--rows-per-part",
        type=number(1, 10**7, integer=True),
        default=1024,
        help="images per part file",
    )


def _predictor_options(args: argparse.Namespace, max_pixels: int | None) -> dict:
    """The Predictor keywords that both the in-memory and the streaming (batch) paths take."""
    return {
        "engine": args.engine, "device": args.device, "precision": args.precision,
        "topk": args.topk, "batch_size": args.batch_size, "num_workers": args.num_workers,
        "labels": args.labels, "num_classes": args.num_classes, "max_pixels": max_pixels,
    }  # fmt: skip


def _run_batch(args: argparse.Namespace, weights, max_pixels: int | None) -> int:
    from res2net.batch import batch_predict

    began = time.perf_counter()
    summary = batch_predict(
        args.inputs,
        args.output,
        model=args.model,
        weights=weights,
        resume=args.resume,
        rows_per_part=args.rows_per_part,
        ray=args.ray,
        num_actors=args.actors,
        cpus_per_actor=args.cpus_per_actor,
        **_predictor_options(args, max_pixels),
    )
    print(
        f"{summary['model']}: {summary['written']} images written to {summary['output']} "
        f"({summary['failed']} failed, "
        f"{summary['skipped']} already there){_rate(summary['written'], began)}",
        file=sys.stderr,
    )
    return 1 if summary["failed"] else 0


def _print_text(predictions: list, model: str, weights: str) -> None:
    # A header naming the model and the columns; then per image its path and one
    # "score  id  name" line per class, best first.
    print(f"# {model} ({weights}): per image, score  class-id  class name")
    for pred in predictions:
        if not pred.ok:
            continue
        print(pred.source)
        names = pred.labels or [""] * len(pred.class_ids)
        for cid, name, score in zip(pred.class_ids, names, pred.scores, strict=True):
            print(f"  {score:.4f}  {cid:>4}  {name}".rstrip())


def _rate(images: int, began: float) -> str:
    """ ", N images/s" over the time since ``began`` (model loading included)."""
    seconds = time.perf_counter() - began
    return f", {images / seconds:.1f} images/s" if images and seconds > 0 else ""


def _max_pixels(value: int | None, default: int) -> int | None:
    if value is None:
        return default
    return None if value == 0 else value


def run(args: argparse.Namespace) -> int:
    """Classify ``args.inputs``; returns 0 (all ok), 1 (some failed)."""
    from res2net.data.images import DEFAULT_MAX_PIXELS, collect_images
    from res2net.deploy.predictor import Predictor

    apply_paddleclas_config(args, "predict")
    if not args.inputs:
        raise ValueError("give IMAGES_OR_FOLDERS (or --config with a PaddleClas Infer.infer_imgs)")
    weights = chosen_weights(args)
    if args.output is None and (args.resume or args.ray):
        raise ValueError("--resume and --ray need --output RESULTS.parquet (or .jsonl)")
    if args.ray and os.path.exists(args.ray):
        raise ValueError(
            f"--ray took {args.ray!r} as a cluster address, but it is a file or folder; put "
            "--ray after the images, or write --ray local"
        )
    if args.output is not None:
        return _run_batch(args, weights, _max_pixels(args.max_pixels, DEFAULT_MAX_PIXELS))
    files = collect_images(args.inputs)
    if not files:
        raise ValueError(f"no image files found in {', '.join(args.inputs)}")
    began = time.perf_counter()
    predictor = Predictor(
        args.model,
        weights,
        **_predictor_options(args, _max_pixels(args.max_pixels, DEFAULT_MAX_PIXELS)),
    )
    random = predictor.weights is None
    if random:
        # Only once the command is known to run: a usage error above needs no such warning.
        print(
            f"warning: --random-weights: {predictor.model_name} has RANDOM weights, so its "
            "predictions mean nothing. Pass --weights FILE or --pretrained for real ones.",
            file=sys.stderr,
        )
    loaded = time.perf_counter()
    predictions = predictor.predict(files)
    print(
        f"{len(files)} images in {time.perf_counter() - began:.2f} s (model ready after "
        f"{loaded - began:.2f} s){_rate(len(files), loaded)}",
        file=sys.stderr,
    )
    failed = [p for p in predictions if not p.ok]
    for pred in failed:
        print(f"failed: {pred.error}", file=sys.stderr)
    weights_name = None if random else ("pretrained" if weights is True else str(predictor.weights))
    if args.json:
        document = {
            "model": predictor.model_name,
            "weights": weights_name,
            "predictions": [p.to_dict() for p in predictions],
        }
        print_json(document, indent=2)
    else:
        _print_text(predictions, predictor.model_name, weights_name or "random weights")
    if failed:
        print(f"{len(failed)} of {len(predictions)} images failed", file=sys.stderr)
    return 1 if failed else 0
