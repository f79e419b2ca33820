"""How the server runs its engine: images per model call and model calls in flight.

A server with many clients wants the engine's best *throughput*, not its best latency. Two
knobs give it: the batch (images per model call, filled by the dynamic batcher) and the
number of model calls in flight at once (the batcher's workers). Each call in flight runs on
its own *stream*, with its own share of the cores: in OpenVINO a throughput stream
(``PERFORMANCE_HINT=THROUGHPUT``, one infer request each); in ONNX Runtime a session of its
own, with the cores divided between the sessions.

The default is a rule, from measurement rather than a probe at start-up (docs/serving.md
gives the figures and how to re-measure). On the 2-core AMD EPYC this project runs on, two
streams at batch 1-4 gave 1.07-1.4x the images/s of one call at a time on all the cores at
its best batch size, in every run: OpenVINO FP32 and INT8 IR and ONNX Runtime alike; past
batch 4 the batch size changed less than the noise. So an exported file served by
OpenVINO or ONNX Runtime on the CPU runs in streams (OpenVINO's own
``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` for this CPU; for ONNX Runtime one per core, at most
4) at batches of up to 4. Every other case (a network built from weights, a PyTorch
engine, a GPU) keeps today's single call at batches of up to 8. A start-up probe would
add seconds to every start to rediscover the rule, and on a shared machine its verdict
would be the noise's. An explicit ``max_batch_size`` or ``workers`` (``--max-batch-size``,
``--workers``) always wins over the rule.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

STREAMED_MAX_BATCH = 4  # the rule's batch where calls run in streams
DEFAULT_MAX_BATCH = 8  # and where one call runs at a time
MAX_ONNX_STREAMS = 4  # one ONNX Runtime session per stream: bounded memory on many cores


@dataclass(frozen=True)
class ServingPlan:
    """What the server runs: up to ``max_batch_size`` images per call, ``workers`` calls at
    once, each on its own stream when ``streamed``.

    :param chosen_by: ``"default rule"``, ``"flags"``, or ``"default rule + flags"``.
    """

    engine: str
    max_batch_size: int
    workers: int
    streamed: bool
    chosen_by: str

    def describe(self) -> str:
        """One line for the start-up log."""
        how = f"in {self.workers} {self.engine} streams" if self.streamed else "at a time"
        return (
            f"serving plan: batches of up to {self.max_batch_size}, {self.workers} model "
            f"call(s) {how}; chosen by {self.chosen_by}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready values (model metadata, stats)."""
        return asdict(self)


def choose_plan(
    engine: str, max_batch_size: int | None, workers: int | None, streams: int | None
) -> ServingPlan:
    """The serving plan: the rule (module docstring) where a setting is ``None``, the
    given value where it is not.

    :param streams: the streams the runtime runs (:func:`streamed_runtime`), ``None`` when
        it runs one call at a time.
    """
    given = [v is not None for v in (max_batch_size, workers)]
    chosen_by = "flags" if all(given) else "default rule + flags" if any(given) else "default rule"
    rule_batch = DEFAULT_MAX_BATCH if streams is None else STREAMED_MAX_BATCH
    return ServingPlan(
        engine=engine,
        max_batch_size=rule_batch if max_batch_size is None else max_batch_size,
        workers=(streams or 1) if workers is None else workers,
        streamed=streams is not None,
        chosen_by=chosen_by,
    )


def streamed_runtime(predictor: Any, device: str, workers: int | None) -> Any | None:
    """The predictor's exported file compiled again to run in streams (``workers`` of them,
    or the rule's count), or ``None`` where the rule keeps one call at a time."""
    source, engine = predictor.source, predictor.runtime.engine
    if source.kind != "export" or device != "cpu" or workers == 1:
        return None
    if engine == "openvino":
        return StreamedOpenVino(source.path, predictor.runtime.precision, workers)
    if engine == "onnxruntime" and Path(source.path).suffix == ".onnx":
        return StreamedOnnx(source.path, workers)
    return None


class _RequestPool:
    """Runs each call on a free worker object (an infer request, a session), waiting for
    one when all are busy: thread-safe for as many callers as there are objects."""

    def __init__(self, items: list[Any], run: Callable[[Any, np.ndarray], np.ndarray]) -> None:
        self.streams = len(items)
        self._run = run
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for item in items:
            self._free.put(item)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits of a preprocessed float32 N x 3 x H x W batch, on a free stream."""
        item = self._free.get()
        try:
            return self._run(item, np.ascontiguousarray(batch, np.float32))
        finally:
            self._free.put(item)


class StreamedOpenVino(_RequestPool):
    """An OpenVINO file compiled with the throughput hint, one infer request per stream.

    :param path: an ``.xml`` / ``.onnx`` file.
    :param precision: as for :class:`res2net.deploy.runtimes.OpenVinoRuntime`.
    :param streams: ``NUM_STREAMS`` and infer requests; ``None``: as many as OpenVINO finds
        optimal for this CPU (``OPTIMAL_NUMBER_OF_INFER_REQUESTS``).
    """

    engine = "openvino"

    def __init__(self, path: str | Path, precision: str | None, streams: int | None) -> None:
        import openvino as ov

        from res2net.deploy.runtimes import openvino_config

        core = ov.Core()
        config = openvino_config("THROUGHPUT", precision)
        if streams is not None:
            config["NUM_STREAMS"] = streams
        self.precision = precision
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        count = streams or int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        output = self.compiled.output(0)

        def run(request: Any, batch: np.ndarray) -> np.ndarray:
            result = request.infer([batch], share_inputs=True)
            return np.array(result[output], dtype=np.float32)

        super().__init__([self.compiled.create_infer_request() for _ in range(count)], run)


class StreamedOnnx(_RequestPool):
    """An ONNX file in one ONNX Runtime session per stream, the cores divided among them.

    :param streams: sessions; ``None``: one per core, at most :data:`MAX_ONNX_STREAMS`.
    """

    engine = "onnxruntime"

    def __init__(self, path: str | Path, streams: int | None) -> None:
        import onnxruntime as ort

        from res2net.deploy.runtimes import cpu_threads, ort_session_options

        cores = cpu_threads()
        count = streams or max(1, min(cores, MAX_ONNX_STREAMS))
        options = ort_session_options(max(1, cores // count))  # the same as OnnxRuntime's
        data = Path(path).read_bytes()
        sessions = [
            ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
            for _ in range(count)
        ]
        name = sessions[0].get_inputs()[0].name

        def run(session: Any, batch: np.ndarray) -> np.ndarray:
            return session.run(None, {name: batch})[0]

        super().__init__(sessions, run)
