"""Prometheus metrics of one server: requests, errors, latency, batch sizes, queue.

Each server owns its registry (not the process-global one), so that several servers in
one process (tests, benchmarks) never collide on metric names.

Latency percentiles: Prometheus histograms only bound a percentile between two buckets, so
the server also keeps the latencies of its last :data:`WINDOW` inference requests (tensors:
REST and gRPC ``infer``; images: ``/v1/classify``) and reports their p50 and p99 as
``res2net_request_latency_p50_seconds`` / ``..._p99_seconds`` (label ``kind``) and in
``GET /v1/stats``, with the count of every such request since start.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
WINDOW = 10_000  # most recent requests of each kind the percentiles are taken over
# Endpoint (REST route or gRPC method) -> kind of inference request.
INFERENCE_KINDS = {
    "/v2/models/{name}/infer": "infer",
    "/v2/models/{name}/versions/{version}/infer": "infer",
    "ModelInfer": "infer",
    "/v1/classify": "classify",
}


class LatencyWindow:
    """The latencies of the last ``size`` requests and the count of all of them; p50/p99
    as :func:`numpy.percentile` computes them (linear interpolation)."""

    def __init__(self, size: int = WINDOW) -> None:
        self._seconds: collections.deque[float] = collections.deque(maxlen=size)
        self._lock = threading.Lock()
        self.count = 0

    def add(self, seconds: float) -> None:
        """Record one finished request."""
        with self._lock:
            self._seconds.append(seconds)
            self.count += 1

    def summary(self) -> dict[str, float | int | None]:
        """``requests`` (all since start), ``window`` (those the percentiles cover) and
        ``p50_ms`` / ``p99_ms`` (``None`` before the first request)."""
        with self._lock:
            values, count = np.array(self._seconds), self.count
        if not values.size:
            return {"requests": count, "window": 0, "p50_ms": None, "p99_ms": None}
        p50, p99 = np.percentile(values, [50, 99]) * 1000
        return {"requests": count, "window": int(values.size), "p50_ms": float(p50),
                "p99_ms": float(p99)}  # fmt: skip


class _PercentileCollector:
    """Exposes each window's p50 and p99 on the server's registry."""

    def __init__(self, windows: dict[str, LatencyWindow]) -> None:
        self._windows = windows

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for q in ("p50", "p99"):
            family = GaugeMetricFamily(
                f"res2net_request_latency_{q}_seconds",
                f"{q} of the last {WINDOW} inference requests' latency in the server, by kind",
                labels=["kind"],
            )
            for kind, window in self._windows.items():
                value = window.summary()[f"{q}_ms"]
                if value is not None:
                    family.add_metric([kind], value / 1000)
            yield family


class ServerMetrics:
    """The server's metric families, on their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "res2net_requests",
            "Requests handled, by protocol, endpoint and status code",
            ["protocol", "endpoint", "code"],
            registry=reg,
        )
        self.errors = Counter(
            "res2net_request_errors",
            "Requests that failed (4xx/5xx or gRPC error)",
            ["protocol", "endpoint", "code"],
            registry=reg,
        )
        self.latency = Histogram(
            "res2net_request_latency_seconds",
            "End-to-end request latency in the server",
            ["protocol", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.batch_size = Histogram(
            "res2net_batch_size",
            "Images per model call (dynamic batching)",
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        self.batch_seconds = Histogram(
            "res2net_batch_inference_seconds",
            "Time of one model call",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.rejected = Counter(
            "res2net_rejected", "Requests refused because the queue was full (503)", registry=reg
        )
        self.queue_depth = Gauge(
            "res2net_queue_depth", "Requests waiting for the batcher", registry=reg
        )
        self.windows = {kind: LatencyWindow() for kind in sorted(set(INFERENCE_KINDS.values()))}
        reg.register(_PercentileCollector(self.windows))

    def observe_batch(self, size: int, seconds: float) -> None:
        """Batcher hook: one model call of ``size`` images took ``seconds``."""
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def observe_request(self, protocol: str, endpoint: str, code: str, seconds: float) -> None:
        """Count one finished request; codes >= 400 (or non-OK gRPC codes) are errors."""
        self.requests.labels(protocol, endpoint, code).inc()
        if code != "OK" and not code.startswith(("1", "2", "3")):
            self.errors.labels(protocol, endpoint, code).inc()
        self.latency.labels(protocol, endpoint).observe(seconds)
        kind = INFERENCE_KINDS.get(endpoint)
        if kind is not None:
            self.windows[kind].add(seconds)

    def report_plan(self, plan: dict[str, object]) -> None:
        """Expose the serving plan as ``res2net_serving_plan{engine=..., ...} 1``."""
        gauge = Gauge("res2net_serving_plan", "The serving plan the server chose (value 1)",
                      list(plan), registry=self.registry)  # fmt: skip
        gauge.labels(*(str(v) for v in plan.values())).set(1)

    def latency_summary(self) -> dict[str, dict[str, float | int | None]]:
        """Each inference kind's request count and latency p50/p99 (:class:`LatencyWindow`)."""
        return {kind: window.summary() for kind, window in self.windows.items()}

    def render(self) -> bytes:
        """The text exposition format, for ``GET /metrics``."""
        return generate_latest(self.registry)
