"""Write the start-up section of BENCHMARKS.md: time to first prediction per front end.

Each front end runs as a new user runs it, a fresh ``python -m res2net ...`` process, and is
timed from start to exit (wall time, median of ``--runs``): one image classified, or the
command's first answer. Issue 26 set the budgets on 2 quiet cores:

- ``res2net models`` on first use (an empty cache folder): 1.5 s;
- one-image ``predict`` from an exported file: 3 s;
- one-image ``predict`` from a registered name with the default engine: 6 s;
- ``train --resume`` with nothing left to do: 2 s;
- Ray: its start-up overhead is reported (``predict --output`` with and without ``--ray``).

A small digits model is trained and exported first (not timed). Where this checkout's
``predict`` does not take an exported file yet, the row says so. Prints the section; only
``--write`` writes it, and only from a quiet machine (see ``res2net.bench.quiet``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from res2net.bench.quiet import LoadWatch, add_noise_argument  # noqa: E402
from res2net.bench.report import cpu_name, write_section  # noqa: E402

PHOTO = ROOT / "tests" / "data" / "images" / "rocket.jpg"
REGISTERED = "Res2Net50_vd_26w_4s"


@dataclass
class Case:
    """One front end: its command line (after ``python -m res2net``) and its budget (s)."""

    label: str
    argv: list[str]
    budget: float | None = None
    env: dict[str, str] | None = None
    fresh_output: bool = False  # an --output folder of its own per run
    optional: bool = False  # a front end this checkout may not have yet


def _run(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str | None]:
    """Wall seconds of one ``python -m res2net ARGV`` process, and its error (None: exit 0)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "res2net", *argv], env=full_env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        return seconds, f"exit {proc.returncode}: {lines[-1][:160]}"
    return seconds, None


def prepare(tmp: Path) -> dict:
    """Train a small digits model (one epoch, 40 images per class), export it to ONNX, and
    leave a finished run to resume; returns the files the cases use (not timed)."""
    from res2net.data.datasets import render_digits

    data = tmp / "digits"
    render_digits(data, size=32)
    for split, keep in (("train", 40), ("val", 4)):
        for folder in (data / split).iterdir():
            for extra in sorted(folder.glob("*.png"))[keep:]:
                extra.unlink()
    config = ROOT / "configs" / "digits_demo.yaml"
    overrides = [f"data.train_dir={data / 'train'}", f"data.val_dir={data / 'val'}",
                 f"output.dir={tmp / 'run'}", "schedule.epochs=1", "schedule.warmup_epochs=0",
                 "model.arch.width=4", "output.tensorboard=false", "output.plot=false",
                 "train.device=cpu"]  # fmt: skip
    _, error = _run(["train", "--config", str(config), *overrides])
    if error:
        raise RuntimeError(f"training the start-up model failed: {error}")
    weights = tmp / "run" / "final.safetensors"
    _, error = _run(["export", "--weights", str(weights), "--format", "onnx",
                     "--output", str(tmp / "export" / "digits")])  # fmt: skip
    if error:
        raise RuntimeError(f"exporting the start-up model failed: {error}")
    return {"weights": weights, "onnx": next((tmp / "export").glob("*.onnx")),
            "image": sorted((data / "val").rglob("*.png"))[0], "config": config,
            "overrides": overrides}  # fmt: skip


def cases(files: dict, tmp: Path) -> list[Case]:
    """The front ends timed, in the order of the table."""
    image, weights = str(files["image"]), str(files["weights"])
    resume = ["train", "--config", str(files["config"]), *files["overrides"], "--resume"]
    return [
        Case("`res2net models`, empty cache folder", ["models"], 1.5,
             env={"RES2NET_CACHE": str(tmp / "empty-cache")}),
        Case("`predict` 1 image, exported ONNX file (`--model x.onnx`)",
             ["predict", image, "--model", str(files["onnx"])], 3.0, optional=True),
        Case(f"`predict` 1 photo, registered name ({REGISTERED}), default engine, random "
             "weights", ["predict", str(PHOTO), "--model", REGISTERED, "--random-weights"], 6.0),
        Case("`predict` 1 image, `res2net train` file (`--weights`)",
             ["predict", image, "--weights", weights]),
        Case("`train --resume`, nothing left to do", resume, 2.0),
        Case("`predict --output` 1 image, one process", ["predict", image, "--weights",
             weights], fresh_output=True),
        Case("`predict --output --ray` 1 image, local Ray", ["predict", image, "--weights",
             weights, "--ray"], fresh_output=True),
    ]  # fmt: skip


def measure(case: Case, runs: int, tmp: Path) -> tuple[list[float], str | None]:
    """``runs`` wall times of ``case`` (after one untimed run that fills the OS file cache);
    stops at the first error, which it returns."""
    times: list[float] = []
    for i in range(runs + 1):
        argv = case.argv
        if case.fresh_output:
            argv = [*argv, "--output", str(tmp / f"out-{len(case.label)}-{i}.jsonl")]
        seconds, error = _run(argv, case.env)
        if error:
            return times, error
        if i > 0:
            times.append(seconds)
        print(f"{case.label}: {seconds:.2f} s", file=sys.stderr)
    return times, None


def _row(case: Case, times: list[float], error: str | None) -> str:
    budget = f"{case.budget:g} s" if case.budget else "-"
    if error:
        verdict = "not supported by this checkout" if case.optional else "failed"
        return f"| {case.label} | - | - | {budget} | {verdict}: {error} |"
    median = statistics.median(times)
    verdict = "-" if not case.budget else ("within" if median <= case.budget else "OVER")
    return (f"| {case.label} | {median:.2f} | {min(times):.2f}-{max(times):.2f} | {budget} | "
            f"{verdict} |")  # fmt: skip


def section(results: list[tuple[Case, list[float], str | None]], runs: int) -> str:
    """The Markdown section: one row per front end, then Ray's start-up overhead."""
    lines = [
        "## Start-up: time to first prediction (CPU)",
        "",
        f"Measured {datetime.date.today()} by `python benchmarks/startup.py`: each front end a "
        f"fresh `python -m res2net` process timed to its exit (wall seconds, median of {runs} "
        "runs after one untimed run). Budgets from issue 26, on 2 quiet cores. "
        f"CPU: {cpu_name()}, {os.cpu_count()} cores.",
        "",
        "| Front end | Median (s) | Range (s) | Budget | Verdict |",
        "|---|---|---|---|---|",
        *(_row(case, times, error) for case, times, error in results),
    ]
    by_label = {case.label: times for case, times, error in results if not error}
    one, ray = (by_label.get(c.label) for c in (results[-2][0], results[-1][0]))
    if one and ray:
        overhead = statistics.median(ray) - statistics.median(one)
        lines += ["", f"Ray start-up overhead (one image, local Ray against one process): "
                      f"{overhead:.1f} s."]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per front end")
    ap.add_argument("--write", action="store_true", help="write BENCHMARKS.md's section")
    add_noise_argument(ap)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # Watched from before the preparation (an export, a training file): its own load
        # would otherwise read as somebody else's in the "before" sample.
        with LoadWatch() as load:
            files = prepare(tmp)
            results = []
            for case in cases(files, tmp):
                results.append((case, *measure(case, args.runs, tmp)))
    text = section(results, args.runs)
    print(text)
    if args.write:
        path = write_section(ROOT / "BENCHMARKS.md", "startup", text, load=load,
                             allow_noisy=args.allow_noisy)  # fmt: skip
        print(f"updated {path}")


if __name__ == "__main__":
    main()
