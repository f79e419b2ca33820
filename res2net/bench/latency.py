"""Latency of our engines, measured the way PaddleClas measures (random input at the model's
own size: 224 x 224 for the registry, a training file's crop for its network).

For each model x engine x precision x batch size: build the runtime, warm it up, then time
``iters`` calls on one fixed random batch, all engines of a model in turns
(:mod:`res2net.bench.timing`), and keep the median (and the 90th percentile). Optionally
the same with image decoding + preprocessing of given photos included. INT8 runtimes are
the INT8 files ``res2net export --int8`` writes (``create_runtime(..., calibration=)``).

Comparison peers (timm, a plain OpenVINO conversion, Paddle Inference) are not part of the
library: ``benchmarks/peers.py`` defines them as :class:`Peer` s and passes them to
:func:`run_benchmark`, which times them in the same turns.

On a GPU (``device="cuda"``) the batch lives on the card and each timed call ends with a
``torch.cuda.synchronize()``: the time is the network's, without host-device copies
(those are in the ``e2e`` column).
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from res2net.bench.report import Measurement
from res2net.bench.timing import (
    Contender,
    agreement,
    logits_in_chunks,
    peak_rss_mib,
    random_batch,
    reset_peak_rss,
    rss_mib,
    time_round_robin,
)

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass(frozen=True)
class Peer:
    """A comparison engine that is not ours, timed in the same turns as ours.

    ``build(model, name, precision, device)`` returns a runtime: a callable on a numpy
    batch, or an object with ``time_calls(batch_size, warmup, n)`` (and optionally
    ``peak_rss_mib()`` and ``close()``) that times itself, e.g. in another process.
    """

    name: str
    runs: Callable[[str | None, str, str], bool]  # (model name, precision, device)
    build: Callable[[Any, str | None, str, str], Any]
    # Computes our function with our weights: checked against FP32 like ours, and the
    # model's published top-1 applies to its FP32 rows.
    same_function: bool = True


def runs(engine: str, precision: str, device: str) -> bool:
    """Whether the bench measures our ``engine`` at ``precision`` on ``device``: the
    precisions of the engine table, and INT8 on the CPU for the engines that have it."""
    from res2net.deploy.engines import ENGINE_TABLE, INT8_ENGINES
    from res2net.deploy.runtimes import engine_precisions

    if engine not in ENGINE_TABLE:
        return False
    if precision == "int8":
        return device == "cpu" and engine in INT8_ENGINES
    return precision in engine_precisions(engine, device)


def build_runtime(
    model: Any, engine: str, precision: str, calib: np.ndarray | None, device: str = "cpu",
    side: int = 224,
) -> Any:  # fmt: skip
    """Our ``engine`` at ``precision`` on ``device``: ``create_runtime``, INT8 included
    (calibrated on ``calib``; random noise of ``side`` x ``side`` when None, fine for timing
    only).

    :raises ValueError: a combination the bench does not measure (:func:`runs`).
    """
    from res2net.deploy.runtimes import create_runtime

    if not runs(engine, precision, device):
        raise ValueError(f"{engine} is not measured at {precision} on {device}")
    if precision == "int8":
        data = calib if calib is not None else random_batch(32, side)
        return create_runtime(model, engine, device=device, precision="int8", calibration=data)
    return create_runtime(model, engine, device=device, precision=precision)


def _image_files(photos: Sequence[str | os.PathLike]) -> list[str]:
    from res2net.data.images import collect_images

    files = collect_images(photos)
    if not files:
        raise ValueError(f"no images found in {', '.join(map(str, photos))}")
    return files


def load_photos(photos: Sequence[str | os.PathLike], cfg: Any) -> np.ndarray:
    """The photos (files or folders) decoded and preprocessed with ``cfg``, stacked."""
    from res2net.data.transforms import preprocess

    return np.stack([preprocess(f, cfg).numpy() for f in _image_files(photos)])


def _photo_batch_fn(files: Sequence[str], cfg: Any, batch: int) -> Callable[[], np.ndarray]:
    """Decode + preprocess ``batch`` of ``files`` with ``cfg`` into one model input: the
    end-to-end extra cost."""
    from res2net.data.transforms import preprocess

    chosen = [files[i % len(files)] for i in range(batch)]
    return lambda: np.stack([preprocess(p, cfg).numpy() for p in chosen])


def _check_against_fp32(
    contenders: Sequence[Contender], model: Any, photos: np.ndarray, size: int
) -> None:
    """Fill each reduced-precision contender's ``accuracy`` against eager FP32 on ``photos``
    (peers with other weights, such as timm's, are left out)."""
    from res2net.deploy.runtimes import EagerRuntime

    reduced = [c for c in contenders if c.precision != "fp32" and c.same_function]
    if not reduced:
        return
    reference = logits_in_chunks(EagerRuntime(model), photos, size)
    for c in reduced:
        c.accuracy = agreement(logits_in_chunks(c.runtime, photos, size), reference)


def _build_contender(
    model: Any, name: str | None, engine: str | Peer, precision: str,
    batch_sizes: Sequence[int], warmup: int, calib: np.ndarray | None,
    base_rss: float | None = None, device: str = "cpu", side: int = 224,
) -> Contender:  # fmt: skip
    """Build the runtime (ours, or a :class:`Peer`'s) and warm it up at every batch size,
    measuring its peak memory.

    The engines built before this one stay resident (they are timed later, in turns), so
    the figure is ``base_rss`` (the process before any engine) plus this build's own rise:
    the peak a process holding only this engine would reach. A peer in another process
    reports its own peak. On a GPU, the card's peak allocation during the build and
    warm-up is recorded too.
    """
    gpu = device.startswith("cuda")
    if gpu:
        import torch

        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    reset_peak_rss()
    before = rss_mib()
    if isinstance(engine, Peer):
        runtime = engine.build(model, name, precision, device)
        label, peer, same = engine.name, True, engine.same_function
    else:
        runtime = build_runtime(model, engine, precision, calib, device, side)
        label, peer, same = engine, False, True
    contender = Contender(label, precision, runtime, None, {b: [] for b in batch_sizes}, device,
                          peer=peer, same_function=same)  # fmt: skip
    for batch in batch_sizes:
        contender.timed(random_batch(batch, side), max(1, warmup), 0)
    peak = peak_rss_mib()
    if None not in (peak, before, base_rss):
        peak = base_rss + peak - before
    own = getattr(runtime, "peak_rss_mib", None)
    contender.peak_rss_mib = own() if callable(own) else peak
    if gpu:
        contender.peak_gpu_mib = torch.cuda.max_memory_allocated(device) / 2**20
    return contender


def bench_model(name: str | None, weights: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The network to time (eval mode) and the facts its rows carry: ``name`` (the row's
    model column), ``gflops``, ``published`` top-1, ``preprocess_cfg`` and ``input_side``
    (the crop of its preprocessing: what is timed, and where GFLOPs are counted).

    :param name: a registered model; ``None`` takes the network from ``weights``, a file
        written by ``res2net train`` (timed at its own crop size, e.g. 32 x 32).
    :param weights: a weight file (default: random weights, which time the same).
    """
    from res2net.models.registry import model_info

    if name is None:
        from res2net.models.counting import count_model
        from res2net.resolve import load_training_export

        network, pre, _, _ = load_training_export(weights)
        _, gflops = count_model(network.config, pre.crop, network.num_classes)
        facts = {"name": str(weights), "gflops": round(gflops, 3), "published": {"top1": None}}
        return network, {**facts, "preprocess_cfg": pre, "input_side": pre.crop}
    from res2net.builder import create_model
    from res2net.models.registry import get_entry
    from res2net.resolve import model_from_weights

    network = model_from_weights(weights, name)[0] if weights else create_model(name)
    pre = get_entry(name).preprocess
    # model_info's GFLOPs are counted at 224 x 224, the crop of every registered model.
    return network.eval(), {**model_info(name), "preprocess_cfg": pre, "input_side": pre.crop}


def measure_engines(
    name: str | None,
    plan: Sequence[tuple[str | Peer, str]],
    batch_sizes: Sequence[int],
    *,
    warmup: int = 10,
    iters: int = 50,
    with_preprocess: bool = False,
    calib: np.ndarray | None = None,
    photos: Sequence[str | os.PathLike] | None = None,
    device: str = "cpu",
    log: Log = _stderr,
    weights: str | None = None,
) -> list[Measurement]:
    """Latency rows of one model in each (engine or peer, precision) of ``plan``, timed
    together.

    All runtimes are built and warmed up first (each one's peak memory measured alone), then
    timed round-robin (:func:`res2net.bench.timing.time_round_robin`); with
    ``with_preprocess`` every timed call decodes + preprocesses ``photos`` first, so the
    model-only and end-to-end figures come from the same calls. An engine that cannot be
    built here is skipped with a message.
    """
    model, info = bench_model(name, weights)
    base_rss = rss_mib()
    contenders = []
    for engine, precision in plan:
        label = engine.name if isinstance(engine, Peer) else engine
        log(f"{info['name']} {label} {precision}: build + warm-up")
        try:
            contenders.append(
                _build_contender(model, name, engine, precision, batch_sizes, warmup, calib,
                                 base_rss, device, info["input_side"])  # fmt: skip
            )
        except (ImportError, FileNotFoundError, RuntimeError, ValueError) as exc:
            log(f"  skipped {label}: {str(exc).splitlines()[0]}")
    try:
        log(f"{info['name']}: timing {len(contenders)} engines in turns")
        cfg = info["preprocess_cfg"]
        files = _image_files(photos) if with_preprocess else []
        inputs = (lambda batch: _photo_batch_fn(files, cfg, batch)) if with_preprocess else None
        time_round_robin(contenders, batch_sizes, iters, inputs, info["input_side"])
        _check_reduced(contenders, model, cfg, calib, photos, batch_sizes[-1], info, log)
    finally:
        for c in contenders:
            if hasattr(c.runtime, "close"):
                c.runtime.close()
    return [row for c in contenders for row in _rows(c, info, batch_sizes)]


def _check_reduced(contenders, model, cfg, calib, photos, size, info, log) -> None:
    """Reduced precisions against eager FP32 on the calibration images or ``photos``."""
    if all(c.precision == "fp32" for c in contenders):
        return
    if calib is None and not photos:
        log(f"{info['name']}: no photos given, reduced precisions not checked against FP32")
        return
    log(f"{info['name']}: reduced precisions against eager FP32 on the photos")
    images = calib if calib is not None else load_photos(photos, cfg)
    _check_against_fp32(contenders, model, images, size)


def _rows(c: Contender, info: dict[str, Any], batch_sizes: Sequence[int]) -> list[Measurement]:
    """The table rows of one timed contender, one per batch size."""
    published = c.precision == "fp32" and c.same_function
    rows = []
    for batch in batch_sizes:
        times = c.times[batch]
        median = statistics.median(times)
        row = Measurement(
            info["name"], c.engine, c.precision, batch, round(median, 3),
            round(float(np.percentile(times, 90)), 3), round(median / batch, 3),
            peak_rss_mib=c.peak_rss_mib, gflops=info["gflops"],
            top1=info["published"]["top1"] if published else None,
            peer=c.peer, device=c.device,
            peak_gpu_mib=None if c.peak_gpu_mib is None else round(c.peak_gpu_mib, 1),
            input_side=info["input_side"],
        )  # fmt: skip
        if c.accuracy is not None:
            row.top1_agreement, row.max_rel_diff = c.accuracy
        if hasattr(c.runtime, "inference_precisions"):
            row.runs_as = ",".join(sorted(c.runtime.inference_precisions()))
        if c.e2e.get(batch):
            row.with_preprocess_ms = round(statistics.median(c.e2e[batch]), 3)
        rows.append(row)
    return rows


def _plan(
    engines: Sequence[str],
    peers: Sequence[Peer],
    precisions: Sequence[str],
    name: str | None,
    device: str,
    log: Log,
) -> list[tuple[str | Peer, str]]:
    """(engine or peer, precision) pairs measured for ``name`` on ``device``."""
    chosen: list[tuple[str | Peer, str]] = []
    for precision in precisions:
        for engine in engines:
            if runs(engine, precision, device):
                chosen.append((engine, precision))
            elif precision != "int8":  # INT8 is measured where it exists; say so for the rest
                log(f"skip {engine} {precision}: not measured on {device}")
    for precision in precisions:
        chosen += [(peer, precision) for peer in peers if peer.runs(name, precision, device)]
    return chosen


def run_benchmark(
    models: Sequence[str | None],
    engines: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = (1, 4, 8),
    precisions: Sequence[str] = ("fp32",),
    *,
    peers: Sequence[Peer] = (),
    with_preprocess: bool = False,
    warmup: int = 10,
    iters: int = 50,
    calib: np.ndarray | None = None,
    photos: Sequence[str | os.PathLike] | None = None,
    limits: Any = None,
    device: str = "cpu",
    log: Log = _stderr,
    weights: str | None = None,
) -> list[Measurement]:
    """Measure every model x engine x precision x batch size, and ``peers`` in the same turns.

    :param engines: default: every engine available on ``device`` (on the CPU without
        ``tensorrt``).
    :param precisions: ``fp32`` (every engine), ``bf16`` (the PyTorch engines; OpenVINO
        with native BF16), ``fp16`` (the PyTorch engines on a GPU), ``int8`` (the engines of
        :data:`res2net.deploy.engines.INT8_ENGINES`, CPU); a combination not measured
        (:func:`runs`) is skipped with a message.
    :param peers: comparison engines (``benchmarks/peers.py``), each where it ``runs``.
    :param with_preprocess: also time decoding + preprocessing of ``photos`` (needs them).
    :param calib: INT8 calibration images (preprocessed); also the images reduced
        precisions are checked on against eager FP32.
    :param photos: image files or folders: decoded for ``with_preprocess`` and, without
        ``calib``, for that check (no check without either).
    :param limits: a :class:`res2net.bench.limits.Limits` measured in this run; fills each
        CPU row's ``limit_ms``.
    :param weights: a weight file for the model(s) (default random; the "vs FP32" agreement
        of reduced precisions means most with real weights); with ``models=[None]``, a file
        written by ``res2net train``, whose network is timed (see :func:`bench_model`).
    :raises ValueError: ``with_preprocess`` without ``photos``.
    """
    from res2net.deploy.runtimes import available_engines

    if with_preprocess and not photos:
        raise ValueError("with_preprocess=True needs photos= (image files or folders)")
    engines = list(engines or [e for e in available_engines(device) if e != "tensorrt"])
    if device.startswith("cuda"):
        import torch

        # cuDNN picks its fastest kernels for every engine, not only for those that ask.
        torch.backends.cudnn.benchmark = True
    rows: list[Measurement] = []
    for name in models:
        plan = _plan(engines, peers, precisions, name, device, log)
        rows += measure_engines(
            name, plan, batch_sizes, warmup=warmup, iters=iters, with_preprocess=with_preprocess,
            calib=calib, photos=photos, device=device, log=log, weights=weights,
        )  # fmt: skip
    if limits is not None:
        _fill_limits(rows, limits)
    return rows


def _fill_limits(rows: Sequence[Measurement], limits: Any) -> None:
    from res2net.models.registry import model_info

    for row in rows:
        if row.device != "cpu":
            continue
        row.gflops = row.gflops or model_info(row.model)["gflops"]
        floor = limits.floor_ms(row.gflops, row.batch, row.precision)
        row.limit_ms = None if floor is None else round(floor, 2)
