"""Batch prediction and evaluation on a Ray cluster, with Ray Data.

The pipeline is two stages: reading and decoding run as Ray Data tasks (any free CPU on any
node), the model runs in a pool of actors (``map_batches`` with a class: one model load per
actor, one GPU each when ``device`` is ``cuda``). For prediction each actor call classifies
one block of images and writes it as one part file (:mod:`res2net.batch.parts`).

Exactly once: Ray Data restarts a dead actor and re-runs its unfinished calls on the same
input block. The part name is a hash of that block's sources, so a call that wrote its part
before dying is overwritten by its retry, not duplicated; ``drop_duplicates`` checks at the
end.

Sizing (Ray 2.60, measured on 2 CPUs): an actor pool whose actors each reserve a whole CPU
can leave no CPU for the decode tasks that feed it, and the job waits forever. Actors here
reserve half a CPU by default (``cpus_per_actor``), and a pool that would leave less than
one decode task's CPUs free is refused before the job starts. (When actors and decode tasks
reserve the same resources, Ray Data fuses the two stages and each actor decodes its own
blocks; that cannot starve either.)
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from res2net.data.preprocess import Preprocess
from res2net.noise import RAY_ACTOR_NOISE, drop_native_lines

# CPUs Ray reserves per decode task: decoding is one thread, so it reserves what it uses.
DECODE_CPUS = 1.0


def connect(address: str | None) -> bool:
    """Make sure Ray is initialized; returns whether this call started it.

    ``"local"`` (or ``None``) starts a single-machine instance without the dashboard;
    anything else is passed to ``ray.init(address=...)``.
    """
    try:
        import ray
    except ImportError:
        raise RuntimeError(
            "Ray is not installed; install the scale extra: pip install 'res2net[scale]'"
        ) from None
    if ray.is_initialized():
        return False
    if address in (None, "local"):
        ray.init(include_dashboard=False)
    else:
        try:
            ray.init(address=address)
        except ConnectionError as exc:
            raise RuntimeError(
                f"Ray address {address!r}: no Ray cluster answers there ({exc}); start one "
                "with `ray start --head`, or run a local instance (ray='local'; CLI: --ray "
                "with no value)"
            ) from None
    return True


def predict_preprocess(model: str | None, weights: Any) -> Preprocess:
    """The preprocessing a :class:`~res2net.deploy.predictor.Predictor` built from the same
    ``model`` and ``weights`` applies: the card's of whatever they name
    (:func:`res2net.resolve.identify`: a registered name, a training or an exported file)."""
    from res2net.resolve import identify

    return identify(model, weights).card.preprocess


def _decode_for_predict(batch: dict[str, np.ndarray], cfg: Preprocess, max_pixels) -> dict:
    """Ray Data task: read + decode + preprocess each source; failures keep their message."""
    from res2net.batch.parts import read_source
    from res2net.data.transforms import preprocess

    images, errors = [], []
    shape = (3, cfg.crop, cfg.crop)
    for source in batch["source"]:
        try:
            images.append(preprocess(read_source(source), cfg, max_pixels=max_pixels).numpy())
            errors.append("")
        except (ValueError, OSError) as exc:  # ImageDecodeError, unreadable remote file
            images.append(np.zeros(shape, np.float32))
            errors.append(str(exc))
    return {"source": batch["source"], "image": np.stack(images), "error": np.array(errors)}


def _set_threads(cpus: float) -> None:
    """Run the actor's model on the CPUs Ray reserved for it (at least one thread): PyTorch's
    threads, and ``RES2NET_THREADS``, which the OpenVINO and ONNX Runtime engines read
    (:func:`res2net.deploy.runtimes.cpu_threads`). Without it each actor's exported model took
    every core of the machine, so two actors on two cores ran four model threads."""
    import torch

    threads = max(1, round(cpus))
    torch.set_num_threads(threads)
    os.environ["RES2NET_THREADS"] = str(threads)


class _PredictAndWrite:
    """Ray actor: one Predictor; each call classifies a block and writes it as one part."""

    def __init__(self, options: dict[str, Any], folder: str, fmt: str, cpus: float) -> None:
        from res2net.deploy.predictor import Predictor

        _set_threads(cpus)
        options = {**options, "num_workers": 0}
        self.predictor = Predictor(options.pop("model"), options.pop("weights"), **options)
        self.folder, self.fmt = folder, fmt

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from res2net.batch.parts import prediction_rows, write_part

        names = [str(s) for s in batch["source"]]
        chunk = [
            (name, error or torch.from_numpy(np.array(image)))
            for name, image, error in zip(names, batch["image"], batch["error"], strict=True)
        ]
        step = self.predictor.batch_size
        predictions = []
        for start in range(0, len(chunk), step):
            predictions += self.predictor.classify_prepared(chunk[start : start + step])
        rows = prediction_rows(names, predictions)
        part = write_part(self.folder, rows, self.fmt)
        failed = sum(r["error"] is not None for r in rows)
        return {
            "part": np.array([part]),
            "rows": np.array([len(rows)]),
            "failed": np.array([failed]),
        }


def _actor_pool(device: str, num_actors: int, cpus_per_actor: float) -> dict[str, Any]:
    """``map_batches`` arguments for the model actors; refuses a pool that starves decoding."""
    import ray

    if cpus_per_actor <= 0 or num_actors < 1:
        raise ValueError(
            f"cpus_per_actor must be > 0 and num_actors >= 1, got {cpus_per_actor}, {num_actors}"
        )
    cpus = ray.cluster_resources().get("CPU", 0)
    fused = cpus_per_actor == DECODE_CPUS and not device.startswith("cuda")
    if not fused and num_actors * cpus_per_actor + DECODE_CPUS > cpus:
        raise ValueError(
            f"num_actors x cpus_per_actor = {num_actors} x {cpus_per_actor} leaves less than "
            f"{DECODE_CPUS} of the cluster's {cpus:g} CPUs for decoding, so the job would wait "
            "forever; use fewer actors or a smaller cpus_per_actor (e.g. 0.5)"
        )
    return {
        "compute": ray.data.ActorPoolStrategy(size=num_actors),
        "num_cpus": cpus_per_actor,
        "num_gpus": 1 if device.startswith("cuda") else 0,
    }


def _items(sources: list[Any], rows_per_part: int, columns: tuple[str, ...] = ("source",)):
    """A dataset of the given rows, one block per future part."""
    import ray

    rows = [
        dict(zip(columns, s, strict=True)) if len(columns) > 1 else {"source": s} for s in sources
    ]
    return ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / rows_per_part))


def _show_progress(progress: bool | None) -> None:
    import ray

    if progress is not None:
        ray.data.DataContext.get_current().enable_progress_bars = progress


def ray_predict(
    sources: list[str],
    folder: os.PathLike,
    fmt: str,
    options: dict[str, Any],
    *,
    address: str | None,
    rows_per_part: int,
    num_actors: int,
    cpus_per_actor: float,
    progress: bool | None,
) -> tuple[int, int]:
    """Classify ``sources`` on Ray into part files in ``folder``; returns (rows, failed).

    Called by :func:`res2net.batch.batch_predict`, which prepares the folder and the options.
    """
    import ray

    cfg = predict_preprocess(options["model"], options["weights"])
    started = connect(address)
    try:
        pool = _actor_pool(options["device"], num_actors, cpus_per_actor)
        _show_progress(progress)
        with drop_native_lines(RAY_ACTOR_NOISE):
            summary = _predict_pipeline(
                sources, folder, fmt, options, cfg, rows_per_part, cpus_per_actor, pool
            )
    finally:
        if started:
            ray.shutdown()
    return int(summary["rows"].sum()), int(summary["failed"].sum())


def _predict_pipeline(
    sources: list[str], folder: os.PathLike, fmt: str, options: dict[str, Any],
    cfg: Preprocess, rows_per_part: int, cpus_per_actor: float, pool: dict[str, Any],
) -> Any:  # fmt: skip
    """Run the two stages (decode tasks, model actors): a pandas frame of the parts written."""
    return (
        _items(sources, rows_per_part)
        .map_batches(
            _decode_for_predict,
            batch_size=rows_per_part,
            num_cpus=DECODE_CPUS,
            fn_kwargs={"cfg": cfg, "max_pixels": options["max_pixels"]},
        )
        .map_batches(
            _PredictAndWrite,
            batch_size=rows_per_part,
            fn_constructor_kwargs={
                "options": options,
                "folder": os.fspath(folder),
                "fmt": fmt,
                "cpus": cpus_per_actor,
            },
            **pool,
        )
        .to_pandas()
    )


def _decode_for_eval(batch: dict[str, np.ndarray], cfg: Preprocess) -> dict:
    """Ray Data task: decode + eval transform; undecodable images are marked, as
    :class:`~res2net.data.datasets.ImageDataset` skips them."""
    from res2net.data.images import ImageDecodeError, load_image
    from res2net.data.transforms import eval_transform

    transform = eval_transform(cfg)
    images, ok = [], []
    for source in batch["source"]:
        try:
            images.append(transform(load_image(str(source))).numpy())
            ok.append(True)
        except ImageDecodeError:
            images.append(np.zeros((3, cfg.crop, cfg.crop), np.float32))
            ok.append(False)
    return {"image": np.stack(images), "label": batch["label"], "ok": np.array(ok)}


class _Evaluate:
    """Ray actor: one model; each call returns the evaluation sums of a block."""

    def __init__(self, name, weights, pretrained: bool, device: str, cpus: float) -> None:
        from res2net.engine.evaluate import evaluation_model

        _set_threads(cpus)
        self.device = device
        self.model = evaluation_model(name, weights, pretrained, device)[0]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from res2net.engine.evaluate import evaluate

        ok = batch["ok"].astype(bool)
        images = torch.from_numpy(np.array(batch["image"][ok], dtype=np.float32))
        labels = torch.from_numpy(batch["label"][ok].astype(np.int64))
        skipped = int((~ok).sum())
        if not len(labels):
            return {
                "n": np.array([0]),
                "loss": np.zeros(1),
                "top1": np.zeros(1),
                "top5": np.zeros(1),
                "skipped": np.array([skipped]),
            }
        # evaluate() itself, on this one block: the same metrics as the single-process eval.
        result = evaluate(self.model, [(images, labels, 0)], self.device)
        n = result["images"]
        return {
            "n": np.array([n]),
            "loss": np.array([result["loss"] * n]),
            "top1": np.array([round(result["top1"] * n)]),
            "top5": np.array([round(result["top5"] * n)]),
            "skipped": np.array([skipped]),
        }


def eval_preprocess(name: str | None, weights: Any) -> Preprocess:
    """The preprocessing :func:`res2net.engine.evaluate.evaluate_folder` uses: the card's of
    what ``name`` and ``weights`` name (a training export's own when the weights carry it,
    an export's from its metadata, else the registered entry's)."""
    from res2net.card import training_card
    from res2net.resolve import identify

    card = training_card(weights) if weights else None
    return card.preprocess if card is not None else identify(name, weights).card.preprocess


def evaluate_on_ray(
    data: str | os.PathLike,
    *,
    name: str | None = None,
    weights: str | os.PathLike | None = None,
    pretrained: bool = False,
    list_file: str | os.PathLike | None = None,
    address: str | None = "local",
    num_actors: int = 1,
    cpus_per_actor: float = 0.5,
    rows_per_block: int = 256,
    device: str = "cpu",
    progress: bool | None = None,
) -> dict[str, float]:
    """:func:`res2net.engine.evaluate.evaluate_folder` on a Ray cluster: the same data,
    preprocessing and model, decoded by Ray Data tasks and run by ``num_actors`` actors;
    returns the same dict (top-1, top-5, loss, images, and skipped when some failed).

    :param address: as ``batch_predict``'s ``ray``.
    """
    import ray

    from res2net.data.datasets import folder_samples, list_file_samples
    from res2net.resolve import is_registered

    if name is None and weights is None:
        raise ValueError("give a registered model name, a weights file, or both")
    if weights is None and not pretrained and is_registered(name):
        raise ValueError(f"{name}: no weights given; pass a weights file, or pretrained=True")
    weights = os.fspath(weights) if weights is not None else None
    name = os.fspath(name) if name is not None else None
    cfg = eval_preprocess(name, weights)
    samples = list_file_samples(list_file, data) if list_file else folder_samples(data)[0]
    rows = [(str(path), label) for path, label in samples]
    started = connect(address)
    try:
        pool = _actor_pool(device, num_actors, cpus_per_actor)
        _show_progress(progress)
        with drop_native_lines(RAY_ACTOR_NOISE):
            sums = (
                _items(rows, rows_per_block, ("source", "label"))
                .map_batches(
                    _decode_for_eval,
                    batch_size=rows_per_block,
                    num_cpus=DECODE_CPUS,
                    fn_kwargs={"cfg": cfg},
                )
                .map_batches(
                    _Evaluate,
                    batch_size=rows_per_block,
                    fn_constructor_kwargs={
                        "name": name,
                        "weights": weights,
                        "pretrained": pretrained,
                        "device": device,
                        "cpus": cpus_per_actor,
                    },
                    **pool,
                )
                .to_pandas()
                .sum()
            )
    finally:
        if started:
            ray.shutdown()
    return _eval_result(sums)


def _eval_result(sums) -> dict[str, float]:
    n = int(sums["n"])
    if n == 0:
        raise ValueError("evaluation data is empty (every image failed to decode?)")
    result = {
        "loss": float(sums["loss"]) / n,
        "top1": float(sums["top1"]) / n,
        "top5": float(sums["top5"]) / n,
        "images": n,
    }
    if int(sums["skipped"]):
        result["skipped"] = int(sums["skipped"])
    return result
