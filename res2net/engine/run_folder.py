"""The files of a training run's output folder, and the record a finished run leaves there.

Resuming a run that has nothing left to do (``res2net train --resume`` after the last epoch)
used to import torch, build the model and the data loaders and restore ``last.pt`` only to
find the loop already done: 16 s. A finished run therefore writes ``finished.json``: its
configuration, its history and the size and time of the ``last.pt`` it ended with. When
the configuration is the same and ``last.pt`` is still that file, the run is done and its
summary comes from the record, without torch. Any difference (another config, a newer
checkpoint, a missing file) means resuming for real.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAST = "last.pt"
BEST_WEIGHTS = "best.safetensors"
FINAL_WEIGHTS = "final.safetensors"
FINISHED = "finished.json"


@dataclass
class FinishedRun:
    """A finished run as its record tells it (the fields the summary of ``train`` reads)."""

    out_dir: Path
    final_weights: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    best_top1: float = 0.0
    global_step: int = 0


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def write_finished(run: FinishedRun, config: dict[str, Any]) -> Path | None:
    """Record ``run`` (trained with ``config``, as :func:`config_to_dict` gives it) as done.

    Without a ``last.pt`` to tie the record to (a run that saved none) nothing is written:
    a later ``--resume`` then resumes for real.
    """
    if not (run.out_dir / LAST).exists():
        return None
    record = {
        "config": config,
        "history": run.history,
        "best_top1": run.best_top1,
        "global_step": run.global_step,
        "final_weights": run.final_weights.name,
        "last": _stamp(run.out_dir / LAST),
        "final": _stamp(run.final_weights),
    }
    path = run.out_dir / FINISHED
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
    return path


def finished_run(out_dir: Path, config: dict[str, Any], resume: Path) -> FinishedRun | None:
    """The run in ``out_dir`` when resuming it from ``resume`` has nothing left to do: its
    record exists, was written with this ``config``, and ``resume`` and the final weights are
    the files the run ended with. Otherwise None."""
    try:
        record = json.loads((out_dir / FINISHED).read_text())
        final = out_dir / record["final_weights"]
        same_files = (
            Path(resume).resolve() == (out_dir / LAST).resolve()
            and _stamp(Path(resume)) == record["last"]
            and _stamp(final) == record["final"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not same_files or record["config"] != json.loads(json.dumps(config)):
        return None
    return FinishedRun(out_dir, final, record["history"], record["best_top1"],
                       record["global_step"])  # fmt: skip
