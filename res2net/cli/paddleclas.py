"""``--config`` / ``-o`` for ``res2net eval`` and ``predict``: a PaddleClas YAML fills the flags.

PaddleClas's ``tools/eval.py`` and ``tools/infer.py`` take everything from the training
config (``-c``, with ``-o`` overrides). Here the same file fills the flags a user did not give
(a flag given explicitly wins); what it says is read by
:mod:`res2net.engine.paddleclas_config`.
"""

from __future__ import annotations

import argparse

# flag dest -> key of paddleclas_eval_settings / paddleclas_predict_settings
_EVAL_FLAGS = {
    "model": "name", "weights": "weights", "pretrained": "pretrained", "data": "data",
    "list_file": "list_file", "batch_size": "batch_size", "num_workers": "num_workers",
    "device": "device",
}  # fmt: skip
_PREDICT_FLAGS = {
    "model": "name", "weights": "weights", "pretrained": "pretrained", "inputs": "images",
    "batch_size": "batch_size", "topk": "topk", "labels": "labels",
    "num_classes": "num_classes", "device": "device",
}  # fmt: skip


def add_paddleclas_override_argument(p: argparse.ArgumentParser) -> None:
    """``-o Section.key=value``: PaddleClas's own override form, for PaddleClas configs."""
    p.add_argument(
        "-o",
        "--override",
        dest="paddleclas_overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a key of a PaddleClas config as PaddleClas's -o does, e.g. "
        "-o Global.epochs=2 -o DataLoader.Train.sampler.batch_size=32 (repeatable)",
    )


def add_paddleclas_config_arguments(p: argparse.ArgumentParser) -> None:
    """``--config`` and ``-o``; call last in ``register`` (it records the other defaults)."""
    p.add_argument(
        "--config",
        metavar="PADDLECLAS.yaml",
        help="a PaddleClas training config: its Arch, Global.pretrained_model and "
        "DataLoader.Eval / Infer sections fill the flags not given",
    )
    add_paddleclas_override_argument(p)
    flags = {**_EVAL_FLAGS, **_PREDICT_FLAGS}
    p.set_defaults(paddleclas_defaults={d: p.get_default(d) for d in flags})


def apply_paddleclas_config(args: argparse.Namespace, command: str) -> None:
    """Fill ``args`` from ``args.config`` for ``command`` ("eval" or "predict"), in place."""
    from res2net.engine import paddleclas_config as pc

    if args.config is None:
        if args.paddleclas_overrides:
            raise ValueError("-o overrides keys of a PaddleClas config: give --config FILE")
        return
    if command == "eval":
        settings = pc.paddleclas_eval_settings(args.config, args.paddleclas_overrides)
        flags = _EVAL_FLAGS
    else:
        settings = pc.paddleclas_predict_settings(args.config, args.paddleclas_overrides)
        flags = _PREDICT_FLAGS
        if isinstance(settings["images"], str):
            settings["images"] = [settings["images"]]
    defaults = args.paddleclas_defaults
    # --weights / --pretrained are one choice: given either, the config's is not taken
    chosen = args.weights != defaults["weights"] or args.pretrained != defaults["pretrained"]
    for dest, key in flags.items():
        current = getattr(args, dest)
        if chosen and dest in ("weights", "pretrained"):
            continue
        if current == defaults[dest] or current == []:
            setattr(args, dest, settings[key])
