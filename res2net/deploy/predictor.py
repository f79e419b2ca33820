"""Classify images: decode + preprocess in parallel workers, overlapped with the model.

A :class:`Predictor` holds one model in one runtime and its card's own preprocessing and
labels; what the user named (a registered name, a ``res2net train`` file, an exported
model) is resolved by :mod:`res2net.resolve`, the door every front end shares. ``predict``
takes any number of inputs and returns one :class:`Prediction` per input, in order; an
input that cannot be decoded gets a ``Prediction`` with ``error`` set, and the others are
classified as usual.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from res2net.checks import check_number
from res2net.data.images import DEFAULT_MAX_PIXELS, ImageSource, describe_source
from res2net.data.labels import imagenet_labels, load_label_file
from res2net.data.transforms import preprocess
from res2net.resolve import EXPORT_SUFFIXES, ModelSourceError, identify, open_model


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


class Predictor:
    """A Res2Net ready to classify images.

    :param model: a registered name (``res2net models``), or an exported model file
        (``.onnx``, ``.xml``, ``.pt``, ``.pt2``, ``.pte``; see :meth:`from_export`), or a
        ``.safetensors`` written by ``res2net train``. ``None`` takes the model from
        ``weights``. A file that is neither is refused, saying what it is
        (:mod:`res2net.resolve`).
    :param weights: with a registered name: a weight file path, ``True`` for the entry's
        published weights, or ``None``/``False`` for random weights (only useful for testing
        and timing). Without ``model``: an exported model or a ``res2net train`` file.
    :param engine: runtime name (``res2net.deploy.runtimes.available_engines()``), or
        ``"auto"``: the fastest installed for ``precision`` on ``device``
        (``res2net.deploy.runtimes.auto_engine``), or an export's own engine;
        ``runtime.engine`` names the one chosen.
    :param device: ``"cpu"`` or ``"cuda"``.
    :param precision: ``"fp32"`` (IEEE FP32 on every engine), ``"bf16"`` (the PyTorch
        engines, and ``openvino`` on CPUs with AVX512-BF16 or AMX-BF16), or ``"fp16"`` on a
        GPU; see ``res2net.deploy.runtimes.engine_precisions``. An export runs at the
        precision it was exported at.
    :param topk: classes reported per image.
    :param batch_size: images per model call.
    :param num_workers: decoding/preprocessing threads (0: decode in the calling thread).
    :param labels: a label file path or a list of names; default: the card's, else
        ImageNet's for 1000 classes.
    :param num_classes: classifier size of a registered model; default the length of
        ``labels``, else 1000 (files carry their own).
    :param max_pixels: decompression-bomb limit for each input (``None``: no limit).
    """

    def __init__(
        self,
        model: str | os.PathLike | None,
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
        source = identify(model, weights)
        if source.kind == "registered" and num_classes is None and names:
            num_classes = len(names)
        card, self.runtime = open_model(
            source, engine=engine, device=device, precision=precision, num_classes=num_classes
        )
        if names is None and card.labels is not None:
            names = list(card.labels)
        self.source = source
        self.card = card
        self.model_name = source.name
        # Other names the model answers to (its file's stem), for the server.
        self.model_aliases = tuple(a for a in source.aliases if a != source.name)
        self.preprocess_cfg = card.preprocess
        self.labels = _labels_for(names, card.num_classes)
        self.num_classes = card.num_classes
        self.topk = min(topk, card.num_classes)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.max_pixels = max_pixels
        self.weights = source.path if source.path is not None else (source.weights or None)
        metadata = getattr(self.runtime, "metadata", None) or {}
        if metadata.get("random_weights") is True:  # exported with --random-weights
            self.weights = None
        # An export made with softmax outputs probabilities; their log is a valid logit.
        self._outputs_probabilities = metadata.get("output") == "probabilities"

    @classmethod
    def from_export(cls, path: str | os.PathLike, **options: Any) -> Predictor:
        """A predictor running an exported model file as it is: card, preprocessing, labels
        and precision from its ``<file>.json``, runtime from
        :func:`res2net.deploy.export.load_exported`; nothing converted or downloaded.

        :param options: the other keywords of :class:`Predictor` (``engine``, ``topk``...).
        :raises ValueError: ``path`` is not an exported model (saying what it is), or its
            metadata is missing or does not match it.
        """
        if Path(path).suffix not in EXPORT_SUFFIXES:
            raise ModelSourceError(
                f"path={os.fspath(path)!r} is not an exported model (one of "
                f"{', '.join(EXPORT_SUFFIXES)}); use Predictor(model=...) for other files"
            )
        return cls(path, **options)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Logits (N x classes, float32) of an already preprocessed N x 3 x H x W batch (for
        an export made with softmax: log-probabilities, which softmax maps back to them)."""
        out = self.runtime(np.ascontiguousarray(batch, dtype=np.float32))
        if self._outputs_probabilities:
            out = np.log(np.maximum(out, np.finfo(np.float32).tiny)).astype(np.float32)
        return out

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
