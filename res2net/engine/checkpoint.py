"""Training checkpoints: atomic writes, exact resume, exported weights.

A checkpoint holds everything that decides what the next step computes: model, optimizer,
AMP scaler, EMA weights, every process's RNG state and the run's :class:`Progress` (epoch,
batch within it, optimizer steps taken; the learning rate is a function of the step). Files
of older versions also hold a ``"scheduler"`` entry, which nothing needs and is ignored.

Files are written to a temporary file in the same folder and renamed over the old one
(``os.replace`` is atomic on POSIX and Windows), so a crash mid-save leaves the previous
checkpoint intact. Files are read back with ``torch.load(weights_only=True)``: only
tensors and plain containers, never arbitrary pickled objects.
"""

from __future__ import annotations

import os
import random
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from res2net.engine.run_folder import BEST_WEIGHTS, FINAL_WEIGHTS, LAST  # noqa: F401


@dataclass
class Progress:
    """Where a run is: the epoch, the batch within it, the optimizer steps taken so far and
    the best validation top-1 (-1: not evaluated yet)."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_top1: float = -1.0


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


def save_training_state(
    path: Path,
    stateful: dict[str, Any],
    progress: Progress,
    *,
    history: list[dict[str, Any]],
    epoch_sums: torch.Tensor,
    config: dict[str, Any],
    world: int,
    write: bool,
) -> None:
    """Write a run's checkpoint to ``path`` (atomically).

    ``stateful`` maps names to objects with ``state_dict()`` (model, optimizer, scaler, EMA;
    None is stored as None); ``epoch_sums`` are the running sums of a checkpoint taken
    mid-epoch. Under torchrun every rank must call this (each one's RNG state is gathered
    into the file, so each continues its own stream); only the rank given ``write`` writes.
    """
    rngs = [rng_state()]
    if world > 1:
        rngs = [None] * world
        dist.all_gather_object(rngs, rng_state())
    if not write:
        return
    state = {name: obj.state_dict() if obj is not None else None for name, obj in stateful.items()}
    state.update(
        rng=rngs,
        epoch=progress.epoch,
        step_in_epoch=progress.step_in_epoch,
        global_step=progress.global_step,
        best_top1=progress.best_top1,
        history=history,
        epoch_sums=epoch_sums.cpu(),
        config=config,
    )
    atomic_torch_save(state, path)


def restore_training_state(
    path: str | Path, stateful: dict[str, Any], *, rank: int, world: int
) -> tuple[Progress, list[dict[str, Any]], torch.Tensor]:
    """Load :func:`save_training_state`'s file into ``stateful`` (None entries are skipped)
    and this rank's RNGs; returns the progress, the metrics history and the epoch sums.

    A file written by another number of processes still resumes, with a warning: the data
    order and augmentation cannot be those of the interrupted run.
    """
    state = load_checkpoint(path)
    _check_state(state, path, [name for name, obj in stateful.items() if obj is not None])
    for name, obj in stateful.items():
        if obj is not None:
            try:
                obj.load_state_dict(state[name])
            except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
                raise CheckpointError(
                    f"{path}: its {name!r} state does not fit this run "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''})"
                    "; resume with the config the checkpoint was written with"
                ) from None
    if len(state["rng"]) == world:
        set_rng_state(state["rng"][rank])
    else:
        warnings.warn(
            f"{path} was written by {len(state['rng'])} processes, this run has "
            f"{world}: resuming, but not exactly (other data order and augmentation)",
            stacklevel=3,
        )
    progress = Progress(
        state["epoch"], state["step_in_epoch"], state["global_step"], state["best_top1"]
    )
    return progress, state["history"], state["epoch_sums"]


class CheckpointError(ValueError):
    """A file given to resume from that is not a usable training checkpoint."""


# What save_training_state writes besides the stateful objects, and the type of each.
_ENTRIES = {
    "rng": list, "epoch": int, "step_in_epoch": int, "global_step": int,
    "best_top1": (int, float), "history": list, "epoch_sums": torch.Tensor,
}  # fmt: skip


def _check_state(state: Any, path: str | Path, names: list[str]) -> None:
    """Refuse a checkpoint that lacks an entry this run needs, or holds one of the wrong
    type, naming it (rather than failing deep in the resume with a KeyError)."""
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path}: holds a {type(state).__name__}, not a training checkpoint (a dict "
            "written by `res2net train`); resume from the last.pt a run wrote"
        )
    wanted = {**dict.fromkeys(names, dict), **_ENTRIES}
    missing = [key for key in wanted if key not in state]
    wrong = [key for key in wanted if key in state and not isinstance(state[key], wanted[key])]
    if missing or wrong or not state["rng"]:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"wrong type of {', '.join(wrong)}"] if wrong else []
        )
        raise CheckpointError(
            f"{path}: not a `res2net train` checkpoint ({'; '.join(problems) or 'no rng'}); "
            "resume from the last.pt a run wrote"
        )


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
    """Read a training checkpoint written by :func:`atomic_torch_save` (tensors only).

    :raises CheckpointError: a zip with compressed or oversized entries (never inflated).
    :raises RuntimeError: a file torch cannot read.
    """
    from res2net.weights.errors import WeightFileError
    from res2net.weights.io import check_torch_zip

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found; nothing to resume from")
    try:
        # Before torch inflates anything: a compressed entry (a zip bomb) is refused.
        check_torch_zip(path)
    except WeightFileError as exc:
        raise CheckpointError(f"{exc}; resume from the last.pt a run wrote") from None
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
