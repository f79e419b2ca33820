"""Classify images: decode + preprocess in parallel workers, overlapped with the model.

A :class:`Predictor` holds one model in one runtime (``res2net.deploy.runtimes``) and the
weight entry's own preprocessing. ``predict`` takes any number of inputs and returns one
:class:`Prediction` per input, in order; an input that cannot be decoded gets a
``Prediction`` with ``error`` set, and the others are classified as usual.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from itertools import islice
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from res2net.card import ModelCard, load_card
from res2net.checks import check_number
from res2net.data.images import DEFAULT_MAX_PIXELS, ImageSource, describe_source
from res2net.data.labels import imagenet_labels, load_label_file
from res2net.data.preprocess import Preprocess
from res2net.data.transforms import preprocess
from res2net.deploy.runtimes import create_runtime


@dataclass
class Prediction:
    """The top-k classes of one input, or why it could not be classified.

    ``scores`` are softmax probabilities, highest first; ``labels`` are the class names
    (empty when the model has no label list); ``error`` is ``None`` on success.
    """

    source: str
    class_ids: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the input was classified."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict with the fields above."""
        return asdict(self)


def _read_labels(labels: str | os.PathLike | list[str] | None) -> list[str] | None:
    if labels is None:
        return None
    return list(labels) if isinstance(labels, (list, tuple)) else load_label_file(labels)


def _labels_for(names: list[str] | None, num_classes: int) -> list[str]:
    if names is None:
        return imagenet_labels() if num_classes == 1000 else []
    if len(names) != num_classes:
        raise ValueError(
            f"{len(names)} labels given for a model with {num_classes} classes; "
            "pass a label file with one name per class, or num_classes to match"
        )
    return names


def softmax_topk(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, probabilities) of the ``k`` most likely classes of each row, highest first."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    ids = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(probs, ids, axis=1)


def load_training_export(weights) -> tuple[Any, Preprocess, str, list[str] | None]:
    """Network (weights loaded, eval mode), preprocessing, name and class names of a
    ``.safetensors`` file written by ``res2net train``, which records all four in its card.

    The one reader behind every command that takes such a file without a model name
    (predict, export, serve, bench).

    :raises ValueError: ``weights`` is not such a file.
    """
    network, card = _training_export(weights)
    labels = list(card.labels) if card.labels is not None else None
    return network, card.preprocess, card.name or "trained", labels


class NoModelError(ValueError):
    """Neither a registered model name nor a training export that records its own."""


def _training_export(weights) -> tuple[Any, ModelCard]:
    from res2net.card import read_training_metadata
    from res2net.engine.evaluate import model_from_weights

    if not weights or weights is True or not read_training_metadata(weights):
        raise NoModelError(
            "no model given: pass model= a registered name, or weights= a .safetensors file "
            "written by `res2net train` (it records its architecture)"
        )
    return model_from_weights(weights)


class Predictor:
    """A Res2Net ready to classify images.

    :param model: a registered name (``res2net models``); sets the network and preprocessing.
        ``None`` takes both (and the class names) from a ``.safetensors`` file written by
        ``res2net train``, given as ``weights``.
    :param weights: a weight file path, ``True`` for the entry's published weights, or
        ``None``/``False`` for random weights (only useful for testing and timing).
    :param engine: runtime name (``res2net.deploy.runtimes.available_engines()``), or
        ``"auto"``: the fastest installed for ``precision`` on ``device``
        (``res2net.deploy.runtimes.auto_engine``); ``runtime.engine`` names the one chosen.
    :param device: ``"cpu"`` or ``"cuda"``.
    :param precision: ``"fp32"`` (IEEE FP32 on every engine), ``"bf16"`` (the PyTorch
        engines, and ``openvino`` on CPUs with AVX512-BF16 or AMX-BF16), or ``"fp16"`` on a
        GPU; see ``res2net.deploy.runtimes.engine_precisions``.
    :param topk: classes reported per image.
    :param batch_size: images per model call.
    :param num_workers: decoding/preprocessing threads (0: decode in the calling thread).
    :param labels: a label file path or a list of names; default ImageNet's for 1000 classes.
    :param num_classes: classifier size; default the length of ``labels``, else 1000.
    :param max_pixels: decompression-bomb limit for each input (``None``: no limit).
    """

    def __init__(
        self,
        model: str | None,
        weights: str | os.PathLike | bool | None = None,
        *,
        engine: str = "auto",
        device: str = "cpu",
        precision: str = "fp32",
        topk: int = 5,
        batch_size: int = 8,
        num_workers: int = 2,
        labels: str | os.PathLike | list[str] | None = None,
        num_classes: int | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        check_number("topk", topk, low=1, integer=True)
        check_number("batch_size", batch_size, low=1, integer=True)
        check_number("num_workers", num_workers, low=0, integer=True)
        if num_classes is not None:  # a negative count built a 2045-class head
            check_number("num_classes", num_classes, low=1, integer=True)
        if max_pixels is not None:
            check_number("max_pixels", max_pixels, low=1, integer=True)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but no CUDA GPU is usable here; use cpu")
        names = _read_labels(labels)
        if model is None:
            network, card = _training_export(weights)
            names = names or (list(card.labels) if card.labels is not None else None)
            num_classes = card.num_classes
        else:
            from res2net.builder import build_model

            num_classes = num_classes or (len(names) if names else 1000)
            card = replace(load_card(model), num_classes=num_classes)
            # skip_head=False: a fine-tuned file's own classifier is what predict needs.
            network = build_model(card, weights=weights or False, skip_head=False)
        self.card = card
        self.model_name = card.name or "trained"
        self.preprocess_cfg = card.preprocess
        self.labels = _labels_for(names, num_classes)
        self.num_classes = num_classes
        self.topk = min(topk, num_classes)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.max_pixels = max_pixels
        self.weights = weights if weights else None
        self.runtime = create_runtime(network.eval(), engine, device=device, precision=precision)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Logits (N x classes, float32) of an already preprocessed N x 3 x H x W batch."""
        return self.runtime(np.ascontiguousarray(batch, dtype=np.float32))

    def preprocess(self, source: ImageSource) -> torch.Tensor:
        """One input decoded and preprocessed for this model (3 x crop x crop float32)."""
        return preprocess(source, self.preprocess_cfg, max_pixels=self.max_pixels)

    def predict(
        self, sources: ImageSource | Iterable[ImageSource], *, progress: bool | None = None
    ) -> list[Prediction]:
        """Classify each input; one :class:`Prediction` per input, in the same order.

        :param sources: paths, encoded bytes, PIL images or uint8 arrays (or a single one).
        :param progress: show a progress bar; default: when there is more than one batch
            and stderr is a terminal.
        """
        if isinstance(sources, (str, os.PathLike, bytes, np.ndarray, Image.Image)):
            sources = [sources]
        items = list(sources)
        if progress is None:
            progress = len(items) > self.batch_size and sys.stderr.isatty()
        results: list[Prediction] = []
        with tqdm(total=len(items), unit="img", disable=not progress) as bar:
            for chunk in self._batches(items):
                results += self._classify(chunk)
                bar.update(len(chunk))
        return results

    def _batches(self, items: Sequence[ImageSource]) -> Iterator[list[tuple[str, Any]]]:
        """Groups of (name, tensor or error message), preprocessed ahead by the workers."""
        if self.num_workers == 0:
            for start in range(0, len(items), self.batch_size):
                yield [self._prepare(s) for s in items[start : start + self.batch_size]]
            return
        # Up to three batches queued in the pool, so decoding overlaps the model call.
        window = 3 * self.batch_size
        rest = iter(items)
        with ThreadPoolExecutor(self.num_workers, thread_name_prefix="res2net-decode") as pool:
            pending = deque(pool.submit(self._prepare, s) for s in islice(rest, window))
            batch: list[tuple[str, Any]] = []
            while pending:
                batch.append(pending.popleft().result())
                pending.extend(pool.submit(self._prepare, s) for s in islice(rest, 1))
                if len(batch) == self.batch_size or not pending:
                    yield batch
                    batch = []

    def _prepare(self, source: ImageSource) -> tuple[str, Any]:
        name = describe_source(source)
        try:
            return name, self.preprocess(source)
        except ValueError as exc:  # ImageDecodeError and bad preprocessing settings
            return name, str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure of one input is that input's
            return name, f"{name}: cannot classify ({type(exc).__name__}: {str(exc)[:200]})"

    def classify_prepared(self, chunk: list[tuple[str, torch.Tensor | str]]) -> list[Prediction]:
        """Predictions for inputs decoded elsewhere: each ``(name, tensor)`` (from
        :meth:`preprocess`) or ``(name, error message)``; runs ``len(chunk)`` images at once."""
        return self._classify(chunk)

    def _classify(self, chunk: list[tuple[str, Any]]) -> list[Prediction]:
        good = [i for i, (_, value) in enumerate(chunk) if isinstance(value, torch.Tensor)]
        results = [Prediction(name, error=value) for name, value in chunk]
        if not good:
            return results
        batch = torch.stack([chunk[i][1] for i in good]).numpy()
        ids, probs = softmax_topk(self.predict_batch(batch), self.topk)
        for row, i in enumerate(good):
            class_ids = [int(c) for c in ids[row]]
            results[i] = Prediction(
                chunk[i][0],
                class_ids=class_ids,
                scores=[float(p) for p in probs[row]],
                labels=[self.labels[c] for c in class_ids] if self.labels else [],
            )
        return results
