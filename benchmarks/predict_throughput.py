"""Write the predict-throughput section of BENCHMARKS.md: images/s over a folder of 64 photos.

The folder is made from the six test photos (random crops, resized to 320-1600 px on the
long side, saved as JPEG and PNG) in a temporary directory. Three figures per setting,
each the median of ``--runs`` runs after one warm-up run:

- end to end: ``Predictor.predict(files)`` (decode + preprocess in worker threads,
  overlapped with the model), images/s;
- preprocessing alone: decode + preprocess of every file, one thread, ms/image;
- model alone: ``predict_batch`` on the already preprocessed batches, ms/image.

Run it on a quiet machine (nothing else running): other processes make every figure worse.

    .venv/bin/python benchmarks/predict_throughput.py                        # full run
    .venv/bin/python benchmarks/predict_throughput.py --runs 1 --dry-run     # check, print only
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from res2net.bench.quiet import LoadWatch, add_noise_argument
from res2net.bench.report import cpu_name, write_section
from res2net.deploy.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = sorted((ROOT / "tests" / "data" / "images").glob("*.[pj][np]g"))


def make_folder(folder: Path, count: int = 64, seed: int = 0) -> list[Path]:
    """``count`` varied photos: random crops of the test photos, resized, JPEG or PNG."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        photo = Image.open(PHOTOS[i % len(PHOTOS)]).convert("RGB")
        w, h = photo.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = photo.crop((left, top, left + cw, top + ch))
        scale = rng.uniform(320, 1600) / max(cw, ch)
        crop = crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.BICUBIC)
        path = folder / f"photo_{i:02d}.{'png' if i % 4 == 0 else 'jpg'}"
        crop.save(path, quality=90) if path.suffix == ".jpg" else crop.save(path)
        paths.append(path)
    return paths


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``runs`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(predictor: Predictor, files: list[Path], runs: int) -> dict[str, float]:
    """End-to-end images/s, and preprocessing / model ms per image."""
    n = len(files)
    end_to_end = median_seconds(lambda: predictor.predict(files, progress=False), runs)
    prep = median_seconds(lambda: [predictor.preprocess(f) for f in files], runs)
    tensors = np.stack([predictor.preprocess(f).numpy() for f in files])
    bs = predictor.batch_size
    batches = [tensors[i : i + bs] for i in range(0, n, bs)]
    model = median_seconds(lambda: [predictor.predict_batch(b) for b in batches], runs)
    return {
        "images_per_s": n / end_to_end,
        "prep_ms": 1000 * prep / n,
        "model_ms": 1000 * model / n,
        "sequential_images_per_s": n / (prep + model),
    }


def section(rows: list[tuple[str, int, int, dict[str, float]]], args) -> str:
    """The Markdown text between the markers."""
    cores = len(os.sched_getaffinity(0))
    lines = [
        "## Predict throughput (CPU)",
        "",
        f"Measured {datetime.date.today()} on {cpu_name()}, {cores} cores, by "
        f"`python benchmarks/predict_throughput.py`: {args.count} photos (crops of the test "
        "photos, 320-1600 px, JPEG/PNG), random weights, engine "
        f"`{args.engine}`, one warm-up then the median of {args.runs} runs. End to end = "
        "`Predictor.predict` on the files (decode + preprocess in worker threads, overlapped "
        "with the model); preprocessing and model are timed alone, one after the other; "
        "'no overlap' is what running them in sequence would give.",
        "",
        "| Model | Batch | Workers | End to end (img/s) | Preprocess (ms/img) "
        "| Model (ms/img) | No overlap (img/s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, batch, workers, r in rows:
        lines.append(
            f"| {model} | {batch} | {workers} | {r['images_per_s']:.1f} | {r['prep_ms']:.1f} "
            f"| {r['model_ms']:.1f} | {r['sequential_images_per_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="Res2Net50_vd_26w_4s")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--workers", default="0,2", help="decoding threads to compare")
    ap.add_argument("--engine", default="eager")
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dry-run", action="store_true", help="print, write nothing")
    add_noise_argument(ap)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, LoadWatch() as load:
        files = make_folder(Path(tmp), args.count)
        for model in args.models.split(","):
            for batch in map(int, args.batch_sizes.split(",")):
                for workers in map(int, args.workers.split(",")):
                    predictor = Predictor(
                        model, engine=args.engine, batch_size=batch, num_workers=workers
                    )
                    result = measure(predictor, files, args.runs)
                    print(model, batch, workers, {k: round(v, 2) for k, v in result.items()})
                    rows.append((model, batch, workers, result))
    text = section(rows, args)
    if args.dry_run:
        print(text)
    else:
        path = write_section(ROOT / "BENCHMARKS.md", "predict-throughput", text, load=load,
                             allow_noisy=args.allow_noisy)  # fmt: skip
        print(f"updated {path}")


if __name__ == "__main__":
    main()
