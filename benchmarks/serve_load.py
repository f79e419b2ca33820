"""Load-test ``res2net serve`` on loopback and write the serving section of BENCHMARKS.md.

For each max batch size (default: 1, i.e. no dynamic batching, and 8) it starts a real
``res2net serve`` subprocess, then runs a fixed number of concurrent clients for a fixed
time; each client sends one preprocessed 224x224 image per request over REST with the
binary tensor extension (what ``tritonclient.http`` sends) and waits for the logits.
Recorded: requests, failed requests (must be 0), throughput, p50/p99 latency, the mean
batch the server actually ran (from /metrics), and the throughput gain of batching.
Replaces the text between ``<!-- serve:begin -->`` / ``<!-- serve:end -->``. Run it on a
quiet machine: the clients share its cores with the server.

    .venv/bin/python benchmarks/serve_load.py                                   # ~2-3 min
    .venv/bin/python benchmarks/serve_load.py --clients 4 --duration 5 --dry-run  # check only
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from res2net.bench.quiet import LoadWatch, add_noise_argument
from res2net.bench.report import cpu_name, write_section

ROOT = Path(__file__).resolve().parents[1]
HEADER = "Inference-Header-Content-Length"


def start_server(model: str, engine: str, max_batch: int, args) -> tuple[subprocess.Popen, str]:
    """A ``res2net serve`` subprocess on a free port; returns it and its base URL."""
    log = Path(tempfile.mkstemp(prefix="serve-load-", suffix=".log")[1])
    cmd = [
        sys.executable, "-m", "res2net", "serve", "--model", model, "--engine", engine,
        "--port", "0", "--no-grpc", "--max-batch-size", str(max_batch),
        "--max-delay-ms", str(args.max_delay_ms), "--max-queue", str(4 * args.clients),
        "--timeout", "300", "--log-level", "warning",
    ]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        match = re.search(r"REST on (http://[\d.]+:\d+)[^\n]*; ready", log.read_text())
        if match:
            return proc, match.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


def infer_body(image: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """One binary-extension inference request for a 1 x 3 x 224 x 224 image."""
    raw = image.astype("<f4").tobytes()
    tensor = {"name": "input", "datatype": "FP32", "shape": list(image.shape)}
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps(
        {"inputs": [tensor], "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}
    ).encode()
    return header + raw, {HEADER: str(len(header)), "Content-Type": "application/octet-stream"}


def run_clients(url: str, model: str, clients: int, duration: float) -> dict:
    """``clients`` threads sending requests back to back for ``duration`` seconds."""
    body, headers = infer_body(np.random.default_rng(0).standard_normal((1, 3, 224, 224)))
    endpoint = f"{url}/v2/models/{model}/infer"
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def client() -> None:
        with httpx.Client(timeout=300) as session:
            while time.monotonic() < stop_at:
                began = time.perf_counter()
                try:
                    response = session.post(endpoint, content=body, headers=headers)
                    ok, why = response.status_code == 200, f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    ok, why = False, repr(exc)
                with lock:
                    (latencies.append(time.perf_counter() - began) if ok else failures.append(why))

    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    lat = np.array(latencies) * 1000
    return {
        "requests": len(latencies) + len(failures),
        "failed": len(failures),
        "failures": sorted(set(failures))[:3],
        "throughput": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
    }


def mean_batch(url: str) -> float:
    """Mean images per model call, from the server's own Prometheus histogram."""
    text = httpx.get(f"{url}/metrics").text
    total = float(re.search(r"^res2net_batch_size_sum ([\d.e+]+)", text, re.M).group(1))
    count = float(re.search(r"^res2net_batch_size_count ([\d.e+]+)", text, re.M).group(1))
    return total / count if count else float("nan")


def measure(model: str, engine: str, max_batch: int, args) -> dict:
    proc, url = start_server(model, engine, max_batch, args)
    try:
        run_clients(url, model, min(args.clients, 4), 2.0)  # warm-up, not recorded
        result = run_clients(url, model, args.clients, args.duration)
        result["mean_batch"] = mean_batch(url)
    finally:
        proc.terminate()
        proc.wait(300)
    result.update(engine=engine, max_batch=max_batch)
    print(json.dumps(result), flush=True)
    return result


def section(rows: list[dict], args) -> str:
    """The markdown of the serving section."""
    lines = [
        "## Serving: `res2net serve` under load",
        "",
        f"{args.clients} concurrent clients for {args.duration:g} s on loopback, each sending "
        f"one 224x224 FP32 image per request (REST, binary tensor extension) to `{args.model}`; "
        f"max queue delay {args.max_delay_ms:g} ms. Measured {datetime.date.today()} on "
        f"{cpu_name()} ({os.cpu_count()} cores), clients and server on the same machine. "
        f"Command: `.venv/bin/python benchmarks/serve_load.py {' '.join(sys.argv[1:])}`.",
        "",
        "| engine | max batch | requests | failed | throughput (img/s) | p50 (ms) | p99 (ms) "
        "| mean batch run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['engine']} | {r['max_batch']} | {r['requests']} | {r['failed']} | "
            f"{r['throughput']:.2f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
            f"{r['mean_batch']:.2f} |"
        )
    lines.append("")
    for engine in dict.fromkeys(r["engine"] for r in rows):
        mine = [r for r in rows if r["engine"] == engine]
        base = next((r for r in mine if r["max_batch"] == 1), None)
        for r in mine:
            if base is not None and r is not base:
                gain = r["throughput"] / base["throughput"]
                lines.append(
                    f"- {engine}: dynamic batching (max {r['max_batch']}) gives {gain:.2f}x the "
                    "throughput of max batch size 1."
                )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="Res2Net50_vd_26w_4s")
    ap.add_argument("--engines", default="eager", help="comma-separated runtimes")
    ap.add_argument("--max-batch-sizes", default="1,8")
    ap.add_argument("--max-delay-ms", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per configuration")
    ap.add_argument("--dry-run", action="store_true", help="print, write nothing")
    add_noise_argument(ap)
    args = ap.parse_args()
    with LoadWatch() as load:
        rows = [
            measure(args.model, engine, int(b), args)
            for engine in args.engines.split(",")
            for b in args.max_batch_sizes.split(",")
        ]
    text = section(rows, args)
    failed = sum(r["failed"] for r in rows)
    if args.dry_run:
        print(text)
    else:
        bench = write_section(ROOT / "BENCHMARKS.md", "serve", text, load=load,
                              allow_noisy=args.allow_noisy)  # fmt: skip
        print(f"updated {bench}")
    if failed:
        sys.exit(f"{failed} requests failed: {[r['failures'] for r in rows]}")


if __name__ == "__main__":
    main()
