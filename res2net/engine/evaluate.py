"""Evaluation: top-1 / top-5 accuracy and loss of a classifier on a labelled image set.

Counts are accumulated on the device (no host sync per batch) and, under torchrun, summed
over all processes, each of which evaluates a disjoint shard of the data.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from res2net.card import ModelCard, card_of, read_training_metadata, training_card
from res2net.data.datasets import build_dataset, collate_skipping
from res2net.engine.distill import agreement
from res2net.models.registry import get_entry
from res2net.weights.errors import WeightFileError

__all__ = ["evaluate", "evaluate_folder", "model_from_weights", "read_training_metadata"]


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


def model_from_weights(
    weights: str | Path | None, name: str | None = None, pretrained: bool = False
) -> tuple[nn.Module, ModelCard]:
    """A model for evaluation, and the card that says how to feed it.

    ``name`` is a registered model; without it the architecture comes from the card that
    :func:`res2net.engine.train.train` writes into its ``.safetensors`` exports (whose
    preprocessing and class names then win over the registry's). The class count is read
    from the file's classifier.
    """
    from res2net.builder import build_model

    card = training_card(weights) if weights else None
    if card is not None:
        check_training_export(weights, card)
    if name is None:
        if card is None:
            raise ValueError(
                f"{weights}: no architecture in its metadata (not written by `res2net train`); "
                "name the registered model it belongs to (argument name)"
            )
        return build_model(card).eval(), card
    num_classes = _classes_in_file(weights) if weights else 1000
    entry = replace(card_of(get_entry(name)), num_classes=num_classes)
    source: bool | str = str(weights) if weights else pretrained
    model = build_model(entry, weights=source, skip_head=False)
    return model.eval(), card or entry


def _classes_in_file(path: str | Path) -> int:
    from res2net.weights.io import read_weight_file

    state, _, _ = read_weight_file(path)
    for key in ("fc.weight", "out.weight"):
        if key in state:
            # PaddleClas stores Linear weights as [in, out]; ours are [out, in].
            return int(state[key].shape[1 if key == "out.weight" else 0])
    raise ValueError(f"{path}: no classifier weights (fc.weight / out.weight) in the file")


def check_training_export(path: str | Path, card: ModelCard) -> None:
    """Check that a training export's architecture matches the file's tensors before a
    network is built from it (a shape-only network on the meta device). Its card's fields
    were checked when it was read (:func:`res2net.card.training_card`).

    :raises WeightFileError: naming the file and the first differing tensors.
    """
    from safetensors import safe_open

    from res2net.models.res2net import Res2Net

    with torch.device("meta"):
        shapes = Res2Net(card.config, num_classes=card.num_classes)
    wanted = {k: tuple(v.shape) for k, v in shapes.state_dict().items()}
    with safe_open(str(path), framework="pt") as fh:
        found = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    wanted = {k: v for k, v in wanted.items() if not k.endswith("num_batches_tracked")}
    found = {k: v for k, v in found.items() if not k.endswith("num_batches_tracked")}
    if wanted != found:
        odd = sorted(set(wanted.items()) ^ set(found.items()))[:3]
        raise WeightFileError(
            f"{path}: not a valid `res2net train` export: the architecture in its metadata "
            "does not match the tensors in the file (first differences: "
            f"{', '.join(f'{k} {s}' for k, s in odd)}). Re-export it with `res2net train`, or "
            "name the registered model it belongs to."
        )


def evaluate_folder(
    data: str | Path,
    *,
    name: str | None = None,
    weights: str | Path | None = None,
    pretrained: bool = False,
    list_file: str | Path | None = None,
    batch_size: int = 64,
    num_workers: int = 2,
    device: str = "cpu",
) -> dict[str, float]:
    """Evaluate a model on an ImageFolder (or a PaddleClas list file) with its own eval
    preprocessing: the registry entry's for a registered model, the training config's for
    weights written by ``res2net train``. Returns :func:`evaluate`'s dict."""
    from res2net.data.transforms import eval_transform

    if name is None and weights is None:
        raise ValueError("give a registered model name, a weights file, or both")
    if weights is None and not pretrained:
        raise ValueError(
            f"{name}: no weights given; pass weights=FILE, or pretrained=True for the "
            "published ones"
        )
    model, card = model_from_weights(weights, name, pretrained)
    transform = eval_transform(card.preprocess)
    num_classes = getattr(model, "num_classes", None) or None
    dataset = build_dataset(data, transform, list_file, num_classes=num_classes)
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_skipping
    )
    return evaluate(model.to(device), loader, device)
