"""Evaluation: top-1 / top-5 accuracy and loss of a classifier on a labelled image set.

Counts are accumulated on the device (no host sync per batch) and, under torchrun, summed
over all processes, each of which evaluates a disjoint shard of the data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from res2net.data.datasets import build_dataset, collate_skipping
from res2net.engine.distill import agreement


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
) -> tuple[nn.Module, dict[str, Any]]:
    """A model for evaluation, and the preprocessing facts its weights carry.

    ``name`` is a registered model; without it the architecture comes from the metadata
    that :func:`res2net.engine.train.train` writes into its ``.safetensors`` exports. The
    class count is read from the file's classifier.
    """
    from res2net.models.registry import create_model, get_entry
    from res2net.models.res2net import Res2Net, Res2NetConfig

    meta = read_training_metadata(weights) if weights else {}
    if meta:
        check_training_export(weights, meta)
    if name is None:
        if "arch" not in meta:
            raise ValueError(
                f"{weights}: no architecture in its metadata (not written by `res2net train`); "
                "name the model with --model"
            )
        model = Res2Net(Res2NetConfig(**meta["arch"]), num_classes=int(meta["num_classes"]))
        from res2net.weights.io import load_weights

        load_weights(model, weights)
        return model.eval(), meta
    num_classes = _classes_in_file(weights) if weights else 1000
    source: bool | str = str(weights) if weights else pretrained
    model = create_model(name, pretrained=source, num_classes=num_classes, skip_head=False)
    if not meta:
        pre = get_entry(name).preprocess
        meta = {
            "preprocess": {
                "resize_short": pre.resize_short,
                "crop": pre.crop,
                "mean": list(pre.mean),
                "std": list(pre.std),
                "style": pre.style,
            }
        }
    return model.eval(), meta


def _classes_in_file(path: str | Path) -> int:
    from res2net.weights.io import read_weight_file

    state, _, _ = read_weight_file(path)
    for key in ("fc.weight", "out.weight"):
        if key in state:
            # PaddleClas stores Linear weights as [in, out]; ours are [out, in].
            return int(state[key].shape[1 if key == "out.weight" else 0])
    raise ValueError(f"{path}: no classifier weights (fc.weight / out.weight) in the file")


def read_training_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata our trainer stores in a ``.safetensors`` export ({} for others).

    :raises WeightFileError: unreadable file, or metadata that is not a JSON object.
    """
    from res2net.weights.io import WeightFileError

    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("res2net_training")
        meta = json.loads(raw) if raw else {}
    except Exception as exc:  # noqa: BLE001 - safetensors and json fail in many ways
        raise WeightFileError(
            f"{path}: unreadable training metadata ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if not isinstance(meta, dict):
        raise WeightFileError(f"{path}: training metadata is not a JSON object")
    return meta


# What `res2net train` writes (engine.train._metadata) and the bounds a sane file keeps.
_META_KEYS = {"arch", "model", "num_classes", "classes", "preprocess"}
_META_REQUIRED = {"arch", "num_classes", "preprocess"}
_MAX_CLASSES = 1_000_000
_ARCH_TYPES = {
    "depth": int, "width": int, "scales": int, "deep_stem": bool, "avg_down": bool,
    "flavour": str, "cardinality": int,
}  # fmt: skip
_ARCH_MAX = {"width": 1024, "scales": 64, "cardinality": 64}


def _check_metadata_fields(meta: dict[str, Any]) -> str | None:
    """Why ``meta`` is not what `res2net train` writes, or ``None``."""
    if unknown := sorted(set(meta) - _META_KEYS):
        return f"unknown metadata key(s) {', '.join(map(repr, unknown))}"
    if missing := sorted(_META_REQUIRED - set(meta)):
        return f"missing metadata key(s) {', '.join(missing)}"
    n = meta["num_classes"]
    if type(n) is not int or not 1 <= n <= _MAX_CLASSES:
        return f"num_classes {n!r} is not a whole number from 1 to {_MAX_CLASSES:,}"
    classes = meta.get("classes")
    if classes is not None and (
        not isinstance(classes, list)
        or len(classes) != n
        or not all(isinstance(c, str) for c in classes)
    ):
        return f"classes is not a list of {n} names"
    arch = meta["arch"]
    if not isinstance(arch, dict) or set(arch) - set(_ARCH_TYPES):
        return f"arch must be an object with keys from {', '.join(_ARCH_TYPES)}"
    for key, value in arch.items():
        if type(value) is not _ARCH_TYPES[key] or value > _ARCH_MAX.get(key, value):
            return f"arch.{key} = {value!r} is not a sane {_ARCH_TYPES[key].__name__}"
    pre = meta["preprocess"]
    if not isinstance(pre, dict):
        return "preprocess is not an object"
    sizes = [pre.get("resize_short"), pre.get("crop")]
    if not all(type(v) is int and 1 <= v <= 8192 for v in sizes):
        return "preprocess.resize_short / crop must be whole numbers from 1 to 8192"
    for key in ("mean", "std"):
        values = pre.get(key)
        if not (isinstance(values, list) and len(values) == 3):
            return f"preprocess.{key} must be a list of 3 numbers"
        if not all(type(v) in (int, float) for v in values):
            return f"preprocess.{key} must be a list of 3 numbers"
    if pre.get("style", "paddle") not in ("paddle", "timm"):
        return "preprocess.style must be 'paddle' or 'timm'"
    return None


def check_training_export(path: str | Path, meta: dict[str, Any]) -> None:
    """Check a training export's metadata, and that its architecture matches the file's
    tensors, before a network is built from it (a shape-only network on the meta device).

    :raises WeightFileError: naming the file and what is wrong.
    """
    from safetensors import safe_open

    from res2net.models.res2net import Res2Net, Res2NetConfig
    from res2net.weights.io import WeightFileError

    reason = _check_metadata_fields(meta)
    if reason is None:
        try:
            with torch.device("meta"):
                shapes = Res2Net(Res2NetConfig(**meta["arch"]), num_classes=meta["num_classes"])
            wanted = {k: tuple(v.shape) for k, v in shapes.state_dict().items()}
        except (ValueError, TypeError) as exc:
            reason = f"arch is not a valid Res2Net ({exc})"
    if reason is None:
        with safe_open(str(path), framework="pt") as fh:
            found = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
        wanted = {k: v for k, v in wanted.items() if not k.endswith("num_batches_tracked")}
        found = {k: v for k, v in found.items() if not k.endswith("num_batches_tracked")}
        if wanted != found:
            odd = sorted(set(wanted.items()) ^ set(found.items()))[:3]
            reason = (
                "the architecture in its metadata does not match the tensors in the file "
                f"(first differences: {', '.join(f'{k} {s}' for k, s in odd)})"
            )
    if reason is not None:
        raise WeightFileError(
            f"{path}: not a valid `res2net train` export: {reason}. Re-export it with "
            "`res2net train`, or pass --model with the architecture."
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
    from res2net.models.registry import Preprocess

    if name is None and weights is None:
        raise ValueError("give a registered model name, a weights file, or both")
    if weights is None and not pretrained:
        raise ValueError(
            f"{name}: no weights given; pass a weights file, or pretrained=True "
            "(CLI: --weights FILE or --pretrained) for the published ones"
        )
    model, meta = model_from_weights(weights, name, pretrained)
    pre = meta["preprocess"]
    transform = eval_transform(
        Preprocess(
            resize_short=pre["resize_short"],
            crop=pre["crop"],
            mean=tuple(pre["mean"]),
            std=tuple(pre["std"]),
            style=pre.get("style", "paddle"),
        )
    )
    num_classes = getattr(model, "num_classes", None) or None
    dataset = build_dataset(data, transform, list_file, num_classes=num_classes)
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_skipping
    )
    return evaluate(model.to(device), loader, device)
