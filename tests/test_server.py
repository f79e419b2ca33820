"""The server, started for real on loopback and driven by the protocol's own clients.

``tritonclient.http`` and ``tritonclient.grpc`` (NVIDIA's Open Inference Protocol clients)
talk to a ``res2net serve`` subprocess loaded with a randomized-BatchNorm PaddleClas weight
file, so outputs depend on the image: the server's logits must match PaddleClas's own on
the same inputs, and its top-1 must match the local Predictor's on the photos. Batching,
backpressure and graceful shutdown use an in-process server whose model can be held at a
gate, so every step is an event, never a timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from scipy.special import softmax as scipy_softmax
from tritonclient.utils import InferenceServerException

from tests.conftest import PHOTOS, simple_eval_transform

MODEL = "Res2Net50_26w_4s"


def launch(args: list[str], log: Path, timeout: float = 180) -> tuple[subprocess.Popen, dict]:
    """Start ``res2net serve`` on free ports; returns the process and its {rest, grpc} ports."""
    cmd = [sys.executable, "-m", "res2net", "serve", "--port", "0", "--grpc-port", "0", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text()
        if "; ready" in text:
            line = next(ln for ln in text.splitlines() if "; ready" in ln)
            rest = int(line.split("http://127.0.0.1:")[1].split(",")[0].split(";")[0])
            grpc_port = int(line.split("gRPC on 127.0.0.1:")[1].split(";")[0])
            return proc, {"rest": rest, "grpc": grpc_port}
        if proc.poll() is not None:
            pytest.fail(f"res2net serve exited with {proc.returncode}:\n{text}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"res2net serve not ready after {timeout} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def weights(paddle_reference) -> tuple[Path, np.ndarray]:
    """A PaddleClas-made .pdparams with image-dependent outputs, and PaddleClas's logits."""
    return paddle_reference(MODEL)


@pytest.fixture(scope="module")
def server(weights, tmp_path_factory):
    """A ``res2net serve`` subprocess; yields {rest, grpc} ports."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc, ports = launch(
        ["--model", MODEL, "--weights", str(weights[0]), "--max-body-mb", "20",
         "--log-level", "warning"], log,
    )  # fmt: skip
    yield ports
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text()


@pytest.fixture(scope="module")
def predictor(weights):
    """The local Predictor on the same weights: what the server must agree with."""
    from res2net.deploy.predictor import Predictor

    return Predictor(MODEL, str(weights[0]), num_workers=0)


def http_client(server) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(f"127.0.0.1:{server['rest']}", network_timeout=120)


def grpc_client(server) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(f"127.0.0.1:{server['grpc']}")


def photo_tensors(predictor) -> np.ndarray:
    return np.stack([predictor.preprocess(p).numpy() for p in PHOTOS])


# -- metadata and readiness ------------------------------------------------------------


def test_http_metadata_and_readiness(server, weights):
    client = http_client(server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    meta = client.get_model_metadata(MODEL)
    assert meta["name"] == MODEL and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]
    assert [o["name"] for o in meta["outputs"]] == ["logits", "probabilities"]
    assert meta["parameters"]["weights"] == str(weights[0])
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.get_model_metadata("nope")


def test_grpc_metadata_and_readiness(server):
    client = grpc_client(server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL)
    meta = client.get_model_metadata(MODEL, as_json=True)
    assert meta["name"] == MODEL
    assert meta["inputs"][0]["shape"] == ["-1", "3", "224", "224"]  # int64 as JSON strings
    with pytest.raises(InferenceServerException, match="unknown model") as err:
        client.get_model_metadata("nope")
    assert err.value.status() == "StatusCode.NOT_FOUND"


# -- inference -----------------------------------------------------------------------


def _http_infer(server, batch: np.ndarray, binary: bool, outputs=("logits",)) -> dict:
    client = http_client(server)
    tensor = httpclient.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    wanted = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in outputs]
    result = client.infer(MODEL, [tensor], outputs=wanted)
    return {n: result.as_numpy(n) for n in outputs}


def _grpc_infer(server, batch: np.ndarray) -> dict:
    tensor = grpcclient.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    result = grpc_client(server).infer(MODEL, [tensor])  # no outputs named: all of them
    return {n: result.as_numpy(n) for n in ("logits", "probabilities")}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_http_infer_matches_paddleclas(server, weights, photo_batch, binary):
    """The same inputs PaddleClas saw: the served logits are PaddleClas's logits."""
    reference = weights[1]
    out = _http_infer(server, photo_batch[0].numpy(), binary, outputs=("logits", "probabilities"))
    scale = np.abs(reference).max()
    np.testing.assert_allclose(out["logits"], reference, atol=1e-4 * scale, rtol=0)
    expected = np.exp(reference - reference.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-4)


def test_grpc_infer_matches_paddleclas(server, weights, photo_batch):
    reference = weights[1]
    out = _grpc_infer(server, photo_batch[0].numpy())
    np.testing.assert_allclose(out["logits"], reference, atol=1e-4 * np.abs(reference).max())
    # Probabilities: scipy's softmax of PaddleClas's logits, value for value.
    np.testing.assert_allclose(out["probabilities"], scipy_softmax(reference, axis=1), atol=1e-5)
    assert out["probabilities"].dtype == np.float32


def test_top1_equals_local_predictor(server, predictor):
    """REST, gRPC and /v1/classify all give the local Predictor's top-1 on every photo."""
    local = predictor.predict(PHOTOS)
    top1 = [p.class_ids[0] for p in local]
    assert len(set(top1)) > 1, "outputs do not depend on the image: the check could not fail"
    batch = photo_tensors(predictor)
    assert list(_http_infer(server, batch, True)["logits"].argmax(1)) == top1
    assert list(_grpc_infer(server, batch)["logits"].argmax(1)) == top1
    files = [("images", (p.name, p.read_bytes())) for p in PHOTOS]
    body = httpx.post(f"http://127.0.0.1:{server['rest']}/v1/classify", files=files).json()
    assert [p["source"] for p in body["predictions"]] == [p.name for p in PHOTOS]
    for served, mine in zip(body["predictions"], local, strict=True):
        assert served["class_ids"] == mine.class_ids and served["labels"] == mine.labels
        np.testing.assert_allclose(served["scores"], mine.scores, atol=1e-4)


def test_classify_raw_body_and_bad_image_fails_alone(server, predictor):
    url = f"http://127.0.0.1:{server['rest']}/v1/classify"
    photo = PHOTOS[0]
    raw = httpx.post(url, content=photo.read_bytes(), params={"topk": 3}).json()
    assert raw["predictions"][0]["class_ids"] == predictor.predict(photo)[0].class_ids[:3]
    files = [("a", ("good.png", photo.read_bytes())), ("b", ("bad.jpg", b"\xff\xd8 not a jpeg"))]
    mixed = httpx.post(url, files=files).json()["predictions"]
    assert mixed[0]["error"] is None and mixed[0]["class_ids"]
    assert "bad.jpg" in mixed[1]["error"] and "class_ids" not in mixed[1]


# -- bad input -------------------------------------------------------------------------


def _post_infer(server, body: bytes, model: str = MODEL, **headers) -> httpx.Response:
    url = f"http://127.0.0.1:{server['rest']}/v2/models/{model}/infer"
    return httpx.post(url, content=body, headers=headers, timeout=60)


def _json_request(shape, datatype="FP32", data=None, **extra) -> bytes:
    count = int(np.prod(shape))
    tensor = {"name": "input", "datatype": datatype, "shape": shape, **extra}
    tensor["data"] = [0.5] * count if data is None else data
    return json.dumps({"inputs": [tensor]}).encode()


BAD_REQUESTS = {
    "malformed JSON": (b'{"inputs": [', 400, "malformed JSON"),
    "not an object": (b"[1, 2]", 400, "JSON object"),
    "no inputs": (b'{"outputs": []}', 400, "'inputs'"),
    "missing shape": (
        json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "data": [1]}]}).encode(),
        400, "missing the required field 'shape'",
    ),
    "wrong shape": (_json_request([1, 3, 32, 32]), 400, "expected [N, 3, 224, 224]"),
    "wrong dtype": (_json_request([1, 3, 224, 224], "INT32"), 400, "expected 'FP32'"),
    "too few values": (_json_request([2, 3, 224, 224], data=[0.0] * 10), 400, "values in 'data'"),
    "text values": (_json_request([1, 3, 224, 224], data=["a"] * 150528), 400, "only numbers"),
    "unknown output": (
        json.dumps({**json.loads(_json_request([1, 3, 224, 224])), "outputs": [{"name": "x"}]})
        .encode(), 400, "unknown output 'x'",
    ),
}  # fmt: skip


def _still_serving(server) -> None:
    """A follow-up request after a refused one: the server keeps working."""
    body = _post_infer(server, _json_request([1, 3, 224, 224]))
    assert body.status_code == 200, body.text
    assert body.json()["outputs"][0]["shape"] == [1, 1000]


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_infer_request_is_refused_clearly(server, case):
    body, status, message = BAD_REQUESTS[case]
    response = _post_infer(server, body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    _still_serving(server)


def test_unknown_model_oversized_body_and_corrupt_image(server):
    response = _post_infer(server, _json_request([1, 3, 224, 224]), model="Res2Net999")
    assert response.status_code == 404 and "Res2Net999" in response.json()["error"]
    # 35 FP32 images in binary form: 21 MB, over the server's 20 MiB limit.
    big = np.zeros((35, 3, 224, 224), np.float32).tobytes()
    tensor = {"name": "input", "datatype": "FP32", "shape": [35, 3, 224, 224]}
    tensor["parameters"] = {"binary_data_size": len(big)}
    header = json.dumps({"inputs": [tensor]}).encode()
    response = _post_infer(
        server, header + big, **{"Inference-Header-Content-Length": str(len(header))}
    )
    assert response.status_code == 413 and "exceeds the limit" in response.json()["error"]
    url = f"http://127.0.0.1:{server['rest']}/v1/classify"
    response = httpx.post(url, files={"image": ("broken.png", PHOTOS[0].read_bytes()[:200])})
    assert response.status_code == 400 and "broken.png" in response.json()["error"]
    assert httpx.post(url, content=b"").status_code == 400
    _still_serving(server)


def test_grpc_bad_input(server):
    client = grpc_client(server)
    tensor = grpcclient.InferInput("input", [1, 3, 32, 32], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(InferenceServerException, match=r"expected \[N, 3, 224, 224\]") as err:
        client.infer(MODEL, [tensor])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    tensor = grpcclient.InferInput("input", [1, 3, 224, 224], "FP16")
    tensor.set_data_from_numpy(np.zeros((1, 3, 224, 224), np.float16))
    with pytest.raises(InferenceServerException, match="expected 'FP32'"):
        client.infer(MODEL, [tensor])
    assert client.is_server_ready()


def _scrape(server) -> dict[tuple[str, tuple], float]:
    """/metrics read by prometheus_client's own parser: (sample name, labels) -> value."""
    text = httpx.get(f"http://127.0.0.1:{server['rest']}/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_count_known_requests_exactly(server, predictor):
    """One REST infer of 3 images, one gRPC infer of 2 and one refused REST request: the
    counters and the batch-size histogram move by exactly that, as Prometheus reads them."""
    batch = photo_tensors(predictor)
    infer = "/v2/models/{name}/infer"
    before = _scrape(server)
    _http_infer(server, batch[:3], True)
    _grpc_infer(server, batch[:2])
    bad = httpx.post(
        f"http://127.0.0.1:{server['rest']}/v2/models/{MODEL}/infer", content=b"{not json"
    )
    assert bad.status_code == 400
    after = _scrape(server)
    rest_ok = {"protocol": "rest", "endpoint": infer, "code": "200"}
    rest_bad = {"protocol": "rest", "endpoint": infer, "code": "400"}
    grpc_ok = {"protocol": "grpc", "endpoint": "ModelInfer", "code": "OK"}
    assert _delta(before, after, "res2net_requests_total", **rest_ok) == 1
    assert _delta(before, after, "res2net_requests_total", **rest_bad) == 1
    assert _delta(before, after, "res2net_requests_total", **grpc_ok) == 1
    assert _delta(before, after, "res2net_request_errors_total", **rest_bad) == 1
    assert _delta(before, after, "res2net_request_errors_total", **rest_ok) == 0
    latency = {"protocol": "rest", "endpoint": infer}
    assert _delta(before, after, "res2net_request_latency_seconds_count", **latency) == 2
    # Two model calls (the refused request never reached the model): sizes 3 and 2.
    assert _delta(before, after, "res2net_batch_size_count") == 2
    assert _delta(before, after, "res2net_batch_size_sum") == 5
    expected_buckets = {"1.0": 0, "2.0": 1, "4.0": 2, "8.0": 2, "+Inf": 2}
    for le, count in expected_buckets.items():
        assert _delta(before, after, "res2net_batch_size_bucket", le=le) == count, le
    assert _delta(before, after, "res2net_batch_inference_seconds_count") == 2


# -- in-process: batching, backpressure, API key, graceful shutdown ----------------------


class Gate:
    """Wraps predict_batch so a test can hold the model call and count batch sizes."""

    def __init__(self, predict_batch) -> None:
        self.predict_batch = predict_batch
        self.open = threading.Event()
        self.entered = threading.Event()
        self.sizes: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(len(batch))
        self.entered.set()
        assert self.open.wait(120), "gate never opened"
        return self.predict_batch(batch)


@pytest.fixture
def gated(predictor):
    """Start an in-process server (REST only) around a held model; yields (running, gate)."""
    from res2net.deploy.server import ModelService, ServeConfig, start_server

    gate = Gate(predictor.predict_batch)
    gate.open.set()  # warm-up passes
    held = type("Held", (), {})()
    for attr in ("model_name", "preprocess_cfg", "labels", "num_classes", "weights"):
        setattr(held, attr, getattr(predictor, attr))
    held.predict_batch, held.preprocess = gate, predictor.preprocess
    made = []

    def start(**settings):
        config = ServeConfig(**{"port": 0, "grpc_port": None, "max_delay_ms": 50, **settings})
        running = start_server(ModelService(held, config))
        gate.sizes.clear()
        gate.open.clear()
        gate.entered.clear()
        made.append(running)
        return running, gate

    yield start
    gate.open.set()
    for running in made:
        running.stop()


def _infer_in_thread(url: str, batch: np.ndarray, results: dict, key: int) -> threading.Thread:
    def go():
        client = httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=120)
        tensor = httpclient.InferInput("input", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        try:
            results[key] = client.infer(MODEL, [tensor]).as_numpy("logits")
        except InferenceServerException as exc:
            results[key] = exc

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def _wait(condition, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_dynamic_batching_gives_each_request_its_rows(gated, predictor):
    running, gate = gated(max_batch_size=8)
    photos = photo_tensors(predictor)
    results: dict = {}
    first = _infer_in_thread(running.url, photos[:1], results, 0)
    assert gate.entered.wait(60)  # the model is busy with request 0 ...
    others = [_infer_in_thread(running.url, photos[i : i + 1], results, i) for i in (1, 2, 3)]
    _wait(lambda: running.service.batcher.depth == 3, "3 queued requests")  # ... 3 queue up
    gate.open.set()
    for thread in [first, *others]:
        thread.join(120)
    assert gate.sizes == [1, 3]  # the 3 waiting requests ran as one batch
    for i in range(4):
        expected = predictor.predict_batch(photos[i : i + 1])
        np.testing.assert_allclose(results[i], expected, atol=1e-4 * np.abs(expected).max())


def test_full_queue_gets_503_with_retry_after(gated, predictor):
    running, gate = gated(max_batch_size=1, max_queue=1)
    photo = photo_tensors(predictor)[:1]
    results: dict = {}
    busy = _infer_in_thread(running.url, photo, results, 0)
    assert gate.entered.wait(60)
    queued = _infer_in_thread(running.url, photo, results, 1)
    _wait(lambda: running.service.batcher.depth == 1, "a queued request")
    response = httpx.post(
        f"{running.url}/v2/models/{MODEL}/infer", content=_json_request([1, 3, 224, 224])
    )
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1" and "queue full" in response.json()["error"]
    gate.open.set()
    busy.join(120)
    queued.join(120)
    assert all(isinstance(results[i], np.ndarray) for i in (0, 1))
    assert "res2net_rejected_total 1.0" in httpx.get(f"{running.url}/metrics").text


def test_request_timeout_gives_504(gated, predictor):
    running, gate = gated(timeout_s=0.2)
    response = httpx.post(
        f"{running.url}/v2/models/{MODEL}/infer", content=_json_request([1, 3, 224, 224])
    )  # the gate holds the model until after the server's timeout
    assert response.status_code == 504 and "did not finish within" in response.json()["error"]
    gate.open.set()
    assert httpx.get(f"{running.url}/v2/health/ready").status_code == 200


def test_api_key(gated):
    running, gate = gated(api_key="s3cret", grpc_port=0)
    gate.open.set()
    url = f"{running.url}/v2/models/{MODEL}"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"X-API-Key": "wrong"}).status_code == 401
    assert httpx.get(url, headers={"X-API-Key": "s3cret"}).json()["name"] == MODEL
    assert httpx.get(f"{running.url}/v2/health/ready").status_code == 200  # probes stay open
    client = httpclient.InferenceServerClient(running.url.removeprefix("http://"))
    assert client.get_model_metadata(MODEL, headers={"X-API-Key": "s3cret"})["name"] == MODEL
    rpc = grpcclient.InferenceServerClient(f"127.0.0.1:{running.grpc_port}")
    with pytest.raises(InferenceServerException, match="API key") as err:
        rpc.get_model_metadata(MODEL)
    assert err.value.status() == "StatusCode.UNAUTHENTICATED"
    assert rpc.get_model_metadata(MODEL, headers={"x-api-key": "s3cret"}).name == MODEL
    assert rpc.is_server_live()


def test_graceful_shutdown_finishes_in_flight_requests(gated, predictor):
    running, gate = gated()
    results: dict = {}
    in_flight = _infer_in_thread(running.url, photo_tensors(predictor)[:2], results, 0)
    assert gate.entered.wait(60)
    # What SIGTERM does: uvicorn's signal handler calls handle_exit.
    running._uvicorn.handle_exit(signal.SIGTERM, None)
    assert not running.service.ready
    stopper = threading.Thread(target=running.stop)
    stopper.start()
    gate.open.set()
    in_flight.join(120)
    stopper.join(120)
    assert isinstance(results[0], np.ndarray) and results[0].shape == (2, 1000)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{running.url}/v2/health/live")


def test_sigterm_to_a_server_process_finishes_the_requests_in_flight(weights, tmp_path):
    """A real SIGTERM to a ``res2net serve`` process while one request runs in the model and
    another waits in its queue: both still get their logits (PaddleClas's), then the
    process exits with 0."""
    proc, ports = launch(
        ["--model", MODEL, "--weights", str(weights[0]), "--max-batch-size", "16",
         "--log-level", "warning"], tmp_path / "serve.log",
    )  # fmt: skip
    try:
        photos = np.stack([simple_eval_transform(p) for p in PHOTOS])
        running = np.concatenate([photos, photos, photos[:4]])  # one full batch of 16
        results: dict = {}
        url = f"http://127.0.0.1:{ports['rest']}"
        threads = [_infer_in_thread(url, running, results, 0)]
        time.sleep(0.5)  # orders the arrivals only; the 16-image call runs for seconds here
        threads.append(_infer_in_thread(url, photos[:2], results, 1))
        # The queued request is visible while the model still runs the first one.
        _wait(lambda: _scrape(ports).get(("res2net_queue_depth", ())) == 1, "a queued request")
        proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(120)
        assert proc.wait(60) == 0, (tmp_path / "serve.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    reference = weights[1]
    expected = {0: np.concatenate([reference, reference, reference[:4]]), 1: reference[:2]}
    for key, logits in expected.items():
        assert isinstance(results[key], np.ndarray), results[key]
        np.testing.assert_allclose(results[key], logits, atol=1e-4 * np.abs(logits).max())


def test_cli_refuses_a_bad_weight_file(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not weights")
    proc = subprocess.run(
        [sys.executable, "-m", "res2net", "serve", "--model", MODEL, "--weights", str(bad),
         "--port", "0", "--grpc-port", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "bad.safetensors" in proc.stderr


BAD_FLAGS = [
    "--max-body-mb inf", "--max-body-mb -1", "--max-body-mb nan", "--timeout inf",
    "--timeout -1", "--port 99999", "--port -1", "--grpc-port 70000", "--max-delay-ms nan",
    "--max-delay-ms inf", "--max-batch-size 0", "--max-queue 0", "--workers 0",
    "--api-key s\u00e9kret",
]  # fmt: skip


@pytest.mark.parametrize("flags", BAD_FLAGS)
def test_cli_refuses_out_of_range_numbers_before_loading(flags):
    """Issue 25: `--max-delay-ms nan` never became ready (inf: also a traceback), `--port
    99999` and `--timeout inf` were tracebacks, `--max-body-mb -1` started and then refused
    every request. Each is now one line naming the flag, exit 2, before the model loads."""
    flag, value = flags.split(" ")
    proc = subprocess.run(
        [sys.executable, "-m", "res2net", "serve", "--model", MODEL, flag, value],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("res2net serve: error: " + flag), lines
