"""Prometheus metrics of one server: requests, errors, latency, batch sizes, queue.

Each server owns its registry (not the process-global one), so that several servers in
one process (tests, benchmarks) never collide on metric names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


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

    def render(self) -> bytes:
        """The text exposition format, for ``GET /metrics``."""
        return generate_latest(self.registry)
