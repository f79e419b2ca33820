"""Load-test ``res2net serve`` against the engine's best and write the serving section.

The target (issue 24, item 4): with 16 concurrent clients, ``res2net serve`` reaches at
least 0.9x the engine's best model-only throughput on this machine, for an FP32 and an INT8
exported file. Res2Net50_vd_26w_4s with random weights is exported to OpenVINO IR at FP32
and at INT8 (``export_model``, as ``res2net export`` writes them; INT8 calibrated with NNCF
on the test photos, tests/data/images). Each file is served by a real ``res2net serve``
subprocess with its default serving plan (res2net/deploy/server/plan.py; the plan it chose
is quoted in the section).

Per precision and round, in turns (the order reversed every other round, so a busy spell
hits all alike):

- engine best: the same file in this process, model only, already preprocessed images:
  one call at a time (OpenVINO's latency hint, all cores) and in OpenVINO's throughput
  streams (one caller per stream), each at every batch of ``--batch-sizes``; the best
  images/s of the round;
- tensors: ``--clients`` clients, each sending one preprocessed 224x224 image per request
  over REST with the binary tensor extension (what ``tritonclient.http`` sends);
- JPEG: the same clients, each sending one JPEG photo per request as the raw body of
  ``POST /v1/classify`` (the server decodes and preprocesses).

Reported per row: images/s (median over rounds), the engine's best (median over rounds), the
ratio of the two, the clients' round-trip p50/p99 over all rounds, and failed requests
(must be 0). Run it on a quiet machine (nothing else running): the section is refused
otherwise (see ``--allow-noisy``).

    .venv/bin/python benchmarks/serve_load.py                       # about 6 min on 2 cores
    .venv/bin/python benchmarks/serve_load.py --quick --dry-run     # smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from photos import PHOTOS, random_crops

from res2net.bench.quiet import LoadWatch, add_noise_argument, own_cores
from res2net.bench.report import cpu_name, write_section

ROOT = Path(__file__).resolve().parents[1]
MODEL = "Res2Net50_vd_26w_4s"
PRECISIONS = ("fp32", "int8")
TARGET = 0.9  # served / engine best, issue 24 item 4
HEADER = "Inference-Header-Content-Length"


def log(message: str) -> None:
    """A progress line on stderr (stdout carries the section in a dry run)."""
    print(f"[serve_load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def export_files(folder: Path, calib: int) -> dict[str, Path]:
    """The FP32 and INT8 OpenVINO IR, written by ``export_model`` as ``res2net export`` does."""
    from res2net.builder import create_model
    from res2net.card import load_card
    from res2net.deploy.export import export_model
    from res2net.deploy.int8 import load_calibration

    model, card = create_model(MODEL, pretrained=False).eval(), load_card(MODEL)
    calibration = load_calibration(PHOTOS, card.preprocess, limit=calib)
    files = {}
    for precision in PRECISIONS:
        began = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout is the section
            files[precision] = export_model(
                model, folder / f"{MODEL}_{precision}", fmt="openvino", name=MODEL,
                preprocess=card.preprocess,
                int8_calibration=calibration if precision == "int8" else None,
            )  # fmt: skip
        log(f"exported {precision} in {time.perf_counter() - began:.1f} s")
    return files


def jpeg_photos(count: int, seed: int = 0) -> list[bytes]:
    """``count`` JPEG photos (quality 90), 320-1600 px on the long side, as a user's uploads
    vary (:func:`photos.random_crops`)."""
    blobs = []
    for crop in random_crops(count, seed):
        out = io.BytesIO()
        crop.save(out, format="JPEG", quality=90)
        blobs.append(out.getvalue())
    return blobs


# -- the server ---------------------------------------------------------------------------


@dataclass
class Server:
    """A ``res2net serve`` subprocess on a free port, with the plan it logged."""

    proc: subprocess.Popen
    url: str
    plan: str

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM), as an operator stops it."""
        self.proc.terminate()
        self.proc.wait(300)


def start_server(path: Path, args: argparse.Namespace) -> Server:
    """Serve ``path`` with the default serving plan (REST only); returns once it is ready."""
    log_file = Path(tempfile.mkstemp(prefix="serve-load-", suffix=".log")[1])
    cmd = [
        sys.executable, "-m", "res2net", "serve", "--model", str(path), "--port", "0",
        "--no-grpc", "--max-delay-ms", str(args.max_delay_ms),
        "--max-queue", str(4 * args.clients), "--timeout", "300", "--log-level", "warning",
    ]  # fmt: skip
    with open(log_file, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        text = log_file.read_text()
        ready = re.search(r"REST on (http://[\d.]+:\d+)[^\n]*; ready", text)
        if ready:
            plan = re.search(r"serving plan: ([^\n]*)", text)
            return Server(proc, ready.group(1), plan.group(1) if plan else "not logged")
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start:\n{log_file.read_text()}")


def tensor_request(image: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """One binary-extension inference request for a 1 x 3 x 224 x 224 image."""
    raw = image.astype("<f4").tobytes()
    tensor = {"name": "input", "datatype": "FP32", "shape": list(image.shape),
              "parameters": {"binary_data_size": len(raw)}}  # fmt: skip
    header = json.dumps(
        {"inputs": [tensor], "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}
    ).encode()
    return header + raw, {HEADER: str(len(header)), "Content-Type": "application/octet-stream"}


@dataclass
class Load:
    """What the clients of one timed run saw."""

    images_per_s: float
    latencies_s: list[float]
    failures: list[str]


def run_clients(url: str, bodies: list[tuple[bytes, dict]], clients: int, seconds: float) -> Load:
    """``clients`` threads, each posting one image per request back to back for ``seconds``
    (client ``i`` cycles through ``bodies`` from its own offset)."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(offset: int) -> None:
        with httpx.Client(timeout=300) as session:
            n = offset
            while time.monotonic() < stop_at:
                body, headers = bodies[n % len(bodies)]
                n += 1
                began = time.perf_counter()
                try:
                    response = session.post(url, content=body, headers=headers)
                    ok, why = response.status_code == 200, f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    ok, why = False, repr(exc)
                with lock:
                    (latencies.append(time.perf_counter() - began) if ok else failures.append(why))

    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Load(len(latencies) / (time.perf_counter() - began), latencies, failures)


# -- the engine alone -----------------------------------------------------------------------


def engine_candidates(path: Path, precision: str, batches: list[int]) -> dict[str, tuple]:
    """Name -> (callers, batch) for every way of running the file: one call at a time in
    OpenVINO's latency-compiled runtime, and one caller per stream of its throughput streams."""
    from res2net.deploy.export import load_exported
    from res2net.deploy.server.plan import StreamedOpenVino

    latency = load_exported(path)
    streamed = StreamedOpenVino(path, precision, None)
    candidates = {}
    for batch in batches:
        candidates[f"latency b{batch}"] = ([latency], batch)
        candidates[f"{streamed.streams} streams b{batch}"] = ([streamed] * streamed.streams, batch)
    return candidates


def time_engine(callers: list[Callable], batch: int, seconds: float) -> float:
    """Images/s of ``callers`` (one thread each) calling back to back for ``seconds``."""
    images = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    done = [0] * len(callers)
    callers[0](images)  # warm
    stop_at = time.monotonic() + seconds

    def loop(i: int) -> None:
        while True:  # at least one call each, however slow
            callers[i](images)
            done[i] += batch
            if time.monotonic() >= stop_at:
                return

    began = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(callers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - began)


# -- the measurement ------------------------------------------------------------------------


@dataclass
class Row:
    """One precision served one way: its runs and the engine's best in the same rounds."""

    setting: str  # "tensors" or "JPEG"
    precision: str
    plan: str = ""
    served: list[float] = field(default_factory=list)  # images/s per round
    best: list[float] = field(default_factory=list)  # engine best images/s per round
    latencies_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Served over engine best, each the median over rounds."""
        return statistics.median(self.served) / statistics.median(self.best)


def warm_up(server: Server, name: str, bodies: dict[str, list], clients: int) -> None:
    """A short untimed run of each kind of request (first calls, connection set-up)."""
    for setting, endpoint in (("tensors", f"/v2/models/{name}/infer"), ("JPEG", "/v1/classify")):
        run_clients(server.url + endpoint, bodies[setting], min(clients, 4), 2.0)


def one_round(rows: dict, servers: dict, candidates: dict, bodies: dict, args, flip: bool,
              sweep: dict[str, dict[str, list[float]]]):
    """Each precision's engine sweep and served runs, in turns (reversed when ``flip``); every
    candidate's images/s is appended to ``sweep[precision][candidate]``."""
    endpoints = {"tensors": f"/v2/models/{MODEL}/infer", "JPEG": "/v1/classify"}
    turns = [(p, what) for p in PRECISIONS for what in ("engine", "tensors", "JPEG")]
    best: dict[str, float] = {}
    for precision, what in reversed(turns) if flip else turns:
        if what == "engine":
            rates = {name: time_engine(callers, batch, args.engine_seconds)
                     for name, (callers, batch) in candidates[precision].items()}  # fmt: skip
            best[precision] = max(rates.values())
            for name, rate in rates.items():
                sweep.setdefault(precision, {}).setdefault(name, []).append(rate)
            log(f"{precision} engine: " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()))
            continue
        url = servers[precision].url + endpoints[what]
        load = run_clients(url, bodies[what], args.clients, args.duration)
        row = rows[(what, precision)]
        row.served.append(load.images_per_s)
        row.latencies_s += load.latencies_s
        row.failures += load.failures
        log(f"{precision} {what}: {load.images_per_s:.1f} img/s, {len(load.failures)} failed")
    for (_, precision), row in rows.items():
        row.best.append(best[precision])


def run_all(args: argparse.Namespace, folder: Path) -> tuple[list[Row], dict]:
    """Export, start both servers, then measure ``--rounds`` rounds; returns the rows and the
    engine sweep (images/s per precision, candidate and round)."""
    from res2net.card import load_card
    from res2net.data.transforms import preprocess

    files = export_files(folder, args.calib)
    jpegs = jpeg_photos(args.photos)
    card = load_card(MODEL)
    raw = {"Content-Type": "image/jpeg"}
    bodies = {
        "tensors": [tensor_request(preprocess(b, card.preprocess).numpy()[None]) for b in jpegs],
        "JPEG": [(blob, raw) for blob in jpegs],
    }
    candidates = {p: engine_candidates(files[p], p, args.batch_sizes) for p in PRECISIONS}
    servers = {p: start_server(files[p], args) for p in PRECISIONS}
    rows = {(s, p): Row(s, p, plan=servers[p].plan) for s in ("tensors", "JPEG")
            for p in PRECISIONS}  # fmt: skip
    sweep: dict[str, dict[str, list[float]]] = {}
    try:
        for precision in PRECISIONS:
            warm_up(servers[precision], MODEL, bodies, args.clients)
        for i in range(args.rounds):
            one_round(rows, servers, candidates, bodies, args, flip=i % 2 == 1, sweep=sweep)
    finally:
        for server in servers.values():
            server.stop()
    return list(rows.values()), sweep


# -- the section ----------------------------------------------------------------------------


def _cells(row: Row) -> str:
    ms = np.array(row.latencies_s) * 1000
    p50, p99 = np.percentile(ms, [50, 99]) if ms.size else (float("nan"),) * 2
    verdict = "yes" if row.ratio >= TARGET else "**no**"
    return (
        f"| {row.setting} | {row.precision} | {{clients}} | {statistics.median(row.served):.1f} "
        f"| {statistics.median(row.best):.1f} | {row.ratio:.2f} ({verdict}) | {p50:.0f} "
        f"| {p99:.0f} | {len(row.failures)} |"
    )


def sweep_table(sweep: dict[str, dict[str, list[float]]]) -> list[str]:
    """The engine alone per candidate (what the default serving plan's rule rests on)."""
    names = list(next(iter(sweep.values())))
    lines = [
        "Engine alone per candidate, images/s, median over rounds (best in brackets): *latency*"
        " = one call at a time on all cores (OpenVINO's latency hint); *N streams* = OpenVINO's"
        " throughput hint, one caller per stream; bN = batch size. The default serving plan"
        " (res2net/deploy/server/plan.py, docs/serving.md) should match the winner.",
        "",
        "| precision | " + " | ".join(names) + " | winner |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for precision, rates in sweep.items():
        medians = {name: statistics.median(r) for name, r in rates.items()}
        cells = [f"{medians[n]:.1f} ({max(rates[n]):.1f})" for n in names]
        winner = max(medians, key=medians.get)
        lines.append(f"| {precision} | " + " | ".join(cells) + f" | {winner} |")
    return lines


def section(rows: list[Row], args: argparse.Namespace, sweep: dict | None = None) -> str:
    """The markdown of the serving section."""
    lines = [
        "## Serving: `res2net serve` against the engine's best",
        "",
        f"`{MODEL}` (random weights) exported to OpenVINO IR at FP32 and INT8 (NNCF, "
        "calibrated on tests/data/images), each served by `res2net serve --model FILE` with "
        f"its default serving plan; {args.clients} concurrent clients on loopback, one image "
        f"per request, {args.duration:g} s per run, {args.rounds} rounds in turns with the "
        "engine alone (same file, model only, preprocessed images, the best over one call at "
        f"a time and OpenVINO throughput streams at batches {args.batch_sizes}). *tensors*: "
        "REST with the binary tensor extension; *JPEG*: the photo's bytes to `/v1/classify` "
        f"({args.photos} JPEGs, 320-1600 px), decoded by the server. img/s and engine best: "
        "medians over rounds; p50/p99: the clients' round trips over all rounds. Target: "
        f"ratio >= {TARGET}. Measured {datetime.date.today()} on {cpu_name()} "
        f"({os.cpu_count()} cores), clients and server on the same machine. Command: "
        f"`.venv/bin/python benchmarks/serve_load.py {' '.join(sys.argv[1:])}`.",
        "",
        "| setting | precision | clients | img/s | engine best img/s | ratio | p50 (ms) "
        "| p99 (ms) | failed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_cells(row).replace("{clients}", str(args.clients)) for row in rows]
    lines.append("")
    plans = {row.precision: row.plan for row in rows}
    lines += [f"- {precision} server's {plan}." for precision, plan in plans.items()]
    if sweep:
        lines += [""] + sweep_table(sweep)
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    """The command line (see the module docstring); ``--quick`` shortens every duration."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per served run")
    ap.add_argument("--engine-seconds", type=float, default=3.0,
                    help="seconds per engine candidate")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-sizes", default="1,4,8", help="engine candidates' batches")
    ap.add_argument("--max-delay-ms", type=float, default=5.0)
    ap.add_argument("--photos", type=int, default=48, help="JPEG photos the clients send")
    ap.add_argument("--calib", type=int, default=32, help="INT8 calibration images (at most)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 round of 3 s runs, engine at batches 1,4")  # fmt: skip
    ap.add_argument("--dry-run", action="store_true", help="print the section, write nothing")
    add_noise_argument(ap)
    args = ap.parse_args()
    if args.quick:
        args.duration, args.engine_seconds, args.rounds = 3.0, 1.0, 1
        args.batch_sizes, args.photos = "1,4", 12
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        ap.error(f"--batch-sizes {args.batch_sizes!r}: give whole numbers, e.g. 1,4,8")
    if min(*args.batch_sizes, args.clients, args.rounds, args.photos, args.calib) < 1:
        ap.error("--batch-sizes, --clients, --rounds, --photos and --calib must be at least 1")
    if min(args.duration, args.engine_seconds) <= 0:
        ap.error("--duration and --engine-seconds must be positive")
    return args


def main() -> None:
    args = parse_args()
    # The server's engine threads and its two decoding threads are runnable at once.
    own = own_cores() + 2
    with tempfile.TemporaryDirectory() as tmp, LoadWatch(own_threads=own) as load:
        rows, sweep = run_all(args, Path(tmp))
    text = section(rows, args, sweep)
    failed = sum(len(r.failures) for r in rows)
    if args.dry_run:
        print(text)
        print(load.summary())
    else:
        bench = write_section(ROOT / "BENCHMARKS.md", "serve", text, load=load,
                              allow_noisy=args.allow_noisy)  # fmt: skip
        print(f"updated {bench}")
    if failed:
        sys.exit(f"{failed} requests failed: {sorted({f for r in rows for f in r.failures})[:5]}")


if __name__ == "__main__":
    main()
