"""Write the batch-prediction section of BENCHMARKS.md: images/s, one process vs Ray Data.

A folder of ``--images`` distinct files is made from the six test photos (random crops,
resized to 256-512 px on the long side, JPEG) in a temporary directory. Each setting runs
``res2net.batch_predict`` over the whole folder into a fresh Parquet output; the time is the
wall time of that call (model load, decoding, the model and the writes; for Ray also the
actors' start, not the Ray instance's, which is started once before). Settings are run in
turns, round after round (``--rounds``), so a slow spell of a shared machine hits all alike;
the table gives the median and the best round.

- one process: ``batch_predict(...)`` (decode threads overlapped with the model);
- Ray, 1 actor / 2 actors: a local Ray instance with this machine's CPUs, decode tasks
  reserving 1 CPU each, actors 0.5 CPU each (one model thread per actor).

    .venv/bin/python benchmarks/batch_throughput.py                      # 1,000 images
    .venv/bin/python benchmarks/batch_throughput.py --images 48 --dry-run # check, print only
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from res2net.batch import batch_predict
from res2net.bench.quiet import LoadWatch, add_noise_argument
from res2net.bench.report import cpu_name, write_section

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = sorted((ROOT / "tests" / "data" / "images").glob("*.[pj][np]g"))


def make_folder(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` distinct JPEGs: random crops of the test photos, 256-512 px long side."""
    rng = np.random.default_rng(seed)
    photos = [Image.open(p).convert("RGB") for p in PHOTOS]
    for i in range(count):
        photo = photos[i % len(photos)]
        w, h = photo.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = photo.crop((left, top, left + cw, top + ch))
        scale = rng.uniform(256, 512) / max(cw, ch)
        crop = crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.BICUBIC)
        crop.save(folder / f"img_{i:05d}.jpg", quality=90)


SETTINGS = {
    "one process": {},
    "Ray, 1 actor": {"ray": "local", "num_actors": 1},
    "Ray, 2 actors": {"ray": "local", "num_actors": 2},
}

# `--model tiny`: a Res2Net-50-vd four channels wide (random weights, 10 classes) on the
# usual 256/224 preprocessing: decoding dominates, as with a fast model on a GPU.
TINY_ARCH = {"depth": 50, "width": 4, "scales": 4, "deep_stem": True, "avg_down": True}


def tiny_export(path: Path) -> Path:
    """A `res2net train`-style .safetensors of the tiny network, which predict can load."""
    import json

    import torch

    from res2net.engine.checkpoint import export_weights
    from res2net.models.res2net import Res2Net, Res2NetConfig

    torch.manual_seed(0)
    model = Res2Net(Res2NetConfig(**TINY_ARCH), num_classes=10).eval()
    pre = {"resize_short": 256, "crop": 224, "mean": [0.5] * 3, "std": [0.5] * 3}
    meta = {"arch": TINY_ARCH, "model": "tiny", "num_classes": 10, "classes": None}
    meta["preprocess"] = {**pre, "style": "paddle"}
    return export_weights(model, path, {"res2net_training": json.dumps(meta)})


def model_name(args) -> str:
    if args.model == "tiny":
        return "`tiny` (a Res2Net-50-vd 4 channels wide, 10 classes, 224 x 224 input)"
    return args.model


def model_args(args, work: Path) -> dict:
    if args.model == "tiny":
        return {"model": None, "weights": tiny_export(work / "tiny.safetensors")}
    return {"model": args.model}


def run_rounds(folder: Path, work: Path, args) -> dict[str, list[float]]:
    """Seconds per setting per round, settings in turns."""
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    model = model_args(args, work)
    for r in range(args.rounds):
        for name, extra in SETTINGS.items():
            out = work / f"out_{r}.parquet"
            start = time.perf_counter()
            summary = batch_predict(
                [folder],
                out,
                **model,
                engine=args.engine,
                rows_per_part=args.rows_per_part,
                progress=False,
                **extra,
            )
            times[name].append(time.perf_counter() - start)
            assert summary["written"] == args.images and summary["failed"] == 0, summary
            shutil.rmtree(out)
            print(f"round {r + 1} {name}: {args.images / times[name][-1]:.1f} images/s")
    return times


def component_costs(folder: Path, work: Path, args) -> dict[str, float]:
    """ms per image of decoding + preprocessing (one thread) and of the model alone (batches
    of 8, one thread, as in an actor), median of 3 passes over the first 48 images."""
    import torch

    from res2net.deploy.predictor import Predictor

    model = model_args(args, work)
    predictor = Predictor(model["model"], model.get("weights"), engine=args.engine)
    files = sorted(folder.iterdir())[:48]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    decode, forward = [], []
    try:
        batch = torch.stack([predictor.preprocess(f) for f in files[:8]]).numpy()
        predictor.predict_batch(batch)  # warm-up
        for _ in range(3):
            start = time.perf_counter()
            for f in files:
                predictor.preprocess(f)
            decode.append((time.perf_counter() - start) / len(files))
            start = time.perf_counter()
            for _ in range(len(files) // 8):
                predictor.predict_batch(batch)
            forward.append((time.perf_counter() - start) / (len(files) // 8 * 8))
    finally:
        torch.set_num_threads(threads)
    return {"decode": 1000 * statistics.median(decode), "model": 1000 * statistics.median(forward)}


def scaling_paragraph(costs: dict[str, float], args) -> str:
    decode, model = costs["decode"], costs["model"]
    per_actor = 1000 / model
    cores = decode / model
    return (
        f"Per image, measured in the same run with one thread: decoding + preprocessing "
        f"{decode:.1f} ms, the {args.model} model {model:.1f} ms (batches of 8). So one "
        f"decode core keeps up with {model / decode:.2f} model threads: a CPU actor running "
        f"{per_actor:.0f} images/s needs {cores:.2f} cores of decode tasks beside it. "
        "Scaling out: Ray Data places decode tasks on any node with a free CPU and keeps "
        "each actor fed; per node set `--actors` to the GPUs (one GPU each, `--device cuda`, "
        "`--cpus-per-actor` small, e.g. 0.5, so the rest of the cores decode) or, on CPU "
        "nodes, to cores / (threads per actor + decode cores per actor). With a GPU the "
        "model runs at hundreds to thousands of images/s per card, so the bottleneck moves to "
        f"decoding: a card classifying 1,000 images/s needs about {decode:.0f} cores of "
        "decode tasks at the rate above (fewer for smaller JPEGs, or with `--max-pixels` "
        "keeping huge files out); with a large model on CPUs the model stays the bottleneck. "
        "Parts are written by the actors straight to the shared output folder, one file per "
        "`--rows-per-part` images, so the output is never a single-writer bottleneck."
    )


def isa() -> str:
    """The widest x86 vector extension the CPU reports (AVX-512 / AVX2), for the machine line."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "ISA unknown"
    return "AVX-512" if " avx512f" in flags else "AVX2" if " avx2" in flags else "no AVX2"


def section(times: dict[str, list[float]], args, costs: dict[str, float]) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        "## Batch prediction: one process vs Ray Data (CPU)",
        "",
        f"Measured {today} on {cpu_name()} ({isa()}), {os.cpu_count()} cores, by "
        f"`python benchmarks/batch_throughput.py` (`res2net.batch_predict`): {args.images} "
        f"distinct JPEGs (crops of the test photos, 256-512 px), model {model_name(args)} with "
        f"random weights, engine `{args.engine}`, {args.rows_per_part} images per part, Parquet "
        f"output; {args.rounds} round(s), settings in turns. {args.note}",
        "",
        "| Setting | images/s (median) | images/s (best) |",
        "|---|---|---|",
    ]
    for name, secs in times.items():
        rates = [args.images / s for s in secs]
        lines.append(f"| {name} | {statistics.median(rates):.1f} | {max(rates):.1f} |")
    lines += ["", scaling_paragraph(costs, args)]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--model", default="Res2Net50_26w_4s", help="registered name, or tiny")
    p.add_argument("--engine", default="eager")
    p.add_argument("--rows-per-part", type=int, default=32)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--note", default="", help="a sentence added to the section")
    p.add_argument("--dry-run", action="store_true", help="print the section, do not write it")
    add_noise_argument(p)
    args = p.parse_args()

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="warning")
    try:
        with tempfile.TemporaryDirectory() as tmp, LoadWatch() as load:
            folder = Path(tmp) / "images"
            folder.mkdir()
            make_folder(folder, args.images)
            costs = component_costs(folder, Path(tmp), args)
            print(costs)
            times = run_rounds(folder, Path(tmp), args)
    finally:
        ray.shutdown()
    text = section(times, args, costs)
    print(text)
    if not args.dry_run:
        write_section(
            ROOT / "BENCHMARKS.md", "batch", text, load=load, allow_noisy=args.allow_noisy
        )


if __name__ == "__main__":
    main()
