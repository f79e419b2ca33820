"""Timing that a shared, noisy machine cannot bias: warm-up, then engines in turns.

A VM like the one these figures come from flips between speed regimes about 2x apart, so
the engines of one comparison are built and warmed up first and then timed round-robin, a
few calls each per turn (:func:`time_round_robin`): a slow spell hits every engine alike
instead of whichever happened to run then. A contender whose runtime times itself (a peer
in another process, answering "time N calls") takes its turns the same way.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def time_calls(fn: Callable[[], Any], warmup: int, iters: int) -> list[float]:
    """Wall times in ms of ``iters`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so each engine gets its own peak.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mib() -> float | None:
    """This process's peak resident memory since the last reset (Linux), in MiB."""
    return _status_mib("VmHWM")


def rss_mib() -> float | None:
    """This process's resident memory now (Linux), in MiB."""
    return _status_mib("VmRSS")


def random_batch(batch: int, side: int = 224) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, 3, side, side), dtype=np.float32)


def agreement(out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(share of images with the same top-1, largest |out - ref| / max|ref| of an image)."""
    same = float((out.argmax(1) == ref.argmax(1)).mean())
    rel = np.abs(out - ref).max(axis=1) / np.abs(ref).max(axis=1)
    return same, float(rel.max())


def logits_in_chunks(runtime: Any, photos: np.ndarray, size: int) -> np.ndarray:
    """Logits of ``photos``, ``size`` at a time (the last chunk padded), so the runtime
    sees only a batch shape it was warmed up with (``compile`` specialises per shape)."""
    out = []
    for start in range(0, len(photos), size):
        chunk = photos[start : start + size]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])
        out.append(np.asarray(runtime(padded), dtype=np.float32)[: len(chunk)])
    return np.concatenate(out)


@dataclass
class Contender:
    """One engine of one model, built and warmed up, waiting for its timed turns."""

    engine: str
    precision: str
    runtime: Any
    peak_rss_mib: float | None
    times: dict[int, list[float]]
    device: str = "cpu"
    peak_gpu_mib: float | None = None
    # (share of photos with the same top-1, largest relative logit difference) vs FP32.
    accuracy: tuple[float, float] | None = None
    # With decoding + preprocessing timed: per call, that part and the model call after it.
    e2e: dict[int, list[float]] = field(default_factory=dict)
    # A comparison peer (not one of our engines).
    peer: bool = False
    # Whether it computes our function with our weights (so its reduced precisions are
    # checked against our FP32, and the published top-1 of the model applies at FP32).
    same_function: bool = True

    def timed(self, x: np.ndarray, warmup: int, n: int) -> list[float]:
        """Times in ms of ``n`` calls on ``x``'s batch size after ``warmup`` untimed ones.

        A runtime with its own ``time_calls(batch, warmup, n)`` (a peer in another process)
        times itself, on its own random batch of that size: the figure is its call alone,
        without the pipe between the processes.
        """
        if hasattr(self.runtime, "time_calls"):
            return self.runtime.time_calls(len(x), warmup, n)
        return time_calls(self.caller(x), warmup, n)

    def caller(self, x: np.ndarray) -> Callable[[], Any]:
        """One timed call on ``x``: numpy in and out on the CPU (and for engines that only
        take numpy); for the PyTorch engines on a GPU the batch is copied to the card once,
        and the call waits for the card to finish."""
        if not (self.device.startswith("cuda") and hasattr(self.runtime, "device_call")):
            return lambda: self.runtime(x)
        import torch

        on_card = self.runtime.device_input(x)

        def call() -> None:
            self.runtime.device_call(on_card)
            torch.cuda.synchronize(self.device)

        return call


def time_round_robin(
    contenders: Sequence[Contender],
    batch_sizes: Sequence[int],
    iters: int,
    inputs: Callable[[int], Callable[[], np.ndarray]] | None = None,
    side: int = 224,
) -> None:
    """Time ``iters`` calls of each contender per batch size, taking turns.

    Each turn is one untimed call (it wakes the engine's thread pool, which another engine
    may have left asleep) then a few timed ones, so a slow spell of a shared machine hits
    every engine alike instead of whichever happened to run then.

    :param inputs: batch size -> a function making a model input from real photos. Each
        timed call then first decodes + preprocesses (timed apart), then runs the model on
        what it made: ``e2e`` holds their sums, so an e2e figure is never below the model's.
    :param side: the random input's height and width: the model's own input size.
    """
    per_turn = max(1, iters // 10)
    for batch in batch_sizes:
        x = random_batch(batch, side)
        make = inputs(batch) if inputs else None
        while any(len(c.times[batch]) < iters for c in contenders):
            for c in contenders:
                left = iters - len(c.times[batch])
                if left <= 0:
                    continue
                if make is None or hasattr(c.runtime, "time_calls"):
                    # Model only (a self-timing peer takes no decoded photos).
                    c.times[batch] += c.timed(x, 1, min(per_turn, left))
                    continue
                c.caller(x)()  # untimed, as above
                for _ in range(min(per_turn, left)):
                    start = time.perf_counter()
                    call = c.caller(make())
                    made = time.perf_counter()
                    call()
                    end = time.perf_counter()
                    c.times[batch].append((end - made) * 1e3)
                    c.e2e.setdefault(batch, []).append((end - start) * 1e3)
