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


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) that process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@dataclass
class Load:
    """What the clients of one timed run saw, and the CPU both sides used meanwhile."""

    images_per_s: float
    latencies_s: list[float]
    failures: list[str]
    client_cores: float = 0.0  # this process's CPU seconds per wall second (the clients)
    server_cores: float = 0.0  # the server process's CPU seconds per wall second


def run_clients(url: str, bodies: list[tuple[bytes, dict]], clients: int, seconds: float,
                server_pid: int | None = None) -> Load:  # fmt: skip
    """``clients`` threads, each posting one image per request back to back for ``seconds``
    (client ``i`` cycles through ``bodies`` from its own offset). The CPU time of this
    process (only the clients run in it meanwhile) and of ``server_pid`` is taken around
    the run."""
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

    server_cpu = process_cpu_s(server_pid) if server_pid else 0.0
    own_cpu = time.process_time()
    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    server_cores = (process_cpu_s(server_pid) - server_cpu) / wall if server_pid else 0.0
    return Load(len(latencies) / wall, latencies, failures,
                (time.process_time() - own_cpu) / wall, server_cores)  # fmt: skip


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


def time_engine(callers: list[Callable], batch: int, seconds: float) -> tuple[float, float]:
    """Images/s of ``callers`` (one thread each) calling back to back for ``seconds``, and
    the cores they kept busy (this process's CPU seconds per wall second)."""
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

    own_cpu = time.process_time()
    began = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(callers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    return sum(done) / wall, (time.process_time() - own_cpu) / wall


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
    client_cores: list[float] = field(default_factory=list)  # per round
    server_cores: list[float] = field(default_factory=list)  # per round
    best_cores: list[float] = field(default_factory=list)  # the engine best's, per round

    @property
    def ratio(self) -> float:
        """Served over engine best, each the median over rounds."""
        return statistics.median(self.served) / statistics.median(self.best)


def warm_up(server: Server, name: str, bodies: dict[str, list], clients: int) -> None:
    """A short untimed run of each kind of request (first calls, connection set-up)."""
    for setting, endpoint in (("tensors", f"/v2/models/{name}/infer"), ("JPEG", "/v1/classify")):
        run_clients(server.url + endpoint, bodies[setting], min(clients, 4), 2.0)


def one_round(
    rows: dict,
    servers: dict,
    candidates: dict,
    bodies: dict,
    args,
    flip: bool,
    sweep: dict[str, dict[str, list[float]]],
):
    """Each precision's engine sweep and served runs, in turns (reversed when ``flip``); every
    candidate's images/s is appended to ``sweep[precision][candidate]``."""
    endpoints = {"tensors": f"/v2/models/{MODEL}/infer", "JPEG": "/v1/classify"}
    turns = [(p, what) for p in PRECISIONS for what in ("engine", "tensors", "JPEG")]
    best: dict[str, tuple[float, float]] = {}  # precision -> (images/s, cores busy)
    for precision, what in reversed(turns) if flip else turns:
        if what == "engine":
            timed = {name: time_engine(callers, batch, args.engine_seconds)
                     for name, (callers, batch) in candidates[precision].items()}  # fmt: skip
            rates = {name: rate for name, (rate, _) in timed.items()}
            best[precision] = max(timed.values())
            for name, rate in rates.items():
                sweep.setdefault(precision, {}).setdefault(name, []).append(rate)
            log(f"{precision} engine: " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()))
            continue
        url = servers[precision].url + endpoints[what]
        load = run_clients(url, bodies[what], args.clients, args.duration,
                           servers[precision].proc.pid)  # fmt: skip
        row = rows[(what, precision)]
        row.served.append(load.images_per_s)
        row.latencies_s += load.latencies_s
        row.failures += load.failures
        row.client_cores.append(load.client_cores)
        row.server_cores.append(load.server_cores)
        log(
            f"{precision} {what}: {load.images_per_s:.1f} img/s, {len(load.failures)} failed, "
            f"CPU: clients {load.client_cores:.2f} cores, server {load.server_cores:.2f}"
        )
    for (_, precision), row in rows.items():
        row.best.append(best[precision][0])
        row.best_cores.append(best[precision][1])


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
        f"| {p99:.0f} | {len(row.failures)} | {statistics.median(row.client_cores):.2f} "
        f"| {statistics.median(row.server_cores):.2f} | {statistics.median(row.best_cores):.2f} |"
    )


def reasons(rows: list[Row]) -> list[str]:
    """Per missed row, where the cores went (medians over rounds): what the clients left the
    server, and what the server spent per image beside the engine's own cost."""
    cores = own_cores()
    out = []
    for row in rows:
        if row.ratio >= TARGET:
            continue
        served, best = statistics.median(row.served), statistics.median(row.best)
        clients, server = statistics.median(row.client_cores), statistics.median(row.server_cores)
        engine = statistics.median(row.best_cores)
        left = max(cores - clients, 0.0)
        ceiling = min(best, best * left / engine) if engine else best
        engine_ms, server_ms = 1000 * engine / best, 1000 * server / served
        work = "HTTP, tensor parsing, batching" + (
            ", JPEG decoding + preprocessing" if row.setting == "JPEG" else ""
        )
        out.append(
            f"{row.setting} {row.precision}: {row.ratio:.2f}x. The {{clients}} clients "
            f"(threads of the benchmark's process) used {clients:.2f} of the {cores} cores, "
            f"leaving the server {left:.2f}; the engine's best kept {engine:.2f} cores busy "
            f"({engine_ms:.1f} CPU-ms per image), so the cores left allow {ceiling:.1f} img/s "
            f"({ceiling / best:.2f}x); measured {served:.1f}. The server used {server:.2f} "
            f"cores, {server_ms:.1f} CPU-ms per image ({server_ms - engine_ms:+.1f} beside the "
            f"engine's own: {work}); at that cost the {left:.2f} cores left allow "
            f"{1000 * left / server_ms:.1f} img/s."
        )
    return out


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
        "| p99 (ms) | failed | clients' CPU (cores) | server CPU (cores) "
        "| engine best CPU (cores) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_cells(row).replace("{clients}", str(args.clients)) for row in rows]
    lines.append("")
    missed = reasons(rows)
    if missed:
        lines += [
            "Where the cores went, for each missed ratio (CPU = a process's user + system "
            "seconds per wall second over the run, medians over rounds; clients and server "
            "share the machine's cores):",
            "",
            *[f"- {line.replace('{clients}', str(args.clients))}" for line in missed],
            "",
        ]
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
