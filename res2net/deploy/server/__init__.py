"""Serve a Res2Net over the Open Inference Protocol v2 (REST and gRPC) and a classify API.

Layout: ``service`` (protocol-neutral model service), ``batcher`` (dynamic batching shared
by both protocols), ``plan`` (batch size and model calls in flight: the engine's best
throughput by default, docs/serving.md), ``budget`` (bytes that requests in flight may
hold), ``errors`` (the refusal both protocols report), ``rest`` and ``grpc_api`` (the two
front ends), ``metrics`` (Prometheus, latency percentiles), ``page`` (the upload page),
``runner`` (start, run, graceful shutdown).
"""

from res2net.deploy.server.runner import RunningServer, build_service, serve, start_server
from res2net.deploy.server.service import ModelService, ServeConfig, ServeError

__all__ = [
    "ModelService",
    "RunningServer",
    "ServeConfig",
    "ServeError",
    "build_service",
    "serve",
    "start_server",
]
