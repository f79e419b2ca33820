"""``res2net serve``: the Open Inference Protocol server (see res2net.deploy.server)."""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

from res2net.cli.helpfmt import HelpFormatter
from res2net.cli.options import add_model_arguments, add_runtime_arguments, chosen_weights

if TYPE_CHECKING:
    from res2net.deploy.server import ServeConfig

API_KEY_ENV = "RES2NET_API_KEY"
# ServeConfig's fields as this command's flags: its errors begin with the field's name.
FLAGS = {
    "port": "--port", "grpc_port": "--grpc-port", "max_batch_size": "--max-batch-size",
    "max_delay_ms": "--max-delay-ms", "max_queue": "--max-queue", "workers": "--workers",
    "timeout_s": "--timeout", "max_body_bytes": "--max-body-mb", "api_key": "--api-key",
}  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    p = subparsers.add_parser(
        "serve",
        help="serve a model over REST and gRPC (Open Inference Protocol v2) with a web page",
        description="Serve one Res2Net: Open Inference Protocol v2 over REST and gRPC "
        "(tritonclient, KServe), POST /v1/classify for encoded images, an upload page at /, "
        "Prometheus metrics at /metrics. Concurrent requests are batched together.",
        formatter_class=HelpFormatter,
    )
    add_model_arguments(
        p,
        model_help="registered name (see `res2net models`), an exported model (.onnx, .xml, .pt, "
        ".pt2, .pte), a PaddleClas inference model, or a .safetensors written by `res2net "
        "train`; files carry their own preprocessing and class names, and the model is served "
        "under its card's name",
        weights_help="with a registered --model: .pdparams / .safetensors / .pth or a PaddleClas "
        "inference model (or --pretrained, or --random-weights); alone: an exported model or a "
        "`res2net train` .safetensors",
        random_weights=True,
    )
    add_runtime_arguments(p)
    p.add_argument("--labels", help="label file (default: ImageNet's 1000 classes)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="REST port (default 8000; 0: any)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001; 0: any)")
    p.add_argument("--no-grpc", action="store_true", help="serve REST only")
    p.add_argument(
        "--max-batch-size",
        type=int,
        help="images per model call (default: the serving plan's rule, 4 for an exported file "
        "in OpenVINO or ONNX Runtime, else 8; see docs/serving.md)",
    )
    p.add_argument(
        "--max-delay-ms", type=float, default=5.0, help="wait for a batch to fill (default 5)"
    )
    p.add_argument(
        "--max-queue", type=int, default=64, help="waiting requests before 503 (default 64)"
    )
    p.add_argument(
        "--workers",
        type=int,
        help="model calls run at once, each on its own stream for an exported file in OpenVINO "
        "or ONNX Runtime (default: the serving plan's rule, OpenVINO's optimal stream count "
        "or one per core there, else 1; per process)",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="per-request seconds (default 60)")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="request body limit in MiB")
    p.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"require this key in X-API-Key (default: ${API_KEY_ENV}; none: open)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="server log verbosity",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns 0 after a graceful shutdown."""
    config = server_config(args)  # every flag checked before anything loads
    from res2net.deploy.server import build_service, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    weights = chosen_weights(args)
    service = build_service(
        args.model,
        weights,
        engine=args.engine,
        device=args.device,
        labels=args.labels,
        config=config,
        precision=args.precision,
    )
    serve(service, log_level=args.log_level)
    return 0


def server_config(args: argparse.Namespace) -> ServeConfig:
    """The :class:`ServeConfig` of the flags.

    :raises ValueError: naming the flag (not the config field) that is out of range.
    """
    from res2net.checks import check_number
    from res2net.deploy.server import ServeConfig

    # MiB -> bytes would overflow on inf and lose the flag's own words: checked as given.
    body_mb = check_number("--max-body-mb", args.max_body_mb, low=0, high=2**20,
                           low_inclusive=False)  # fmt: skip
    try:
        return ServeConfig(
            host=args.host,
            port=args.port,
            grpc_port=None if args.no_grpc else args.grpc_port,
            max_batch_size=args.max_batch_size,
            max_delay_ms=args.max_delay_ms,
            max_queue=args.max_queue,
            workers=args.workers,
            timeout_s=args.timeout,
            max_body_bytes=max(1, int(body_mb * 2**20)),
            api_key=args.api_key or None,
        )
    except ValueError as exc:
        field, _, rest = str(exc).partition(" ")
        if field not in FLAGS:
            raise
        raise ValueError(f"{FLAGS[field]} {rest}") from None
