"""The protocol-neutral core of the server: one model, its metadata, inference and classify.

REST and gRPC are thin translations of this module: both validate tensors with
:func:`decode_tensor`, run them through the one shared :class:`DynamicBatcher` and report
failures as :class:`ServeError` (an HTTP status, mapped to a gRPC code by the gRPC layer).
Tensor names, shapes and datatypes follow the Open Inference Protocol v2
(https://github.com/kserve/open-inference-protocol).
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from res2net import __version__
from res2net.checks import check_number
from res2net.deploy.server.batcher import BatcherClosedError, DynamicBatcher, QueueFullError
from res2net.deploy.server.budget import ByteBudget
from res2net.deploy.server.errors import ServeError
from res2net.deploy.server.metrics import ServerMetrics
from res2net.deploy.server.plan import ServingPlan, choose_plan

INPUT_NAME = "input"
OUTPUTS = ("logits", "probabilities")
MODEL_VERSION = "1"


@dataclass(frozen=True)
class ServeConfig:
    """Server settings shared by REST and gRPC (see ``res2net serve --help``).

    Every number is checked when the config is built: a ``ValueError`` names the field.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int | None = 8001
    # None: the serving plan's rule for the engine (res2net.deploy.server.plan).
    max_batch_size: int | None = None
    max_delay_ms: float = 5.0
    max_queue: int = 64
    workers: int | None = None
    timeout_s: float = 60.0
    max_body_bytes: int = 64 * 2**20
    max_images_per_request: int = 64
    topk: int = 5
    api_key: str | None = None
    retry_after_s: int = 1
    # Decoding budget: estimated peak bytes of all images being decoded at once (see
    # decode_cost), on this many threads. A request that would go over it is refused with
    # 503, one image larger than all of it with 413.
    decode_bytes: int = 900_000_000
    decode_threads: int = 2
    # Request bodies in flight, REST and gRPC together: their estimated peak bytes while they
    # are read and parsed (see rest.body_cost, grpc_api.GRPC_BYTE_COST). 503 when full.
    inflight_bytes: int = 2**30
    # Connections that have not sent a request's headers within this many seconds are closed;
    # a request whose body has not fully arrived this long after its headers gets 408.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        ranges = {
            # name: (low, high, integer); low is exclusive for the float fields (> 0).
            "port": (0, 65535, True),
            "grpc_port": (0, 65535, True),
            "max_batch_size": (1, 65536, True),
            "max_queue": (1, 2**20, True),
            "workers": (1, 1024, True),
            "max_body_bytes": (1, 2**40, True),
            "max_images_per_request": (1, 2**20, True),
            "topk": (1, 2**20, True),
            "retry_after_s": (0, 86_400, True),
            "decode_bytes": (1, 2**50, True),
            "decode_threads": (1, 1024, True),
            "inflight_bytes": (1, 2**50, True),
            # Seconds: a day at most (thread waits refuse timeouts past about 292 years).
            "timeout_s": (0, 86_400, False),
            "header_timeout_s": (0, 86_400, False),
            "body_timeout_s": (0, 86_400, False),
        }
        for name in ("grpc_port", "max_batch_size", "workers"):
            if getattr(self, name) is None:  # optional: no port, or the plan's rule
                del ranges[name]
        for name, (low, high, integer) in ranges.items():
            # Stored as checked: a whole 80.0 becomes the int port 80 a socket takes.
            value = check_number(name, getattr(self, name), low=low, high=high, integer=integer,
                                 low_inclusive=integer)  # fmt: skip
            object.__setattr__(self, name, value)
        check_number("max_delay_ms", self.max_delay_ms, low=0, high=60_000)
        if self.api_key is not None and not (self.api_key.isascii() and self.api_key.isprintable()):
            # HTTP header values arrive as latin-1 and gRPC metadata is ASCII: a key outside
            # printable ASCII could never be matched.
            raise ValueError("api_key must be printable ASCII (HTTP headers and gRPC metadata)")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def decode_tensor(
    name: str,
    datatype: str,
    shape: list[int],
    *,
    raw: bytes | None = None,
    data: Any = None,
    image_size: int = 224,
) -> np.ndarray:
    """Check one v2 input tensor against the model's signature and return it as an array.

    :param raw: the tensor's bytes (REST binary extension, gRPC ``raw_input_contents``).
    :param data: the tensor's values as (possibly nested) JSON lists, when not raw.
    :raises ServeError: 400 naming the field that is wrong and what is expected.
    """
    expected = f"[N, 3, {image_size}, {image_size}]"
    if name != INPUT_NAME:
        raise ServeError(400, f"unknown input {name!r}; this model has one input {INPUT_NAME!r}")
    if datatype != "FP32":
        raise ServeError(400, f"input {name!r} has datatype {datatype!r}; expected 'FP32'")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ServeError(400, f"input {name!r} shape must be a list of sizes; got {shape!r:.200}")
    if len(shape) != 4 or shape[1:] != [3, image_size, image_size] or shape[0] < 1:
        raise ServeError(400, f"input {name!r} has shape {shape}; expected {expected}, N >= 1")
    # Python's integers: a declared size whose product overflows 64 bits stays exact and
    # simply disagrees with the bytes or values sent.
    count = math.prod(shape)
    if raw is not None:
        if len(raw) != 4 * count:
            raise ServeError(
                400,
                f"input {name!r}: {len(raw)} bytes of data for shape {shape} "
                f"(FP32 needs {4 * count})",
            )
        array = np.frombuffer(raw, dtype="<f4")
    elif data is not None:
        array = _numbers(name, data)
        if array.size != count:
            raise ServeError(
                400,
                f"input {name!r}: {array.size} values in 'data' for shape {shape} ({count} needed)",
            )
    else:
        raise ServeError(400, f"input {name!r} has no 'data' (nor binary data)")
    array = array.reshape(shape)
    if not np.isfinite(array).all():
        raise ServeError(400, f"input {name!r} contains NaN or infinity")
    return array


def _numbers(name: str, data: Any) -> np.ndarray:
    """``data`` as flat float32, refusing strings, booleans, nulls and ragged nesting (numpy
    would read "1.5" as a number)."""
    try:
        values = np.asarray(data)
    except (TypeError, ValueError, RecursionError, OverflowError):
        values = None
    if values is None or values.dtype.kind not in "iuf":
        raise ServeError(
            400, f"input {name!r}: 'data' must hold only numbers (nested lists of them, no text)"
        )
    return values.astype(np.float32, copy=False).reshape(-1)


class ModelService:
    """One model behind the server: metadata, batched inference, image classification.

    :param predictor: a :class:`res2net.deploy.predictor.Predictor`: its network, runtime,
        preprocessing (``preprocess``, ``preprocess_cfg``) and ``labels`` are used as they are.
    :param plan: batch size and model calls in flight; default: ``config``'s, the rule's
        (:func:`res2net.deploy.server.plan.choose_plan`) where ``config`` leaves them out.
    """

    def __init__(
        self,
        predictor: Any,
        config: ServeConfig,
        *,
        engine: str = "eager",
        metrics: ServerMetrics | None = None,
        plan: ServingPlan | None = None,
    ) -> None:
        self.predictor = predictor
        # One name per model (res2net.resolve): the card's, or its file's; also its aliases.
        self.name: str = predictor.model_name
        self.aliases: tuple[str, ...] = tuple(getattr(predictor, "model_aliases", ()))
        self.config = config
        self.weights = _describe_weights(getattr(predictor, "weights", None))
        self.engine = engine
        self.image_size = int(predictor.preprocess_cfg.crop)
        self.metrics = metrics or ServerMetrics()
        self.ready = False
        self.plan = plan or choose_plan(engine, config.max_batch_size, config.workers, None)
        self.metrics.report_plan(self.plan.to_dict())
        self.batcher = DynamicBatcher(
            predictor.predict_batch,
            max_batch_size=self.plan.max_batch_size,
            max_delay_s=config.max_delay_ms / 1000,
            max_queue=config.max_queue,
            workers=self.plan.workers,
            on_batch=self.metrics.observe_batch,
        )
        self.metrics.queue_depth.set_function(lambda: self.batcher.depth)
        self._decode_pool = ThreadPoolExecutor(
            max(1, config.decode_threads), thread_name_prefix="res2net-decode"
        )
        self.decode_budget = ByteBudget(
            config.decode_bytes,
            what="decoding images",
            advice="send smaller images or fewer per request",
            retry_after_s=config.retry_after_s,
            on_refusal=self.metrics.rejected.inc,
        )
        self.inflight = ByteBudget(
            config.inflight_bytes,
            what="request bodies in flight",
            advice="send fewer images per request, as binary tensors rather than JSON",
            retry_after_s=config.retry_after_s,
            on_refusal=self.metrics.rejected.inc,
        )

    # -- metadata ---------------------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        """``GET /v2``: server name, version and protocol extensions."""
        return {"name": "res2net", "version": __version__, "extensions": ["binary_tensor_data"]}

    def model_metadata(self) -> dict[str, Any]:
        """``GET /v2/models/{name}``: tensors, plus where the weights came from."""
        dims = [-1, 3, self.image_size, self.image_size]
        return {
            "name": self.name,
            "versions": [MODEL_VERSION],
            "platform": f"res2net_{self.engine}",
            "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": dims}],
            "outputs": [
                {"name": n, "datatype": "FP32", "shape": [-1, self.num_classes]} for n in OUTPUTS
            ],
            "parameters": {
                "weights": self.weights,
                "engine": self.engine,
                "max_batch_size": self.plan.max_batch_size,
                "serving_plan": self.plan.to_dict(),
                "preprocess": _describe_preprocess(self.predictor.preprocess_cfg),
            },
        }

    def stats(self) -> dict[str, Any]:
        """``GET /v1/stats``: the serving plan, and each inference kind's request count and
        latency p50/p99 in the server (:mod:`res2net.deploy.server.metrics`)."""
        return {"plan": self.plan.to_dict(), "latency": self.metrics.latency_summary()}

    def page_facts(self) -> dict[str, Any]:
        """What the upload page shows about the served model (besides its name)."""
        runtime = getattr(self.predictor, "runtime", None)
        card = getattr(self.predictor, "card", None)
        # The runtime's own precision (bf16 from weights), else the export's card (an INT8
        # ONNX file in ONNX Runtime).
        precision = getattr(runtime, "precision", None) or getattr(card, "precision", "fp32")
        return {
            "weights": self.weights,
            "engine": self.engine,
            "precision": str(precision),
            "preprocess": _describe_preprocess(self.predictor.preprocess_cfg),
            "random": getattr(self.predictor, "weights", None) in (None, False),
        }

    @property
    def num_classes(self) -> int:
        return int(self.predictor.num_classes)

    def models_index(self) -> list[dict[str, Any]]:
        """``GET /v2/models``: the served models (one), with the other names each answers to."""
        return [
            {
                "name": self.name,
                "versions": [MODEL_VERSION],
                "aliases": list(self.aliases),
                "state": "READY" if self.ready else "UNAVAILABLE",
            }
        ]

    def check_model(self, name: str, version: str | None = None) -> None:
        """:raises ServeError: 404 when ``name`` (or ``version``) is not the served model
        (its name or one of its aliases)."""
        if name != self.name and name not in self.aliases:
            also = ", ".join(map(repr, self.aliases))
            also = f" (also answers to {also})" if also else ""
            raise ServeError(
                404,
                f"unknown model {name!r}; this server serves {self.name!r}{also}; "
                "GET /v2/models lists it",
            )
        if version not in (None, "", MODEL_VERSION):
            raise ServeError(404, f"model {name!r} has no version {version!r}; only '1'")

    # -- inference --------------------------------------------------------------------

    def submit(self, images: np.ndarray) -> Future:
        """Queue a preprocessed batch; maps backpressure and shutdown to 503."""
        try:
            return self.batcher.submit(images)
        except QueueFullError as exc:
            self.metrics.rejected.inc()
            raise ServeError(503, str(exc), retry_after=self.config.retry_after_s) from None
        except BatcherClosedError as exc:
            raise ServeError(503, str(exc), retry_after=self.config.retry_after_s) from None

    async def logits_async(self, images: np.ndarray, timeout_s: float | None = None) -> np.ndarray:
        """Logits for a batch, awaited from the event loop, with the request timeout (or
        what is left of it, ``timeout_s``)."""
        future = self.submit(images)
        timeout = self.config.timeout_s if timeout_s is None else max(timeout_s, 0.001)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except asyncio.TimeoutError:
            raise ServeError(504, self._timeout_message()) from None

    def logits_blocking(self, images: np.ndarray) -> np.ndarray:
        """Logits for a batch, from a worker thread (the gRPC server), with the timeout."""
        future = self.submit(images)
        try:
            return future.result(self.config.timeout_s)
        except TimeoutError:
            future.cancel()
            raise ServeError(504, self._timeout_message()) from None

    def _timeout_message(self) -> str:
        return (
            f"inference did not finish within {self.config.timeout_s:g} s (server busy); "
            "retry, or send smaller batches"
        )

    def outputs_for(self, logits: np.ndarray, requested: list[str] | None) -> dict[str, np.ndarray]:
        """The requested outputs (all when none are named) computed from the logits."""
        names = requested or list(OUTPUTS)
        for name in names:
            if name not in OUTPUTS:
                raise ServeError(400, f"unknown output {name!r}; available: {', '.join(OUTPUTS)}")
        return {n: logits if n == "logits" else softmax(logits) for n in names}

    # -- images -----------------------------------------------------------------------

    def decode_images(self, blobs: list[tuple[str, bytes]]) -> tuple[list, list[str | None]]:
        """Decode and preprocess encoded images; a bad image fails alone, whatever the error.

        :returns: the tensors of the good images and, per input, ``None`` or its error.
        """
        self._check_count(blobs)
        tensors, errors = [], []
        for source, blob in blobs:
            try:
                tensors.append(self.predictor.preprocess(blob).numpy())
                errors.append(None)
            except ValueError as exc:
                errors.append(f"{source}: {exc}")
            except Exception as exc:  # noqa: BLE001 - even a MemoryError is this image's
                errors.append(f"{source}: cannot decode ({type(exc).__name__})")
        return tensors, errors

    def _check_count(self, blobs: list) -> None:
        if not blobs:
            raise ServeError(400, "no image in the request: send a multipart field or raw body")
        if len(blobs) > self.config.max_images_per_request:
            raise ServeError(
                413,
                f"{len(blobs)} images in one request; at most {self.config.max_images_per_request}",
            )

    async def decode_images_async(
        self, blobs: list[tuple[str, bytes]], deadline: float
    ) -> tuple[list, list[str | None]]:
        """:meth:`decode_images` on the bounded decode threads, within the decoding budget
        and the request's ``deadline`` (``loop.time()``): 503 over the budget, 413 for images
        larger than all of it, 504 past the deadline."""
        self._check_count(blobs)
        cost = sum(decode_cost(blob) for _, blob in blobs)
        self.decode_budget.reserve(cost)
        job = self._decode_pool.submit(self.decode_images, blobs)
        job.add_done_callback(lambda _: self.decode_budget.release(cost))  # also if cancelled
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job), max(remaining, 0.001))
        except asyncio.TimeoutError:
            raise ServeError(504, self._timeout_message()) from None

    def top_k(self, logits: np.ndarray, k: int) -> list[dict[str, Any]]:
        """Top-k class ids, probabilities and labels of each row (as the Predictor ranks)."""
        from res2net.deploy.predictor import softmax_topk

        ids, probs = softmax_topk(logits, max(1, min(k, logits.shape[1])))
        labels = self.predictor.labels
        return [
            {
                "class_ids": [int(i) for i in row],
                "scores": [float(p) for p in row_probs],
                "labels": [labels[i] for i in row] if labels else [],
            }
            for row, row_probs in zip(ids, probs, strict=True)
        ]

    def close(self) -> None:
        """Finish queued work and stop the batcher (graceful shutdown)."""
        self.ready = False
        self.batcher.close(timeout=self.config.timeout_s)
        self._decode_pool.shutdown(wait=False, cancel_futures=True)


def decode_cost(blob: bytes) -> int:
    """Estimated peak bytes of decoding and preprocessing one encoded image, from its
    header alone, by format and mode (:func:`res2net.data.images.decoded_bytes`: a CMYK
    JPEG or a 16-bit TIFF costs more per pixel than an RGB photo); 0 when the header is
    unreadable: decoding then reports the error, at no cost.
    """
    from res2net.data.images import ImageDecodeError, decoded_bytes

    try:
        return decoded_bytes(blob)
    except ImageDecodeError:
        return 0


def _describe_preprocess(cfg: Any) -> str:
    return (
        f"resize short side {cfg.resize_short} ({cfg.interpolation}, {cfg.style} style), "
        f"center crop {cfg.crop}, mean {list(cfg.mean)}, std {list(cfg.std)}"
    )


def _describe_weights(weights: Any) -> str:
    if weights is None or weights is False:
        return "random (--random-weights): the outputs mean nothing"
    return "published (downloaded)" if weights is True else str(weights)
