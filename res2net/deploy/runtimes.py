"""Inference runtimes behind one interface: a callable from a float32 NCHW batch to logits.

Every engine takes the same input (``numpy.ndarray``, N x 3 x H x W, float32, already
preprocessed) and returns ``numpy.ndarray`` logits (N x classes, float32), so the
predictor, the server and the benchmark never care which engine runs underneath.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn


class Runtime(Protocol):
    """A loaded model in some engine."""

    engine: str

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a preprocessed float32 N x 3 x H x W batch."""
        ...


class EagerRuntime:
    """Plain PyTorch eager execution (the numerical reference for every other engine)."""

    engine = "eager"

    def __init__(self, model: nn.Module, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        return self.model(x).float().cpu().numpy()


ENGINES = {"eager": EagerRuntime}


def available_engines() -> list[str]:
    """Engines whose libraries are importable here."""
    return list(ENGINES)


def create_runtime(model: nn.Module, engine: str = "eager", *, device: str = "cpu") -> Runtime:
    """Wrap a (weights-loaded) model in the named engine.

    :raises ValueError: unknown engine, naming the available ones.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; available: {', '.join(available_engines())}")
    return ENGINES[engine](model, device=device)
