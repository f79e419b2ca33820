"""PaddleClas ``.pdparams`` files: a pickle reader that runs no code, and the name map.

``paddle.save`` writes a pickle of ``{structured name: numpy array}`` plus a bookkeeping
entry ``StructuredToParameterName@@``. A pickle can name any importable callable and have
it called (``os.system`` ...), so the reader below resolves only the handful of numpy
globals an array needs and refuses everything else before it is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from res2net.models.res2net import Res2Net

LEGACY_NAMES_KEY = "StructuredToParameterName@@"

# (module, name) pairs a numpy-array pickle needs. numpy 1.x writes numpy.core.*, numpy 2.x
# numpy._core.*; protocol-2 pickles encode bytes through _codecs.encode.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """A weight file asked to load something a weight file never needs."""


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._path}: refused to load {module}.{name} from this pickle. A .pdparams "
            "weight file holds only numpy arrays; this one names other code, which was NOT "
            "run. Do not use this file; download the weights again from a trusted source."
        )

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._path}: pickle uses persistent ids; not a .pdparams file")


def read_pdparams(path: str | Path) -> dict[str, np.ndarray]:
    """Read a PaddlePaddle ``.pdparams`` file without Paddle and without running its code.

    :returns: structured parameter name -> float32 (or other) numpy array; Paddle's
        legacy-name table is dropped.
    :raises UnsafePickleError: the pickle names anything but numpy array reconstruction.
    :raises ValueError: the file is empty, truncated, not a pickle, or not a dict of arrays.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data:
        raise ValueError(f"{path}: file is empty (0 bytes); download it again")
    if data[:1] != b"\x80":
        raise ValueError(
            f"{path}: not a .pdparams file (no pickle header; starts with {data[:8]!r}). "
            "Expected a file written by paddle.save."
        )
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(data), path).load()
    except UnsafePickleError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError) as exc:
        raise ValueError(
            f"{path}: unreadable or truncated .pdparams file ({type(exc).__name__}: {exc}); "
            "download it again"
        ) from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict of arrays, found {type(obj).__name__}")
    obj.pop(LEGACY_NAMES_KEY, None)
    bad = [k for k, v in obj.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise ValueError(f"{path}: entries that are not arrays: {', '.join(map(str, bad[:5]))}")
    return obj


_BN_SUFFIX = {
    "weight": "weight",
    "bias": "bias",
    "running_mean": "_mean",
    "running_var": "_variance",
}


def _stage_letters(depth: int, deep_stem: bool, stage: int, index: int) -> str:
    """PaddleClas's block letters: res4a, res4b1, res4b2 ... in deep networks' third stage."""
    deep_nets = (101, 152, 200) if deep_stem else (101, 152)
    if depth in deep_nets and stage == 2:
        return "a" if index == 0 else f"b{index}"
    return chr(ord("a") + index)


def paddle_names(model: Res2Net) -> dict[str, str]:
    """Map each of ``model``'s state-dict keys (timm layout) to its PaddleClas name.

    BatchNorm ``num_batches_tracked`` buffers have no Paddle counterpart and are left out.
    """
    cfg = model.config
    # Module path (ours) -> Paddle layer prefix and kind ("conv", "bn" or "fc").
    modules: dict[str, tuple[str, str]] = {}
    if cfg.deep_stem:
        for ours, paddle_layer in (("0", "conv1_1"), ("3", "conv1_2"), ("6", "conv1_3")):
            modules[f"conv1.{ours}"] = (paddle_layer, "conv")
        modules["conv1.1"] = ("conv1_1", "bn")
        modules["conv1.4"] = ("conv1_2", "bn")
        modules["bn1"] = ("conv1_3", "bn")
    else:
        modules["conv1"] = ("conv1", "conv")
        modules["bn1"] = ("conv1", "bn")
    for s, stage in enumerate(model.stages):
        for i, block in enumerate(stage):
            ours, theirs = f"layer{s + 1}.{i}", f"bb_{s}_{i}"
            letters = _stage_letters(cfg.depth, cfg.deep_stem, s, i)
            for a, b, paddle_layer in (("conv1", "bn1", "conv0"), ("conv3", "bn3", "conv2")):
                modules[f"{ours}.{a}"] = (f"{theirs}.{paddle_layer}", "conv")
                modules[f"{ours}.{b}"] = (f"{theirs}.{paddle_layer}", "bn")
            for k in range(len(block.convs)):
                branch = f"{theirs}.res{s + 2}{letters}_branch2b_{k + 1}"
                modules[f"{ours}.convs.{k}"] = (branch, "conv")
                modules[f"{ours}.bns.{k}"] = (branch, "bn")
            if block.downsample is not None:
                # The shortcut's conv and BN are the last two modules of the Sequential.
                n = len(block.downsample)
                modules[f"{ours}.downsample.{n - 2}"] = (f"{theirs}.short", "conv")
                modules[f"{ours}.downsample.{n - 1}"] = (f"{theirs}.short", "bn")
    modules["fc"] = ("out", "fc")

    names: dict[str, str] = {}
    for key in model.state_dict():
        module_path, _, attr = key.rpartition(".")
        if attr == "num_batches_tracked":
            continue
        if module_path not in modules:
            raise KeyError(f"no PaddleClas name for {key}")
        prefix, kind = modules[module_path]
        if kind == "conv":
            names[key] = f"{prefix}._conv.{attr}"
        elif kind == "bn":
            names[key] = f"{prefix}._batch_norm.{_BN_SUFFIX[attr]}"
        else:
            names[key] = f"{prefix}.{attr}"
    return names
