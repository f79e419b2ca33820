"""Exact parameter and FLOP counts of a Res2Net: shipped for the registry, counted otherwise.

Counting runs the network under ``torch.utils.flop_counter`` on the ``meta`` device: no
memory and no arithmetic, but it imports torch and takes about half a second per network,
which made ``res2net models`` (17 networks) take 12 s on first use. The counts of every
registered network are therefore shipped with the package in ``counts.json`` (regenerate it
with ``scripts/count_models.py``; a test recounts every entry and compares). Any
other network (a training file's own width or class count) is counted once and kept in
``model_counts.json`` in the weight cache folder, keyed by everything that decides it: the
architecture, the input side, the class count and the torch version (whose operator
decompositions the counter sees). A missing, unreadable or unwritable cache only means
counting again.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict
from functools import cache
from pathlib import Path

from res2net.models.config import Res2NetConfig

COUNTS_FILE = "model_counts.json"
SHIPPED_FILE = Path(__file__).with_name("counts.json")
_memory: dict[str, list[float]] = {}


def count_network(
    config: Res2NetConfig, image_size: int = 224, num_classes: int = 1000
) -> tuple[int, float]:
    """Exact trainable parameters and GFLOPs (2 x multiply-accumulates), counted now.

    FLOPs come from PyTorch's own operator-level counter (``torch.utils.flop_counter``),
    which counts convolutions and matrix products as 2 x MACs, the convention of
    PaddleClas's table. The model is built on the ``meta`` device: no memory, no compute.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from res2net.models.res2net import Res2Net

    with torch.device("meta"):
        model = Res2Net(config, num_classes=num_classes).eval()
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        x = torch.empty(1, 3, image_size, image_size)
        with FlopCounterMode(display=False) as counter:
            model(x)
    return params, counter.get_total_flops() / 1e9


def shape_key(config: Res2NetConfig, image_size: int = 224, num_classes: int = 1000) -> str:
    """The key of one count in the shipped table: architecture, input side and classes."""
    arch = json.dumps(asdict(config), sort_keys=True)
    return f"{image_size}px | {num_classes} classes | {arch}"


def count_key(config: Res2NetConfig, image_size: int = 224, num_classes: int = 1000) -> str:
    """The cache key of one count: :func:`shape_key` plus the torch version that counted."""
    from importlib.metadata import version

    return f"torch {version('torch')} | {shape_key(config, image_size, num_classes)}"


@cache
def shipped_counts() -> dict[str, list[float]]:
    """The counts shipped with the package (``counts.json``): shape key -> [params, GFLOPs]."""
    return json.loads(SHIPPED_FILE.read_text())["counts"]


def _cache_file() -> Path:
    # The registry already defers to the weight hub for the cache folder (create_model).
    from res2net.weights.hub import resolve_cache_dir

    return resolve_cache_dir() / COUNTS_FILE


def _read_cache(path: Path) -> dict[str, list[float]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict[str, list[float]]) -> None:
    # Written whole to a temporary file and renamed: a reader never sees half a file.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".counts-", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache folder: count again next time


def count_model(
    config: Res2NetConfig, image_size: int = 224, num_classes: int = 1000
) -> tuple[int, float]:
    """:func:`count_network`'s figures: from the shipped table for a registered network,
    else from the on-disk cache when this exact count was made before (see the module
    docstring), else counted now and added to the cache."""
    shipped = shipped_counts().get(shape_key(config, image_size, num_classes))
    if shipped is not None:
        return int(shipped[0]), float(shipped[1])
    key = count_key(config, image_size, num_classes)
    path = _cache_file()
    if key not in _memory:
        _memory.update(_read_cache(path))
    if key in _memory:
        params, gflops = _memory[key]
        return int(params), float(gflops)
    params, gflops = count_network(config, image_size, num_classes)
    _memory[key] = [params, gflops]
    _write_cache(path, {**_read_cache(path), key: [params, gflops]})
    return params, gflops


def write_shipped_counts(configs: Iterable[Res2NetConfig], path: Path = SHIPPED_FILE) -> None:
    """Counts ``configs`` now (224 px, 1000 classes) and writes them as the shipped table;
    ``scripts/count_models.py`` calls it with the registry after a model is added."""
    from importlib.metadata import version

    counts = {shape_key(config): list(count_network(config)) for config in configs}
    body = {"counted_with": f"torch {version('torch')}", "counts": counts}
    path.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
