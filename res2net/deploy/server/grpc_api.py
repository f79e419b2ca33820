"""gRPC front end: the Open Inference Protocol's ``GRPCInferenceService``.

The service definition is the protocol's published ``grpc_service.proto``; its generated
Python stubs ship with ``tritonclient`` (``tritonclient.grpc.service_pb2[_grpc]``), so the
servicer below implements the protocol's base class instead of generating our own copy.
Semantics match REST: same model, same batcher, same validation; HTTP statuses of
:class:`ServeError` map to gRPC status codes. Methods outside the protocol's core (model
repository, shared memory, ...) stay UNIMPLEMENTED.

grpcio reads a unary request whole, and parses it, before the servicer runs, so a byte
budget checked there comes too late: four concurrent 25 MB messages were all held at once.
So ``ModelInfer`` is served as a stream of one message (the same bytes on the wire, a
unary client sees no difference), HTTP/2 flow control is kept to a small window (gRPC's
``grpc.http2.bdp_probe`` off), and a message stays in its client until the servicer asks
for it: before it does, the call reserves the largest message it could receive in the
in-flight byte budget, waits a moment for room, else is refused (UNAVAILABLE, Retry-After);
once the message is in, the reservation shrinks to the message's own cost.
"""

from __future__ import annotations

import functools
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from res2net.deploy.server.budget import ByteBudget
from res2net.deploy.server.service import MODEL_VERSION, ModelService, ServeError, decode_tensor

STATUS_TO_CODE = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# Probes stay reachable without the API key, as on REST.
OPEN_METHODS = {"ServerLive", "ServerReady"}
# What an inference request costs while it is handled, per byte of its message (measured
# with ru_maxrss): gRPC's received bytes and the parsed message (both held once the servicer
# has asked for the message), the input array and its copy in the batch.
GRPC_BYTE_COST = 4
# How long a call waits for room in the in-flight budget for its largest possible message
# before it is refused (a small request only waits behind others' receiving).
RECEIVE_WAIT_S = 1.0
# The HTTP/2 window a stream may fill before the servicer asks for its message: with BDP
# probing off, this is what an unread request can hold in the server.
LOOKAHEAD_BYTES = 256 << 10
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"


def _rpc(method: Callable) -> Callable:
    """Wrap a servicer method: API key, metrics, and ServeError -> gRPC status."""
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self: InferenceServicer, request, context: grpc.ServicerContext):
        began = time.perf_counter()
        code = "OK"
        try:
            if name not in OPEN_METHODS:
                self.check_key(context)
            return method(self, request, context)
        except ServeError as exc:
            status = STATUS_TO_CODE.get(exc.status, grpc.StatusCode.INTERNAL)
            code = status.name
            if exc.retry_after is not None:
                context.set_trailing_metadata((("retry-after", str(exc.retry_after)),))
            context.abort(status, exc.message)
        except grpc.RpcError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must still answer with a status
            code = "INTERNAL"
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")
        finally:
            self.service.metrics.observe_request("grpc", name, code, time.perf_counter() - began)

    return wrapper


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The protocol's core RPCs for one :class:`ModelService`."""

    def __init__(self, service: ModelService, max_message_bytes: int) -> None:
        self.service = service
        self.max_message_bytes = max_message_bytes

    def check_key(self, context: grpc.ServicerContext) -> None:
        """:raises ServeError: 401 when an API key is set and the call lacks it."""
        expected = self.service.config.api_key
        if not expected:
            return
        given = dict(context.invocation_metadata()).get("x-api-key", "")
        if not hmac.compare_digest(str(given).encode(), expected.encode()):
            raise ServeError(401, "missing or wrong API key: send it as 'x-api-key' metadata")

    @_rpc
    def ServerLive(self, request, context):  # noqa: N802 (names fixed by the protocol)
        return pb.ServerLiveResponse(live=True)

    @_rpc
    def ServerReady(self, request, context):  # noqa: N802
        return pb.ServerReadyResponse(ready=self.service.ready)

    @_rpc
    def ModelReady(self, request, context):  # noqa: N802
        self.service.check_model(request.name, request.version)
        return pb.ModelReadyResponse(ready=self.service.ready)

    @_rpc
    def ServerMetadata(self, request, context):  # noqa: N802
        return pb.ServerMetadataResponse(**self.service.server_metadata())

    @_rpc
    def ModelMetadata(self, request, context):  # noqa: N802
        self.service.check_model(request.name, request.version)
        meta = self.service.model_metadata()
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]],
        )

    @_rpc
    def ModelInfer(self, requests, context):  # noqa: N802
        """Served as a stream of one message (see the module doc and :class:`_StreamedInfer`)."""
        service = self.service
        # The same in-flight byte budget as REST's bodies: concurrent large messages on
        # both protocols together cannot go past it, nor be buffered beyond it.
        with self._received(requests, context) as request:
            service.check_model(request.model_name, request.model_version)
            images = _input_tensor(request, service.image_size)
            requested = [o.name for o in request.outputs]
            results = service.outputs_for(service.logits_blocking(images), requested)
        response = pb.ModelInferResponse(
            model_name=service.name, model_version=MODEL_VERSION, id=request.id
        )
        for name, array in results.items():
            response.outputs.add(name=name, datatype="FP32", shape=list(array.shape))
            response.raw_output_contents.append(np.ascontiguousarray(array, "<f4").tobytes())
        return response

    @contextmanager
    def _received(self, requests: Iterator, context: grpc.ServicerContext) -> Iterator:
        """The call's one message, received only once the largest message it could be is
        reserved in the in-flight budget; held at the message's own cost while in use."""
        budget = self.service.inflight
        held = _reserve_waiting(budget, self.max_message_bytes * GRPC_BYTE_COST)
        try:
            # A client that sends its message too slowly is cut off, as REST's slow bodies.
            timer = threading.Timer(self.service.config.body_timeout_s, context.cancel)
            timer.daemon = True
            timer.start()
            try:
                request = next(requests, None)
            finally:
                timer.cancel()
            if request is None:
                raise ServeError(400, "ModelInfer needs one ModelInferRequest message")
            cost = min(held, request.ByteSize() * GRPC_BYTE_COST)
            budget.release(held - cost)
            held = cost
            yield request
        finally:
            budget.release(held)


def _reserve_waiting(budget: ByteBudget, cost: int) -> int:
    """Reserve ``cost``, waiting up to :data:`RECEIVE_WAIT_S` for room (the budget's own
    503 when there is none by then). :returns: ``cost``."""
    deadline = time.monotonic() + RECEIVE_WAIT_S
    # Polled, not reserved, while waiting: only the final refusal counts as one.
    while budget.used + cost > budget.total and time.monotonic() < deadline:
        time.sleep(0.005)
    budget.reserve(cost)
    return cost


class _StreamedInfer(grpc.ServerInterceptor):
    """Serve ``ModelInfer`` as stream-unary, so that its message is read when the servicer
    asks for it rather than before the servicer runs (same bytes on the wire)."""

    def intercept_service(self, continuation, handler_call_details):
        """The generated unary handler of ``ModelInfer``, re-registered as stream-unary."""
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method != INFER_METHOD:
            return handler
        return grpc.stream_unary_rpc_method_handler(
            handler.unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _input_tensor(request, image_size: int) -> np.ndarray:
    """The one input, from ``raw_input_contents`` or typed ``contents``."""
    if len(request.inputs) != 1:
        raise ServeError(
            400, f"expected exactly one input tensor ('input'), got {len(request.inputs)}"
        )
    tensor = request.inputs[0]
    raw = None
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1:
            raise ServeError(400, "raw_input_contents must hold one entry per input (one)")
        raw = request.raw_input_contents[0]
    data = None
    values = tensor.contents.fp32_contents
    if raw is None and len(values):
        # Straight into float32: a list would hold a Python float (32 bytes) per value.
        data = np.fromiter(values, np.float32, count=len(values))
    return decode_tensor(
        tensor.name, tensor.datatype, list(tensor.shape), raw=raw, data=data,
        image_size=image_size,
    )  # fmt: skip


def create_grpc_server(service: ModelService, host: str, port: int) -> tuple[grpc.Server, int]:
    """A started-but-not-serving gRPC server on ``host:port`` (0 picks a free port).

    :returns: the server (call ``start()``) and the port it is bound to.
    :raises RuntimeError: the address cannot be bound.
    """
    config = service.config
    # Enough threads for every queued and running request; beyond that gRPC refuses calls
    # (RESOURCE_EXHAUSTED) rather than queueing them without bound.
    plan = service.plan
    threads = min(256, config.max_queue + plan.max_batch_size * plan.workers + 4)
    # A message must fit the body limit and, at its cost once received, the whole budget.
    max_message = max(1, min(config.max_body_bytes, config.inflight_bytes // GRPC_BYTE_COST))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="res2net-grpc"),
        interceptors=[_StreamedInfer()],
        maximum_concurrent_rpcs=threads,
        options=[
            ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", config.max_body_bytes),
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", LOOKAHEAD_BYTES),
        ],
    )
    servicer = InferenceServicer(service, max_message)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise RuntimeError(f"cannot bind the gRPC server to {host}:{port} (port in use?)")
    return server, bound
