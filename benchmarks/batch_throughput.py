"""Write the batch-prediction section of BENCHMARKS.md: model alone, one process, Ray Data.

The targets (issue 24, item 6): one process ``batch_predict`` at least 0.9x the model alone,
and Ray with one actor per core at least 0.85x one process, on 1,000 JPEGs.

The model is an exported file, written into a temporary folder by ``export_model`` as
``res2net export`` writes it: OpenVINO IR of ``--model`` (random weights), FP32 by default
or INT8 (``--precision int8``, calibrated on ``tests/data/images``). A folder of ``--images``
distinct JPEGs is made from the six test photos (random crops, 256-512 px on the long side).
Per round, in turns (the order rotating from round to round, so a busy spell of a shared
machine hits all alike):

- model alone: ``Predictor(file).predict_batch`` on already preprocessed batches of
  ``--batch-size`` (8 distinct batches, cycled), as many images as the folder holds; the
  model is compiled once, before the rounds;
- one process: ``batch_predict(folder, model=file)`` into a fresh Parquet output: wall time
  of the call (model load, decoding threads overlapped with the model, the writes);
- Ray: the same call with ``ray="local"`` (a Ray instance started once, before the rounds)
  and one actor per core: Ray Data decode tasks feeding the actors, each actor running the
  model on the CPUs it reserves.

Beside the table, the components are measured in the same run (one thread each, over the
first 64 images): decoding + preprocessing, the model at the actors' thread count, and the
time to load the model, so that a missed target comes with its measured reason.

Default: FP32, 1,000 images, 2 rounds: about 7 minutes on 2 quiet cores (the FP32 model
runs about 20 images/s there; INT8 about three times as fast, its run correspondingly shorter,
but start-up and decoding then weigh three times as much against the model).

    .venv/bin/python benchmarks/batch_throughput.py                       # full run
    .venv/bin/python benchmarks/batch_throughput.py --images 48 --dry-run # check, print only
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from photos import random_crops

from res2net.batch import batch_predict
from res2net.bench.quiet import LoadWatch, add_noise_argument, own_cores
from res2net.bench.report import cpu_name, write_section

ROOT = Path(__file__).resolve().parents[1]
ONE_PROCESS_TARGET = 0.9  # one process / model alone (issue 24 item 6)
RAY_TARGET = 0.85  # Ray / one process
SAMPLE = 64  # images for the component measurements
SIDE_BY_SIDE_S = 20.0  # seconds the side-by-side model processes run


def log(message: str) -> None:
    """A progress line on stderr (stdout carries the section in a dry run)."""
    print(f"[batch_throughput {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr,
          flush=True)  # fmt: skip


def make_folder(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` distinct JPEGs: random crops of the test photos, 256-512 px long side."""
    paths = []
    for i, crop in enumerate(random_crops(count, seed, keep=(0.6, 1.0), long_side=(256, 512))):
        paths.append(folder / f"img_{i:05d}.jpg")
        crop.save(paths[-1], quality=90)
    return paths


def export(folder: Path, args) -> Path:
    """The OpenVINO IR of ``args.model``, as ``res2net export [--int8]`` writes it."""
    from res2net.builder import create_model
    from res2net.card import load_card
    from res2net.deploy.export import export_model
    from res2net.deploy.int8 import load_calibration

    start = time.perf_counter()
    model, card = create_model(args.model, pretrained=False).eval(), load_card(args.model)
    calib = None
    if args.precision == "int8":
        calib = load_calibration([ROOT / "tests" / "data" / "images"], card.preprocess)
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout is the section
        path = export_model(
            model, folder / f"{args.model}_{args.precision}", fmt="openvino", name=args.model,
            preprocess=card.preprocess, int8_calibration=calib,
        )  # fmt: skip
    log(f"exported {args.precision} in {time.perf_counter() - start:.1f} s")
    return path


def prepared_batches(predictor, files: list[Path], batch: int) -> list[np.ndarray]:
    """Up to 8 distinct preprocessed batches of ``batch`` images."""
    import torch

    count = min(len(files) // batch, 8) or 1
    return [
        torch.stack([predictor.preprocess(f) for f in files[i * batch : (i + 1) * batch]]).numpy()
        for i in range(count)
    ]


# Seconds from the call to its first part file, per setting ("one process", "ray") and round.
FIRST_PART_S: dict[str, list[float]] = {}


class FirstPart:
    """Watches an output folder and records when its first part file appears (every 50 ms):
    how long a run took to start classifying, model load and Ray's actors included."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.seconds = folder, float("nan")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> FirstPart:
        self._start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        from res2net.batch.parts import part_files

        while not self._stop.wait(0.05):
            if part_files(self.folder, "parquet"):
                self.seconds = time.perf_counter() - self._start
                return


def setting_runs(model: Path, folder: Path, work: Path, args) -> dict:
    """Setting name -> a function timing one pass of it (seconds)."""
    from res2net.deploy.predictor import Predictor

    predictor = Predictor(model, batch_size=args.batch_size)
    batches = prepared_batches(predictor, sorted(folder.iterdir()), args.batch_size)
    calls = -(-args.images // args.batch_size)

    def model_alone() -> float:
        predictor.predict_batch(batches[0])  # keeps it warm after the other settings
        start = time.perf_counter()
        for batch in itertools.islice(itertools.cycle(batches), calls):
            predictor.predict_batch(batch)
        return (time.perf_counter() - start) * args.images / (calls * args.batch_size)

    def predict(name: str, **extra) -> float:
        out = work / "out.parquet"
        start = time.perf_counter()
        with FirstPart(out) as first:
            summary = batch_predict(
                [folder], out, model=model, batch_size=args.batch_size,
                rows_per_part=args.rows_per_part, progress=False, **extra,
            )  # fmt: skip
        seconds = time.perf_counter() - start
        assert summary["written"] == args.images and summary["failed"] == 0, summary
        FIRST_PART_S.setdefault(name, []).append(first.seconds)
        shutil.rmtree(out)
        return seconds

    ray_extra = {"ray": "local", "num_actors": args.actors, "cpus_per_actor": args.cpus_per_actor}
    return {
        "model alone": model_alone,
        "one process": lambda: predict("one process"),
        "ray": lambda: predict("ray", **ray_extra),
    }


def run_rounds(runs: dict, args) -> dict[str, list[float]]:
    """Images/s per setting per round, settings in turns (rotated every round)."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            rates[name].append(args.images / runs[name]())
            log(f"round {r + 1} {name}: {rates[name][-1]:.1f} images/s")
    return rates


def component_costs(model: Path, folder: Path, args) -> dict[str, float]:
    """Per image, median of 3 passes over the first images: decoding + preprocessing in one
    thread (ms), the model at the actors' threads (ms, in batches); and the model's load (s)."""
    from res2net.deploy.predictor import Predictor

    files = sorted(folder.iterdir())[:SAMPLE]
    threads = os.environ.get("RES2NET_THREADS")
    os.environ["RES2NET_THREADS"] = str(max(1, round(args.cpus_per_actor)))
    try:
        start = time.perf_counter()
        actor_like = Predictor(model, batch_size=args.batch_size)
        load_s = time.perf_counter() - start
    finally:
        if threads is None:
            os.environ.pop("RES2NET_THREADS")
        else:
            os.environ["RES2NET_THREADS"] = threads
    batches = prepared_batches(actor_like, files, args.batch_size)
    actor_like.predict_batch(batches[0])  # warm-up
    decode, forward = [], []
    for _ in range(3):
        start = time.perf_counter()
        for f in files:
            actor_like.preprocess(f)
        decode.append((time.perf_counter() - start) / len(files))
        start = time.perf_counter()
        for batch in batches:
            actor_like.predict_batch(batch)
        forward.append((time.perf_counter() - start) / (len(batches) * args.batch_size))
    return {"decode_ms": 1000 * statistics.median(decode),
            "actor_model_ms": 1000 * statistics.median(forward), "load_s": load_s,
            "side_by_side": side_by_side(model, files, args)}  # fmt: skip


def _model_process(model: str, files: list[Path], threads: int, batch: int, seconds: float,
                   ready, results) -> None:  # fmt: skip
    """One actor's work without Ray: the model at ``threads`` threads in its own process,
    timed over ``seconds`` once every such process is ready (``ready``: a barrier)."""
    os.environ["RES2NET_THREADS"] = str(threads)
    from res2net.deploy.predictor import Predictor

    predictor = Predictor(model, batch_size=batch)
    batches = prepared_batches(predictor, files, batch)
    predictor.predict_batch(batches[0])  # warm-up
    ready.wait()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        predictor.predict_batch(batches[done % len(batches)])
        done += 1
    results.put(done * batch / (time.perf_counter() - start))


def side_by_side(model: Path, files: list[Path], args, seconds: float = SIDE_BY_SIDE_S) -> float:
    """Images/s of ``args.actors`` processes running the model at once, each at an actor's
    threads on already preprocessed batches: what the actors' model work allows together on
    these cores, without Ray's scheduling, decoding or writes."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Barrier(args.actors), ctx.Queue()
    threads = max(1, round(args.cpus_per_actor))
    procs = [
        ctx.Process(
            target=_model_process,
            args=(str(model), files, threads, args.batch_size, seconds, ready, results),
        )  # fmt: skip
        for _ in range(args.actors)
    ]
    for proc in procs:
        proc.start()
    rates = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    return sum(rates)


def ceilings(costs: dict[str, float], model_rate: float, args) -> dict[str, float]:
    """What the components allow, in images/s: one process (the model alone with decoding's
    CPU time taken from the same cores, plus the model's load) and Ray (the actors' model
    and decoding sharing the cores, plus one load per actor in parallel)."""
    cores, decode_s = own_cores(), costs["decode_ms"] / 1000
    per_image = 1 / model_rate + decode_s / cores
    one = args.images / (args.images * per_image + costs["load_s"])
    # The actors' model work as measured side by side, with decoding's CPU time taken from
    # the same cores.
    ray_rate = 1 / (1 / costs["side_by_side"] + decode_s / cores)
    return {"one process": one, "ray": args.images / (args.images / ray_rate + costs["load_s"])}


def startup(name: str, block_s: float) -> float:
    """Median seconds from a setting's call to its first part, less one block's model time:
    what it spent starting (loading the model; for Ray, also starting the actors)."""
    return statistics.median(FIRST_PART_S[name]) - block_s


def reasons(rates: dict[str, list[float]], costs: dict[str, float], args) -> list[str]:
    """A sentence per missed target, giving the measured cause."""
    model, one, ray = (statistics.median(v) for v in rates.values())
    limit = ceilings(costs, model, args)
    out = []
    if one / model < ONE_PROCESS_TARGET:
        out.append(
            f"One process reaches {one / model:.3f}x the model alone (target "
            f"{ONE_PROCESS_TARGET}x): decoding + preprocessing costs {costs['decode_ms']:.1f} ms "
            f"of CPU per image, taken from the {own_cores()} cores the model runs on "
            f"({1000 / model:.1f} ms per image alone), and it started classifying after "
            f"{startup('one process', args.rows_per_part / model):.1f} s; the components allow "
            f"{limit['one process']:.1f} images/s ({limit['one process'] / model:.2f}x), "
            f"measured {one:.1f}."
        )
    if ray / one < RAY_TARGET:
        block_s = args.rows_per_part * costs["actor_model_ms"] / 1000
        out.append(
            f"Ray reaches {ray / one:.3f}x one process (target {RAY_TARGET}x): each actor runs "
            f"the model on {max(1, round(args.cpus_per_actor))} thread(s) at "
            f"{costs['actor_model_ms']:.1f} ms per image alone; {args.actors} such processes "
            f"side by side ran {costs['side_by_side']:.1f} images/s together (the model "
            f"alone on all cores: {model:.1f}), so with the decode tasks on {own_cores()} "
            f"cores the actors allow {limit['ray']:.1f} images/s "
            f"({limit['ray'] / one:.2f}x one process), measured {ray:.1f}. Ray started "
            f"classifying after {startup('ray', block_s):.1f} s (actors started, model loaded "
            f"in each; one process: {startup('one process', args.rows_per_part / model):.1f} s)"
            f" of its {args.images / ray:.1f} s; the rest of the gap is Ray's scheduling and "
            f"moving the decoded blocks ({-(-args.images // args.rows_per_part)} blocks of "
            f"{args.rows_per_part} for {args.actors} actors)."
        )
    return out


def section(rates: dict[str, list[float]], costs: dict[str, float], args) -> str:
    model, one, _ = (statistics.median(v) for v in rates.values())
    lines = [
        "## Batch prediction: model alone, one process, Ray Data (CPU)",
        "",
        f"Measured {datetime.date.today()} on {cpu_name()}, {own_cores()} cores, by "
        f"`python benchmarks/batch_throughput.py` (`res2net.batch_predict`): {args.images} "
        f"distinct JPEGs (crops of the test photos, 256-512 px), {args.model} (random "
        f"weights) exported as OpenVINO IR {args.precision.upper()} (`export_model`, as "
        f"`res2net export` writes it), batches of {args.batch_size}, {args.rows_per_part} "
        f"images per part, Parquet output; {args.rounds} round(s), settings in turns. Model "
        "alone: `predict_batch` on preprocessed batches. One process: `batch_predict` (2 "
        f"decoding threads beside the model). Ray: {args.actors} actors (one per core), "
        f"{args.cpus_per_actor:g} CPU reserved each, decode tasks 1 CPU each. Targets: one "
        f"process >= {ONE_PROCESS_TARGET}x the model alone, Ray >= {RAY_TARGET}x one process.",
        "",
        "| Setting | images/s (median) | images/s (best) | Ratio (medians) | Target |",
        "|---|---|---|---|---|",
    ]
    rows = {
        "model alone": ("model alone", None, "-"),
        "one process": ("one process", model, f">= {ONE_PROCESS_TARGET}x model alone"),
        "ray": (f"Ray, {args.actors} actors", one, f">= {RAY_TARGET}x one process"),
    }
    for key, values in rates.items():
        label, ref, target = rows[key]
        ratio = f"{statistics.median(values) / ref:.2f}" if ref else "-"
        lines.append(f"| {label} | {statistics.median(values):.1f} | {max(values):.1f} | "
                     f"{ratio} | {target} |")  # fmt: skip
    lines += [
        "",
        f"Components, measured in the same run over {SAMPLE} of the images: decoding + "
        f"preprocessing {costs['decode_ms']:.1f} ms per image (one thread); the model at an "
        f"actor's {max(1, round(args.cpus_per_actor))} thread(s) {costs['actor_model_ms']:.1f} "
        f"ms per image, and {args.actors} processes doing so side by side (no Ray, "
        f"{SIDE_BY_SIDE_S:g} s) "
        f"{costs['side_by_side']:.1f} images/s together; loading the exported model "
        f"{costs['load_s']:.1f} s.",
        "",
        " ".join(reasons(rates, costs, args)) or "Both targets are met (medians).",
    ]
    if args.note:
        lines += ["", args.note]
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--model", default="Res2Net50_vd_26w_4s", help="registered name")
    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="the IR's precision (int8: calibrated on tests/data/images)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--rows-per-part", type=int, default=25)
    p.add_argument("--actors", type=int, default=own_cores(), help="Ray actors (one per core)")
    p.add_argument("--cpus-per-actor", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--note", default="", help="a sentence added to the section")
    p.add_argument("--dry-run", action="store_true", help="print the section, do not write it")
    add_noise_argument(p)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    start = time.perf_counter()
    # Runnable threads of its own: the engine's on every core plus the Predictor's 2 decoding
    # threads (one process), or an actor per core plus Ray's decode tasks (Ray).
    with tempfile.TemporaryDirectory() as tmp, LoadWatch(own_threads=own_cores() + 2) as load:
        work = Path(tmp)
        folder = work / "images"
        folder.mkdir()
        make_folder(folder, args.images)
        model = export(work, args)
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="warning")
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            costs = component_costs(model, folder, args)
            log(f"components: {costs}")
            rates = run_rounds(setting_runs(model, folder, work, args), args)
        finally:
            ray.shutdown()
    log(f"done in {time.perf_counter() - start:.0f} s")
    text = section(rates, costs, args)
    print(text)
    if not args.dry_run:
        write_section(
            ROOT / "BENCHMARKS.md", "batch", text, load=load, allow_noisy=args.allow_noisy
        )


if __name__ == "__main__":
    main()
