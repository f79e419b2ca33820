"""Time to first prediction: `res2net predict` on one image, from an exported file vs from
weights (which builds the network and converts it for the engine at every start).

Each way runs as a fresh process, as a user runs the command, in turns (A, B, A, B ...), so
a change of load hits both alike; the best and the median of each are printed. Prints only:
it writes no BENCHMARKS.md section (run it on a quiet machine and quote its output).

    python benchmarks/time_to_first_prediction.py [--model NAME] [--format openvino] [--repeats 3]

The weights are the registered architecture's random initialization saved to a file, so
nothing is downloaded: the time to load and convert does not depend on the values.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "tests" / "data" / "images" / "rocket.jpg"


def prepare(name: str, fmt: str, folder: Path) -> tuple[Path, Path]:
    """A weight file of ``name`` and its export in ``fmt`` (made once, not timed)."""
    from res2net.builder import create_model
    from res2net.card import load_card
    from res2net.deploy.export import export_model
    from res2net.weights.io import save_safetensors

    model = create_model(name).eval()
    weights = save_safetensors(model.state_dict(), folder / f"{name}.safetensors")
    card = load_card(name)
    exported = export_model(
        model, folder / f"{name}.x", fmt=fmt, name=name, preprocess=card.preprocess
    )
    return Path(weights), exported


def time_command(args: list[str]) -> float:
    """Wall seconds of one `res2net predict` process, start to exit."""
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "res2net", "predict", str(IMAGE), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"res2net predict {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="Res2Net50_vd_26w_4s", help="registered name")
    parser.add_argument("--format", default="openvino", help="export format (res2net export)")
    parser.add_argument("--engine", default="auto", help="engine when building from weights")
    parser.add_argument("--repeats", type=int, default=3, help="processes per way")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        weights, exported = prepare(args.model, args.format, Path(tmp))
        ways = {
            f"from weights ({args.model}, engine {args.engine})": [
                "--model", args.model, "--weights", str(weights), "--engine", args.engine,
            ],
            f"from the exported file ({exported.name})": ["--model", str(exported)],
        }  # fmt: skip
        times: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(args.repeats):
            for way, command in ways.items():
                times[way].append(time_command(command))
    print(f"time to first prediction, one image, {args.repeats} processes each, in turns:")
    for way, seconds in times.items():
        print(f"  {way}: best {min(seconds):.2f} s, median {statistics.median(seconds):.2f} s")
    print(f"  (load average after: {os.getloadavg()[0]:.2f}; figures are noisy above ~0.5)")


if __name__ == "__main__":
    main()
