"""Argument blocks that several subcommands share, and the numeric flag types.

Not a subcommand (``COMMANDS`` does not name it). Each concept has one flag name everywhere
(``--num-workers``, not ``--workers`` in one command and ``--num-workers`` in another); an
older spelling stays accepted as an alias. Every number a flag takes goes through
:func:`res2net.checks.check_number` as argparse parses it, so a bad value is argparse's
one-line ``error: argument --flag: ...`` and exit 2, before anything is loaded.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from res2net.checks import check_number

# Upper bounds of flags that size an allocation or a loop; generous, but finite.
MAX_BATCH = 4096
MAX_WORKERS = 256
MAX_CLASSES = 100_000
MAX_ACTORS = 1024


def number(
    low: float | None = None, high: float | None = None, *, integer: bool = False
) -> Callable[[str], int | float]:
    """An argparse ``type=``: the text as a number checked by ``check_number``."""

    def parse(text: str) -> int | float:
        return _parse_number(text, low, high, integer)

    parse.__name__ = "whole number" if integer else "number"  # argparse's fallback wording
    return parse


def number_list(
    low: float | None = None, high: float | None = None, *, integer: bool = False
) -> Callable[[str], list]:
    """An argparse ``type=`` for ``N[,N...]``: each item checked as :func:`number` does."""

    def parse(text: str) -> list:
        items = [part.strip() for part in text.split(",") if part.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"give at least one number, got {text!r}")
        return [_parse_number(item, low, high, integer) for item in items]

    parse.__name__ = "list of numbers"
    return parse


def _parse_number(text: str, low: float | None, high: float | None, integer: bool):
    try:
        value: int | float = int(text) if integer else float(text)
    except ValueError:
        try:  # "1.5" or "1e3" for a count: say it must be whole, not "invalid int"
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
    try:
        return check_number("", value, low=low, high=high, integer=integer)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).strip()) from None


def add_model_arguments(
    p: argparse.ArgumentParser,
    *,
    model_help: str,
    weights_help: str,
    alternative: str = "--pretrained",
    alternative_help: str = "download and cache the published weights",
    random_weights: bool = False,
) -> None:
    """``--model``, and ``--weights`` or (exclusive with it) ``alternative``
    (``--pretrained`` or ``--random-weights``) as a flag; ``random_weights`` adds
    ``--random-weights`` beside ``--pretrained`` (see :func:`chosen_weights`)."""
    p.add_argument("--model", help=model_help)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--weights", help=weights_help)
    source.add_argument(alternative, action="store_true", help=alternative_help)
    if random_weights:  # running a network: random weights only when asked for
        source.add_argument(
            "--random-weights",
            action="store_true",
            help="with a registered --model: run it with random weights (meaningless "
            "predictions; to try the pipeline without downloading anything)",
        )


def chosen_weights(args: argparse.Namespace) -> str | bool | None:
    """The weights that ``--weights`` / ``--pretrained`` / ``--random-weights`` chose, as
    ``Predictor`` takes them; a registered ``--model`` with none of the three is refused, so
    that random weights run only when asked for."""
    from res2net.resolve import is_registered

    if args.pretrained:
        return True
    if args.weights is None and is_registered(args.model) and not args.random_weights:
        raise ValueError(
            f"--model {args.model} needs weights: give --weights FILE, --pretrained (download "
            "the published weights) or --random-weights (meaningless predictions, to try the "
            "pipeline)"
        )
    return args.weights


def add_runtime_arguments(p: argparse.ArgumentParser) -> None:
    """``--engine``, ``--device`` and ``--precision`` of the commands that run a Predictor."""
    p.add_argument(
        "--engine",
        default="auto",
        help="runtime, or auto: the fastest installed for --precision; engines that run here: "
        "%(engines)s",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="fp32 (IEEE on every engine), bf16 (PyTorch engines; openvino on AVX512-BF16/AMX "
        "CPUs) or fp16 (GPU only)",
    )


def add_loader_arguments(p: argparse.ArgumentParser, *, batch_size: int, workers_help: str):
    """``--batch-size`` and ``--num-workers`` (alias ``--workers``)."""
    p.add_argument(
        "--batch-size",
        type=number(1, MAX_BATCH, integer=True),
        default=batch_size,
        help="images per model call",
    )
    p.add_argument(
        "--num-workers",
        "--workers",
        dest="num_workers",
        type=number(0, MAX_WORKERS, integer=True),
        default=2,
        help=workers_help,
    )


def add_ray_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup, *, what: str):
    """``--ray [ADDRESS]`` and ``--actors``: run ``what`` on a Ray cluster."""
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help=f"{what} on Ray: no value starts a local instance; 'auto' or HOST:PORT joins a "
        "cluster",
    )
    p.add_argument(
        "--actors",
        type=number(1, MAX_ACTORS, integer=True),
        default=1,
        help="model replicas on Ray",
    )


def add_num_classes_argument(p: argparse.ArgumentParser, *, help_text: str) -> None:
    """``--num-classes``: the classifier's size, 1 to :data:`MAX_CLASSES`."""
    p.add_argument("--num-classes", type=number(1, MAX_CLASSES, integer=True), help=help_text)
