"""Run the server: REST (uvicorn) and gRPC side by side over one :class:`ModelService`.

Shutdown is graceful: on SIGINT/SIGTERM the server reports not-ready (so a load balancer
stops sending traffic), stops accepting connections, lets every in-flight request finish
(the batcher keeps running until both front ends are drained), then exits.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType

import grpc
import numpy as np
import uvicorn

from res2net.deploy.server.grpc_api import create_grpc_server
from res2net.deploy.server.http_protocol import with_header_timeout
from res2net.deploy.server.plan import choose_plan, streamed_runtime
from res2net.deploy.server.rest import create_app
from res2net.deploy.server.service import ModelService, ServeConfig

log = logging.getLogger("res2net.serve")


def build_service(
    model: str | os.PathLike | None,
    weights: str | os.PathLike | bool | None = None,
    *,
    engine: str = "auto",
    device: str = "cpu",
    labels: str | None = None,
    config: ServeConfig | None = None,
    precision: str = "fp32",
) -> ModelService:
    """Load the model into a :class:`Predictor` and wrap it for serving (not yet ready).

    :param model: as for :class:`Predictor`: a registered name, an exported model file (run
        as it is) or a ``res2net train`` file; ``None`` takes it from ``weights``. The model
        is served under its one name (:attr:`res2net.resolve.ModelSource.name`) and also
        answers to its file's stem.
    :param weights: a weight file, ``True`` for the published weights, ``None`` for random;
        without ``model``, an exported model or a ``res2net train`` file.
    :param engine: a runtime name, or ``"auto"`` (see :class:`Predictor`).
    :param precision: as for :class:`Predictor` (``fp32``, ``bf16``; ``fp16`` on a GPU).

    The engine runs as the serving plan says (:mod:`res2net.deploy.server.plan`): an
    exported file in OpenVINO or ONNX Runtime is compiled again to run in streams, unless
    ``config`` sets ``workers=1``; ``config``'s ``max_batch_size`` and ``workers`` win over
    the rule.
    """
    from res2net.deploy.predictor import Predictor

    config = config or ServeConfig()
    predictor = Predictor(
        model, weights, engine=engine, device=device, topk=config.topk, labels=labels,
        precision=precision,
    )  # fmt: skip
    engine_name = predictor.runtime.engine
    streamed = streamed_runtime(predictor, device, config.workers)
    if streamed is not None:
        # The metadata (e.g. softmax outputs) stays with the predictor's runtime.
        streamed.metadata = getattr(predictor.runtime, "metadata", None)
        predictor.runtime = streamed
    plan = choose_plan(engine_name, config.max_batch_size, config.workers,
                       None if streamed is None else streamed.streams)  # fmt: skip
    if engine_name == "openvino" and streamed is None and plan.workers > 1:
        # Its one infer request would be asked to run twice at once ("Infer Request is busy").
        raise ValueError(
            f"workers={plan.workers}: OpenVINO on a network built from weights runs one call "
            "at a time; serve an exported file (res2net export), which runs in streams, or "
            "leave workers at 1"
        )
    return ModelService(predictor, config, engine=engine_name, plan=plan)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket; bound here (not by uvicorn) so that port 0 reports its number."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"cannot bind the REST server to {host}:{port}: {exc}") from None
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    return sock


class _Uvicorn(uvicorn.Server):
    """uvicorn that also starts the rest of the shutdown when it is asked to exit."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:  # uvicorn's signal hook
        self._on_exit()
        super().handle_exit(sig, frame)


class RunningServer:
    """REST and gRPC front ends of one :class:`ModelService`, bound and ready to run."""

    def __init__(self, service: ModelService, log_level: str = "info") -> None:
        config = service.config
        self.service = service
        self._sock = _bind(config.host, config.port)
        self.http_port: int = self._sock.getsockname()[1]
        uv_config = uvicorn.Config(
            create_app(service),
            http=with_header_timeout(config.header_timeout_s),
            log_level=log_level,
            timeout_graceful_shutdown=int(config.timeout_s) + 1,
        )
        self._uvicorn = _Uvicorn(uv_config, self.begin_shutdown)
        self._thread: threading.Thread | None = None
        self._grpc: grpc.Server | None = None
        self._grpc_stopped: threading.Event | None = None
        self.grpc_port: int | None = None
        if config.grpc_port is not None:
            self._grpc, self.grpc_port = create_grpc_server(service, config.host, config.grpc_port)
            self._grpc.start()

    @property
    def url(self) -> str:
        """Base URL of the REST front end."""
        return f"http://{self.service.config.host}:{self.http_port}"

    def warm_up(self) -> None:
        """One model call before reporting ready, so the first client does not pay for it."""
        size = self.service.image_size
        self.service.batcher.submit(np.zeros((1, 3, size, size), np.float32)).result()
        self.service.ready = True

    def run(self) -> None:
        """Serve REST in this thread until asked to exit, then finish the shutdown."""
        try:
            self._uvicorn.run(sockets=[self._sock])
        finally:
            self.begin_shutdown()
            self.finish_shutdown()

    def start_background(self) -> None:
        """Serve from a background thread; returns once REST accepts requests."""
        self._thread = threading.Thread(target=self.run, name="res2net-rest", daemon=True)
        self._thread.start()
        while not self._uvicorn.started and self._thread.is_alive():
            time.sleep(0.01)

    def begin_shutdown(self) -> None:
        """Report not-ready; stop accepting gRPC calls (those in flight finish)."""
        self.service.ready = False
        if self._grpc is not None and self._grpc_stopped is None:
            self._grpc_stopped = self._grpc.stop(grace=self.service.config.timeout_s)

    def finish_shutdown(self) -> None:
        """After REST has drained: wait for gRPC's in-flight calls, then stop the batcher."""
        if self._grpc_stopped is not None:
            self._grpc_stopped.wait(self.service.config.timeout_s)
        self.service.close()

    def stop(self) -> None:
        """Graceful shutdown of a server started with :meth:`start_background`."""
        self.begin_shutdown()
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join()


def start_server(service: ModelService, log_level: str = "warning") -> RunningServer:
    """Start REST and gRPC in background threads (tests, notebooks); ready on return."""
    running = RunningServer(service, log_level)
    running.warm_up()
    running.start_background()
    return running


def serve(service: ModelService, log_level: str = "info") -> None:
    """Serve until SIGINT/SIGTERM, then shut down gracefully (blocking, main thread)."""
    running = RunningServer(service, log_level)
    config = service.config
    grpc_text = f", gRPC on {config.host}:{running.grpc_port}" if running.grpc_port else ""
    log.warning("model %s, weights: %s", service.name, service.weights)
    log.warning("%s", service.plan.describe())
    running.warm_up()
    log.warning("REST on http://%s:%d%s; ready", config.host, running.http_port, grpc_text)
    # uvicorn re-raises the exit signal once it has drained; with the default handlers that
    # would kill the process before gRPC drains. This handler only starts the shutdown.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: running.begin_shutdown())
    running.run()
    log.warning("stopped")
