"""gRPC's ModelInfer reads its message only once room is reserved for it (issue 25): the
slow sender that holds such a reservation is cut off, and a unary client sees no change."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from res2net.data.preprocess import Preprocess
from res2net.deploy.server import ModelService, ServeConfig, start_server

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"  # the protocol's own path


class _Model:
    model_name, labels, num_classes, weights = "m", ["a", "b"], 2, None
    preprocess_cfg = Preprocess(resize_short=8, crop=8)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        return np.stack([batch.mean(axis=(1, 2, 3)), -batch.mean(axis=(1, 2, 3))], axis=1)


@pytest.fixture
def running():
    config = ServeConfig(port=0, grpc_port=0, body_timeout_s=1.0, inflight_bytes=4 << 20)
    server = start_server(ModelService(_Model(), config))
    yield server
    server.stop()


def _request(value: float) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 3, 8, 8])
    request.raw_input_contents.append(np.full((1, 3, 8, 8), value, "<f4").tobytes())
    return request


def test_a_sender_that_never_sends_its_message_is_cut_off(running):
    """A call whose message never comes held the whole budget's reservation for the largest
    message; after body_timeout_s it is cancelled, the reservation is given back, and a
    plain unary call (the protocol's own stub) is answered with the model's output."""
    channel = grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}")
    never = threading.Event()

    def no_message():
        never.wait(30)  # holds the stream open without a message
        return
        yield

    call = channel.stream_unary(
        INFER_METHOD,
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    try:
        with pytest.raises(grpc.RpcError) as err:
            call(no_message(), timeout=20)
        assert err.value.code() == grpc.StatusCode.CANCELLED
        # The server's thread gives the reservation back once it sees the cancellation.
        for _ in range(200):
            if running.service.inflight.used == 0:
                break
            time.sleep(0.05)
        assert running.service.inflight.used == 0
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(_request(0.25), timeout=20)
        logits = np.frombuffer(response.raw_output_contents[0], "<f4")
        assert logits.tolist() == [0.25, -0.25]
    finally:
        never.set()
        channel.close()
