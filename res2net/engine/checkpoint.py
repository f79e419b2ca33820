"""Training checkpoints: atomic writes, exact resume, exported weights.

A checkpoint holds everything that decides what the next step computes: model, optimizer,
schedule position, AMP scaler, EMA weights, every RNG state and the data position (epoch and
batch within it). Files are written to a temporary file in the same folder and renamed over
the old one (``os.replace`` is atomic on POSIX and Windows), so a crash mid-save leaves the
previous checkpoint intact. Files are read back with ``torch.load(weights_only=True)``: only
tensors and plain containers, never arbitrary pickled objects.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

LAST = "last.pt"
BEST_WEIGHTS = "best.safetensors"
FINAL_WEIGHTS = "final.safetensors"


def rng_state() -> dict[str, Any]:
    """The state of every random generator training draws from (torch, CUDA, numpy, python)."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        # numpy's state holds arrays; store them as tensors so weights_only loading accepts it.
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npst["bit_generator"],
            "state": {"key": npst["key"].numpy().astype(np.uint32), "pos": npst["pos"]},
            "has_gauss": npst["has_gauss"],
            "gauss": npst["gauss"],
        }
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file beside ``path``, then rename it over ``path``.

    If anything fails before the rename, the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint written by :func:`atomic_torch_save` (tensors only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found; nothing to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise RuntimeError(f"{path}: not a readable training checkpoint ({exc})") from exc


def export_weights(model: torch.nn.Module, path: str | Path, metadata: dict[str, str]) -> Path:
    """Write the model's weights as ``.safetensors`` (timm key names, atomically).

    The file loads with ``res2net.create_model(name, pretrained=path)`` or
    ``res2net.load_weights``.
    """
    from res2net.weights.io import save_safetensors

    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    return save_safetensors(state, path, metadata=metadata)
