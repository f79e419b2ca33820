"""Hostile requests to the server: 4xx naming the field (never 500 or gRPC UNKNOWN), slow
connections closed, bodies counted as they arrive, byte budgets for decoding and for bodies
in flight, and an upload page that escapes what it shows."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from io import BytesIO

import grpc
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from res2net.data.images import decoded_bytes
from res2net.data.preprocess import Preprocess
from res2net.data.transforms import preprocess
from res2net.deploy.server import ModelService, ServeConfig, ServeError, start_server
from res2net.deploy.server.grpc_api import _input_tensor
from res2net.deploy.server.rest import HEADER_LENGTH, _parse_infer_body

HOSTILE_NAME = '<img src=x onerror="alert(1)">&'
SIZE = 32  # a small crop keeps the tensors small


class FakePredictor:
    """What ModelService needs of a Predictor; the model is a fixed linear map, and
    preprocessing can be held at a gate to keep a decode in flight."""

    def __init__(self) -> None:
        self.model_name = HOSTILE_NAME
        self.preprocess_cfg = Preprocess(resize_short=SIZE, crop=SIZE)
        self.labels = ["<b>cat</b>", "dog"]
        self.num_classes = 2
        self.weights = None
        self.gate = threading.Event()
        self.gate.set()
        self.decoding = threading.Event()

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        return np.stack([batch.mean(axis=(1, 2, 3)), -batch.mean(axis=(1, 2, 3))], axis=1)

    def preprocess(self, blob):
        self.decoding.set()
        assert self.gate.wait(60)
        return preprocess(blob, self.preprocess_cfg)


@pytest.fixture(scope="module")
def served():
    fake = FakePredictor()
    config = ServeConfig(
        port=0, grpc_port=0, max_delay_ms=1, timeout_s=5, header_timeout_s=1.0,
        body_timeout_s=1.0, max_body_bytes=2**20, retry_after_s=3,
        # room for one 4000x4000 upload at its decoding cost, not for two or for a 5000x5000
        decode_bytes=decoded_bytes(_png(4000, 4000)) * 5 // 4,
    )  # fmt: skip
    running = start_server(ModelService(fake, config))
    yield running, fake
    fake.gate.set()
    running.stop()


def _infer_url(running) -> str:
    return f"{running.url}/v2/models/{HOSTILE_NAME}/infer"


def _tensor(**fields) -> dict:
    base = {"name": "input", "datatype": "FP32", "shape": [1, 3, SIZE, SIZE]}
    return {**base, **fields}


ZEROS = [0.0] * (3 * SIZE * SIZE)
MALFORMED = {
    "deep JSON": ("[" * 100_000 + "]" * 100_000, None, "nested too deep"),
    "parameters list": (json.dumps({"inputs": [_tensor(data=ZEROS, parameters=[1])]}), None,
                        "inputs[0].parameters"),
    "parameters int": (json.dumps({"inputs": [_tensor(data=ZEROS, parameters=5)]}), None,
                       "inputs[0].parameters"),
    "top parameters string": (
        json.dumps({"inputs": [_tensor(data=ZEROS)], "parameters": "binary"}), None, "parameters"
    ),
    "output parameters": (
        json.dumps({"inputs": [_tensor(data=ZEROS)],
                    "outputs": [{"name": "logits", "parameters": []}]}), None, "outputs[]"
    ),
    "arabic digits length": (json.dumps({"inputs": [_tensor(data=ZEROS)]}), "\u0661\u0662",
                             HEADER_LENGTH),
    "superscript length": (json.dumps({"inputs": [_tensor(data=ZEROS)]}), "\u00b2", HEADER_LENGTH),
    "shape overflow": (json.dumps({"inputs": [_tensor(shape=[2**62, 3, SIZE, SIZE],
                                                      data=ZEROS)]}), None, "shape"),
    "shape overflow binary": (
        json.dumps({"inputs": [_tensor(shape=[2**62, 3, SIZE, SIZE],
                                       parameters={"binary_data_size": 0})]}), None, "FP32 needs"
    ),
    "string data": (json.dumps({"inputs": [_tensor(data=["1.5"] * len(ZEROS))]}), None, "'data'"),
    "bool data": (json.dumps({"inputs": [_tensor(data=[True] * len(ZEROS))]}), None, "'data'"),
    "null data": (json.dumps({"inputs": [_tensor(data=[None] * len(ZEROS))]}), None, "'data'"),
    "bool shape": (json.dumps({"inputs": [_tensor(shape=[True, 3, SIZE, SIZE], data=ZEROS)]}),
                   None, "shape"),
    # Past Python's 4,300-digit limit on int() (which raised ValueError: a 500).
    "5000-digit length": (json.dumps({"inputs": [_tensor(data=ZEROS)]}), "1" * 5000,
                          HEADER_LENGTH),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_rest_requests_get_4xx_naming_the_field(served, case):
    running, _ = served
    body, header_length, words = MALFORMED[case]
    headers = {HEADER_LENGTH: header_length} if header_length else {}
    headers = {k: v.encode() for k, v in headers.items()}
    response = httpx.post(_infer_url(running), content=body.encode(), headers=headers, timeout=30)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]


def test_malformed_grpc_requests_get_invalid_argument(served):
    running, _ = served
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}"))
    request = pb.ModelInferRequest(model_name=HOSTILE_NAME)
    request.inputs.add(name="input", datatype="FP32", shape=[2**62, 3, SIZE, SIZE])
    request.raw_input_contents.append(b"")  # 2**62 * 3 * 32 * 32 wraps to 0 in 64 bits
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "FP32 needs" in err.value.details()


def test_upload_page_escapes_the_model_name(served):
    running, _ = served
    page = httpx.get(running.url + "/", timeout=30).text
    assert (
        HOSTILE_NAME not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in page
    )


def test_slow_header_connections_are_closed(served):
    running, _ = served
    host, port = running.url.removeprefix("http://").split(":")
    slow = []
    for _ in range(50):
        sock = socket.create_connection((host, int(port)))
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")  # never finished
        slow.append(sock)
    for sock in slow:
        sock.settimeout(30)  # generous: the server's header timeout is 1 s
        assert sock.recv(100) == b"", "connection still open after the header timeout"
        sock.close()
    assert httpx.get(running.url + "/v2/health/live", timeout=30).status_code == 200


def _png(width: int, height: int) -> bytes:
    buf = BytesIO()
    Image.new("L", (width, height), 128).save(buf, "PNG")
    return buf.getvalue()


def test_decoding_budget_refuses_instead_of_growing(served):
    running, fake = served
    url = running.url + "/v1/classify"
    big = _png(4000, 4000)  # 16 M pixels, 0.8 of the budget, ~30 KB on the wire
    assert httpx.post(url, content=_png(5000, 5000), timeout=30).status_code == 413
    fake.gate.clear()
    fake.decoding.clear()
    first: dict = {}
    thread = threading.Thread(
        target=lambda: first.update(r=httpx.post(url, content=big, timeout=60))
    )
    thread.start()
    assert fake.decoding.wait(30)
    second = httpx.post(url, content=big, timeout=30)  # would need 1.6x the budget in flight
    assert second.status_code == 503 and second.headers["retry-after"] == "3"
    fake.gate.set()
    thread.join(60)
    assert first["r"].status_code == 200
    assert first["r"].json()["predictions"][0]["labels"][0] in fake.labels


def test_decoding_counts_inside_the_timeout(served):
    running, fake = served
    fake.gate.clear()
    began = time.monotonic()
    response = httpx.post(running.url + "/v1/classify", content=_png(64, 64), timeout=60)
    fake.gate.set()
    assert response.status_code == 504, response.text
    assert time.monotonic() - began < 60  # answered at the 5 s timeout, not after the gate


BAD_CONFIGS = {
    "max_delay_ms": [float("nan"), float("inf"), -1.0],
    "timeout_s": [float("inf"), 0.0, -1.0],
    "port": [65536, -1, 80.5, True],
    "grpc_port": [99999],
    "max_body_bytes": [0, 2.5],
    "inflight_bytes": [0],
    "body_timeout_s": [float("nan"), 0.0],
    "header_timeout_s": [float("inf")],
    "max_batch_size": [0],
    "workers": [0],
    "decode_bytes": [-5],
}


@pytest.mark.parametrize(
    ("field", "value"), [(f, v) for f, values in BAD_CONFIGS.items() for v in values]
)
def test_serve_config_refuses_numbers_out_of_range(field, value):
    """A ServeConfig with nan, inf or an out-of-range number fails where it is built, naming
    the field (max_delay_ms=nan used to start a server that never became ready)."""
    with pytest.raises(ValueError, match=f"^{field} must be"):
        ServeConfig(**{field: value})


@pytest.mark.parametrize("delay", [float("nan"), float("inf"), -0.5])
def test_batcher_refuses_a_delay_it_cannot_wait(delay):
    from res2net.deploy.server.batcher import DynamicBatcher

    with pytest.raises(ValueError, match="^max_delay_s must be"):
        DynamicBatcher(lambda batch: batch, max_delay_s=delay)


def test_serve_config_refuses_an_api_key_no_client_can_send():
    with pytest.raises(ValueError, match="api_key must be printable ASCII"):
        ServeConfig(api_key="s\u00e9kret")


# -- request bodies: counted as they arrive, timed, and within the in-flight budget -------


def _address(running) -> tuple[str, int]:
    host, port = running.url.removeprefix("http://").split(":")
    return host, int(port)


def _answer(sock: socket.socket) -> tuple[int, dict]:
    """Read a whole response (the server closes the connection after it): status, body."""
    sock.settimeout(30)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower(), head
    return int(head.split()[1]), json.loads(body)


def _send_chunked(running, extra_headers: str, total: int) -> tuple[int, int, dict]:
    """POST a chunked body of up to ``total`` bytes to /v1/classify, 64 KiB at a time,
    stopping as soon as the server answers; returns (bytes sent, status, JSON body)."""
    sock = socket.create_connection(_address(running))
    head = "POST /v1/classify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    sock.sendall(f"{head}{extra_headers}\r\n".encode())
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    sent = 0
    try:
        while sent < total and not select.select([sock], [], [], 0)[0]:
            sock.sendall(chunk)
            sent += 65536
        if sent >= total:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed: the answer is waiting to be read
    with sock:
        status, body = _answer(sock)
    return sent, status, body


def test_content_length_beside_chunked_is_refused_before_the_body(served):
    """Content-Length: 2 with Transfer-Encoding: chunked used to pass the length check,
    then the whole chunked body was read (1,000 MB: +2 GB) before a 400."""
    running, _ = served
    total = 64 * 2**20
    sent, status, body = _send_chunked(running, "Content-Length: 2\r\n", total)
    assert status == 400 and "Transfer-Encoding" in body["error"], body
    assert sent < total


def test_chunked_body_is_counted_against_the_limit_as_it_arrives(served):
    running, _ = served
    total = 64 * 2**20  # the limit is 1 MiB
    sent, status, body = _send_chunked(running, "", total)
    assert status == 413 and "exceeds the limit of 1048576 bytes" in body["error"], body
    assert sent < total
    assert httpx.get(running.url + "/v2/health/live", timeout=30).status_code == 200


def test_content_length_of_thousands_of_digits_is_400(served):
    running, _ = served
    with socket.create_connection(_address(running)) as sock:
        sock.sendall(f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: {'9' * 5000}"
                     "\r\n\r\n".encode())  # fmt: skip
        sock.settimeout(30)
        assert sock.recv(100).startswith(b"HTTP/1.1 400"), "not refused as a bad request"


def test_slow_bodies_get_408_and_are_closed(served):
    """Connections whose body stalls after its headers were held without end; with a 1 s
    body timeout each is answered 408 and closed, and the server keeps serving."""
    running, _ = served
    slow = []
    for _ in range(5):
        sock = socket.create_connection(_address(running))
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
                     + b"x" * 10)  # fmt: skip
        slow.append(sock)
    for sock in slow:
        with sock:
            status, body = _answer(sock)  # the server closes: recv ends instead of waiting
        assert status == 408 and "did not arrive within 1 s" in body["error"], body
    assert httpx.get(running.url + "/v2/health/live", timeout=30).status_code == 200


def _noise_png(side: int) -> bytes:
    buf = BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (side, side), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def test_rest_and_grpc_share_one_in_flight_byte_budget():
    """A classify upload held in decoding keeps its body's bytes reserved: a JSON request
    on REST and a raw-tensor request on gRPC, each of which fits the budget alone, get 503
    (UNAVAILABLE) with Retry-After beside it, and succeed once it is answered."""
    fake = FakePredictor()
    upload = _noise_png(300)  # ~90 KB: 270 KB of the budget at the binary rate
    config = ServeConfig(port=0, grpc_port=0, max_delay_ms=1, inflight_bytes=400_000,
                         retry_after_s=7)  # fmt: skip
    running = start_server(ModelService(fake, config))
    channel = grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}")
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    request = pb.ModelInferRequest(model_name=HOSTILE_NAME)  # 8 images, ~200 KB reserved
    request.inputs.add(name="input", datatype="FP32", shape=[8, 3, SIZE, SIZE])
    request.raw_input_contents.append(np.zeros((8, 3, SIZE, SIZE), "<f4").tobytes())
    json_body = json.dumps({"inputs": [_tensor(data=ZEROS)]}).encode()  # ~220 KB reserved
    try:
        fake.gate.clear()
        first: dict = {}
        thread = threading.Thread(
            target=lambda: first.update(
                r=httpx.post(running.url + "/v1/classify", content=upload, timeout=60)
            )
        )
        thread.start()
        assert fake.decoding.wait(30)
        refused = httpx.post(_infer_url(running), content=json_body, timeout=30)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "7"
        assert "request bodies in flight" in refused.json()["error"]
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(request, timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert ("retry-after", "7") in err.value.trailing_metadata()
        fake.gate.set()
        thread.join(60)
        assert first["r"].status_code == 200, first["r"].text
        assert httpx.post(_infer_url(running), content=json_body, timeout=30).status_code == 200
        assert len(stub.ModelInfer(request, timeout=30).raw_output_contents) == 2
        assert running.service.inflight.used == 0
    finally:
        fake.gate.set()
        channel.close()
        running.stop()


# -- property-based fuzzing of the parsers (no server needed) -----------------------------

_FUZZ = settings(
    max_examples=200, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _requests() -> st.SearchStrategy[dict]:
    tensor = st.fixed_dictionaries(
        {},
        optional={
            "name": st.sampled_from(["input", "x"]) | _JSON,
            "datatype": st.sampled_from(["FP32", "INT8"]) | _JSON,
            "shape": st.lists(st.integers(-2, 2**65), max_size=5) | _JSON,
            "data": st.lists(st.floats() | st.text(max_size=3), max_size=8) | _JSON,
            "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": _JSON}) | _JSON,
        },
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "inputs": st.lists(tensor, max_size=2) | _JSON,
            "outputs": st.lists(st.dictionaries(st.sampled_from(["name", "parameters"]), _JSON))
            | _JSON,
            "parameters": _JSON,
            "id": _JSON,
        },
    )


@_FUZZ
@given(request=_requests(), binary=st.binary(max_size=64), length=st.none() | st.text(max_size=4))
def test_fuzz_rest_parsing_raises_only_4xx(request, binary, length):
    text = json.dumps(request).encode()
    body = text + binary
    header_length = str(len(text)) if length is None else length
    try:
        _parse_infer_body(body, header_length, 2)
    except ServeError as exc:
        assert 400 <= exc.status < 500


@_FUZZ
@given(
    shape=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=5),
    datatype=st.sampled_from(["FP32", "FP16", ""]),
    raw=st.none() | st.binary(max_size=64),
    values=st.lists(st.floats(width=32), max_size=16),
    extra_raw=st.booleans(),
)
def test_fuzz_grpc_parsing_raises_only_4xx(shape, datatype, raw, values, extra_raw):
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="input", datatype=datatype, shape=shape)
    tensor.contents.fp32_contents.extend(values)
    if raw is not None:
        request.raw_input_contents.append(raw)
        if extra_raw:
            request.raw_input_contents.append(raw)
    try:
        _input_tensor(request, 2)
    except ServeError as exc:
        assert 400 <= exc.status < 500


_SERVER_CHILD = """
import json, resource, sys, threading
from io import BytesIO
import httpx, numpy as np
from PIL import Image
from res2net.data.transforms import preprocess
from res2net.deploy.server import ModelService, ServeConfig, start_server
from res2net.data.preprocess import Preprocess

class Model:
    model_name, labels, num_classes, weights = "m", ["a", "b"], 2, None
    preprocess_cfg = Preprocess()
    def predict_batch(self, batch):
        return np.zeros((len(batch), 2), np.float32)
    def preprocess(self, blob):
        return preprocess(blob, self.preprocess_cfg)

config = ServeConfig(
    port=0, grpc_port=None, decode_bytes=int(sys.argv[1]) * 9, decode_threads=8, timeout_s=120
)
running = start_server(ModelService(Model(), config))
buf = BytesIO()
Image.new("L", (4000, 4000), 128).save(buf, "PNG")  # about 30 KB, 16 M pixels
url = running.url + "/v1/classify"
httpx.post(url, content=Image.new("L", (64, 64)).tobytes(), timeout=120)  # warm-up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
codes = []
def go():
    codes.append(httpx.post(url, content=buf.getvalue(), timeout=120).status_code)
threads = [threading.Thread(target=go) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
running.stop()
print(json.dumps({"codes": sorted(codes), "grew_mb": grew / 1024}))
"""


def test_concurrent_large_uploads_stay_within_the_decoding_budget():
    """Eight concurrent 16 M-pixel uploads: with room for one, peak memory is about one
    image's decoding (the rest get 503), not eight."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", _SERVER_CHILD, "20000000"],
        capture_output=True, text=True, timeout=600,
        env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert 200 in result["codes"] and set(result["codes"]) <= {200, 503}, result
    assert result["grew_mb"] < 400, result


_BODIES_CHILD = """
import json, resource, sys, threading
import grpc, httpx, numpy as np
from tritonclient.grpc import service_pb2 as pb, service_pb2_grpc as pb_grpc
from res2net.data.preprocess import Preprocess
from res2net.deploy.server import ModelService, ServeConfig, start_server

class Model:
    model_name, labels, num_classes, weights = "m", ["a", "b"], 2, None
    preprocess_cfg = Preprocess(resize_short=32, crop=32)
    def predict_batch(self, batch):
        return np.zeros((len(batch), 2), np.float32)

protocol, images = sys.argv[1], int(sys.argv[2])
config = ServeConfig(port=0, grpc_port=0, inflight_bytes=150 * 2**20, timeout_s=120)
running = start_server(ModelService(Model(), config))
shape = [images, 3, 32, 32]
if protocol == "rest":  # JSON of the shortest floats: the most objects per byte
    values = ",".join(["0.5"] * (images * 3072))
    body = ('{"inputs": [{"name": "input", "datatype": "FP32", "shape": %s, "data": [%s]}]}'
            % (json.dumps(shape), values)).encode()
    del values
    def call():
        return httpx.post(running.url + "/v2/models/m/infer", content=body,
                          timeout=120).status_code
else:
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}"))
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=shape)
    tensor.contents.fp32_contents.extend(np.full(images * 3072, 0.5, np.float32))
    def call():
        try:
            stub.ModelInfer(request, timeout=120)
            return 200
        except grpc.RpcError as exc:
            return 503 if exc.code() == grpc.StatusCode.UNAVAILABLE else str(exc.code())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
codes = []
threads = [threading.Thread(target=lambda: codes.append(call())) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
running.stop()
print(json.dumps({"codes": sorted(codes, key=str), "grew_mb": grew / 1024}))
"""


@pytest.mark.parametrize(
    ("protocol", "images", "limit_mb"), [("rest", 900, 400), ("grpc", 2000, 650)]
)
def test_concurrent_large_bodies_stay_within_the_in_flight_budget(protocol, images, limit_mb):
    """Four concurrent large requests: 11 MB of JSON (about 140 MB once parsed) on REST, or
    25 MB of gRPC ``fp32_contents`` (a list of Python floats was 8x that). With a 150 MiB
    in-flight budget, one request at a time is handled and the others get 503: the server
    (and the clients, in the same process) grew 660 MB and 1,030 MB before. gRPC holds each
    received message before the server's code runs, so its bound is looser (issue 25: four
    62 MB JSON requests added 1.8 GB, four 60 MB gRPC requests 2.2 GB)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", _BODIES_CHILD, protocol, str(images)],
        capture_output=True, text=True, timeout=600,
        env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert 200 in result["codes"] and set(result["codes"]) <= {200, 503}, result
    assert result["grew_mb"] < limit_mb, result
