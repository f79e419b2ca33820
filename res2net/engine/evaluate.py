"""Evaluation: top-1 / top-5 accuracy and loss of a classifier on a labelled image set.

Counts are accumulated on the device (no host sync per batch) and, under torchrun, summed
over all processes, each of which evaluates a disjoint shard of the data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from res2net.card import ModelCard, read_training_metadata
from res2net.data.datasets import build_dataset, collate_skipping
from res2net.engine.distill import agreement
from res2net.resolve import check_training_export, identify, model_from_weights, open_model

# model_from_weights, check_training_export and read_training_metadata live below the engine
# (res2net.resolve, res2net.card); they stay importable here for existing callers.
__all__ = [
    "check_training_export", "evaluate", "evaluate_folder", "evaluation_model",
    "model_from_weights", "read_training_metadata",
]  # fmt: skip


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str = "cpu",
    *,
    teacher: nn.Module | None = None,
    channels_last: bool = False,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Top-1, top-5 (as fractions), mean cross-entropy and image count over ``loader``.

    With a ``teacher``, also ``agreement``: the fraction of images where the model's top
    class is the teacher's. Under ``torch.distributed`` the counts of all ranks are summed.
    """
    device = torch.device(device)
    model.eval()
    # loss sum, images, top-1 hits, top-5 hits, teacher agreement, corrupt images skipped
    sums = torch.zeros(6, dtype=torch.float64, device=device)
    for images, labels, skipped in loader:
        sums[5] += skipped
        if images.numel() == 0:
            continue
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images).float()
            teacher_logits = teacher(images).float() if teacher is not None else None
        k = min(5, logits.shape[1])
        topk = logits.topk(k, dim=1).indices
        hits = topk == labels[:, None]
        sums[0] += F.cross_entropy(logits, labels, reduction="sum")
        sums[1] += labels.numel()
        sums[2] += hits[:, 0].sum()
        sums[3] += hits.any(dim=1).sum()
        if teacher_logits is not None:
            sums[4] += agreement(logits, teacher_logits)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    loss, n, top1, top5, agree, skipped = sums.tolist()
    if n == 0:
        raise ValueError("evaluation data is empty (every image failed to decode?)")
    result = {"loss": loss / n, "top1": top1 / n, "top5": top5 / n, "images": int(n)}
    if teacher is not None:
        result["agreement"] = agree / n
    if skipped:
        result["skipped"] = int(skipped)
    return result


class RuntimeModule(nn.Module):
    """A runtime (numpy in, logits out) seen as a module, so that :func:`evaluate` runs an
    exported model as it runs a network; an export made with softmax gives log-probabilities
    (the same ranking and, through softmax, the same probabilities)."""

    def __init__(self, runtime: Any, num_classes: int, probabilities: bool = False) -> None:
        super().__init__()
        self.runtime = runtime
        self.num_classes = num_classes
        self.probabilities = probabilities

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = torch.from_numpy(self.runtime(images.detach().cpu().float().contiguous().numpy()))
        if self.probabilities:
            out = out.clamp_min(torch.finfo(torch.float32).tiny).log()
        return out.to(images.device)


def evaluation_model(
    name: str | os.PathLike | None,
    weights: str | os.PathLike | None,
    pretrained: bool = False,
    device: str = "cpu",
) -> tuple[nn.Module, ModelCard]:
    """The model :func:`evaluate_folder` runs and its card: an exported model (named by
    ``name`` or ``weights``) in its own runtime, else the network of a registered name or a
    ``res2net train`` file (:func:`res2net.resolve.model_from_weights`).

    :raises ValueError: a registered name without weights and not ``pretrained``; anything
        that is not a model (:class:`res2net.resolve.ModelSourceError`).
    """
    if name is None and weights is None:
        raise ValueError("give a registered model name, a weights file, or both")
    source = identify(name, True if pretrained and not weights else weights)
    if source.kind == "export":
        card, runtime = open_model(source, device=device)
        outputs = (getattr(runtime, "metadata", None) or {}).get("output")
        return RuntimeModule(runtime, card.num_classes, outputs == "probabilities"), card
    if source.kind == "registered" and source.weights is False:
        raise ValueError(
            f"{name}: no weights given; pass weights=FILE, or pretrained=True for the "
            "published ones"
        )
    model, card = model_from_weights(weights, None if source.kind == "training" else name,
                                     pretrained)  # fmt: skip
    return model.to(device), card


def evaluate_folder(
    data: str | Path,
    *,
    name: str | os.PathLike | None = None,
    weights: str | Path | None = None,
    pretrained: bool = False,
    list_file: str | Path | None = None,
    batch_size: int = 64,
    num_workers: int = 2,
    device: str = "cpu",
) -> dict[str, float]:
    """Evaluate a model on an ImageFolder (or a PaddleClas list file) with its own eval
    preprocessing: the registry entry's for a registered model, the training config's for
    weights written by ``res2net train``, the metadata's for an exported model (``name`` or
    ``weights`` an ``.onnx``, ``.xml``, ``.pt``, ``.pt2`` or ``.pte``, run in its own runtime).
    Returns :func:`evaluate`'s dict."""
    from res2net.data.transforms import eval_transform

    model, card = evaluation_model(name, weights, pretrained, device)
    transform = eval_transform(card.preprocess)
    num_classes = getattr(model, "num_classes", None) or None
    dataset = build_dataset(data, transform, list_file, num_classes=num_classes)
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_skipping
    )
    return evaluate(model, loader, device)
