"""The server runs an exported file at the engine's best throughput, and reports it.

An exported INT8 file (OpenVINO IR from NNCF, ONNX from ONNX Runtime's quantizer) is served
in streams by default: tensors sent with ``tritonclient.http`` (the binary extension) and
JPEGs sent to ``/v1/classify`` must rank the same top-5 as ``load_exported`` on the test
photos. Explicit settings win over the rule; the latency p50/p99 the server reports cover
exactly the requests it was sent. No timings are asserted.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PHOTOS
from tests.test_resolve import _runtime_top5, _top5, exports, tiny  # noqa: F401 (fixtures)


def _serve(path, **config):
    from res2net.deploy.server import ServeConfig, build_service, start_server

    service = build_service(path, config=ServeConfig(port=0, grpc_port=None, **config))
    return service, start_server(service)


def _tensor_top5(running, name: str, images: np.ndarray) -> list[list[int]]:
    """Top-5 of the server's logits for ``images``, sent by NVIDIA's HTTP client as binary."""
    client = httpclient.InferenceServerClient(running.url.removeprefix("http://"))
    tensor = httpclient.InferInput("input", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images, binary_data=True)
    wanted = [httpclient.InferRequestedOutput("logits", binary_data=True)]
    return _top5(client.infer(name, [tensor], outputs=wanted).as_numpy("logits"))


@pytest.mark.parametrize("kind", ["openvino-int8", "onnx-int8"])
def test_served_int8_export_ranks_as_load_exported(kind, exports, tiny):  # noqa: F811
    """Served in streams by default; tensors (one request, and one per image so that the
    batcher joins them) and JPEGs get load_exported's top-5 on every test photo."""
    path = exports[kind]
    expected = _runtime_top5(path, tiny["images"])
    service, running = _serve(path)
    try:
        assert service.plan.streamed and service.plan.chosen_by == "default rule"
        assert service.predictor.card.precision == "int8"
        assert _tensor_top5(running, service.name, tiny["images"]) == expected
        one_by_one = [_tensor_top5(running, service.name, image[None])[0]
                      for image in tiny["images"]]  # fmt: skip
        assert one_by_one == expected
        files = [("images", (p.name, p.read_bytes())) for p in PHOTOS]
        body = httpx.post(f"{running.url}/v1/classify", files=files, timeout=60).json()
    finally:
        running.stop()
    assert [p["class_ids"] for p in body["predictions"]] == expected


def test_openvino_streams_follow_openvino_and_flags_win(exports):  # noqa: F811
    """By default: as many streams as OpenVINO itself finds optimal here under its
    throughput hint, batches of 4; given settings win and are reported as chosen by flags."""
    import openvino as ov

    from res2net.deploy.runtimes import cpu_threads, openvino_config
    from res2net.deploy.server.plan import STREAMED_MAX_BATCH, StreamedOpenVino

    path = exports["openvino"]
    core = ov.Core()
    # OpenVINO's own answer for the settings the server compiles with (throughput hint, this
    # process's cores, the export's FP32): on 2 cores the threads decide 1 or 2 streams.
    compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                  openvino_config("THROUGHPUT", "fp32"))  # fmt: skip
    optimal = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
    service, running = _serve(path)
    try:
        plan = httpx.get(f"{running.url}/v2/models/{service.name}").json()["parameters"]
        stats = httpx.get(f"{running.url}/v1/stats").json()
        metrics = httpx.get(f"{running.url}/metrics").text
    finally:
        running.stop()
    expected = {
        "engine": "openvino", "max_batch_size": STREAMED_MAX_BATCH, "workers": optimal,
        "streamed": True, "chosen_by": "default rule",
    }  # fmt: skip
    assert plan["serving_plan"] == stats["plan"] == expected
    exposed = [s.labels for f in text_string_to_metric_families(metrics) for s in f.samples
               if s.name == "res2net_serving_plan" and s.value == 1]  # fmt: skip
    assert exposed == [{k: str(v) for k, v in expected.items()}]
    assert isinstance(service.predictor.runtime, StreamedOpenVino)
    assert service.predictor.runtime.streams == optimal

    service, running = _serve(path, max_batch_size=2, workers=1)
    running.stop()
    assert (service.plan.max_batch_size, service.plan.workers) == (2, 1)
    assert (service.plan.streamed, service.plan.chosen_by) == (False, "flags")
    assert service.batcher.max_batch_size == 2
    assert not isinstance(service.predictor.runtime, StreamedOpenVino)

    service, running = _serve(path, workers=3)
    running.stop()
    assert service.plan.chosen_by == "default rule + flags"
    assert (service.plan.workers, service.predictor.runtime.streams) == (3, 3)
    # OpenVINO was asked for 3 streams; it runs at most one per thread it may use.
    compiled_streams = service.predictor.runtime.compiled.get_property("NUM_STREAMS")
    assert compiled_streams == min(3, cpu_threads())


def test_several_workers_on_one_openvino_request_are_refused(tiny):  # noqa: F811
    """OpenVINO built from weights has one infer request: workers=2 is refused by name
    (it used to fail every other call at run time with "Infer Request is busy")."""
    from res2net.deploy.server import ServeConfig, build_service

    config = ServeConfig(port=0, grpc_port=None, workers=2)
    with pytest.raises(ValueError, match="^workers=2: .*serve an exported file"):
        build_service(None, str(tiny["path"]), engine="openvino", config=config)
    service = build_service(None, str(tiny["path"]), engine="openvino",
                            config=ServeConfig(port=0, grpc_port=None))  # fmt: skip
    assert (service.plan.workers, service.plan.streamed) == (1, False)
    service.close()


def test_cli_leaves_the_plan_to_the_rule_unless_given():
    """`res2net serve` without --max-batch-size/--workers passes None (the rule); with
    them, their values."""
    import argparse

    from res2net.cli import serve

    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers())
    config = serve.server_config(parser.parse_args(["serve", "--model", "x"]))
    assert (config.max_batch_size, config.workers) == (None, None)
    given = ["serve", "--model", "x", "--max-batch-size", "3", "--workers", "2"]
    config = serve.server_config(parser.parse_args(given))
    assert (config.max_batch_size, config.workers) == (3, 2)


def test_latency_window_percentiles_are_numpys():
    """p50/p99 by linear interpolation over the window; the count covers every request."""
    from res2net.deploy.server.metrics import LatencyWindow

    window = LatencyWindow(size=100)
    assert window.summary() == {"requests": 0, "window": 0, "p50_ms": None, "p99_ms": None}
    for ms in range(1, 101):  # 1..100 ms: p50 = 50.5 ms, p99 = 99 + 0.01 * (100 - 99)
        window.add(ms / 1000)
    summary = window.summary()
    assert summary["requests"] == summary["window"] == 100
    assert summary["p50_ms"] == pytest.approx(50.5) and summary["p99_ms"] == pytest.approx(99.01)
    for ms in range(101, 151):  # the oldest 50 leave the window: 51..150 ms remain
        window.add(ms / 1000)
    summary = window.summary()
    assert (summary["requests"], summary["window"]) == (150, 100)
    assert summary["p50_ms"] == pytest.approx(100.5)


def test_served_latency_covers_exactly_the_requests_sent(exports, tiny):  # noqa: F811
    """/v1/stats counts every inference request (failed ones too) and nothing else; its
    p50 <= p99 <= the slowest round trip a client saw; /metrics exposes the same values."""
    import time

    service, running = _serve(exports["onnx"])
    seen = []
    try:
        for image in tiny["images"][:5]:
            began = time.perf_counter()
            _tensor_top5(running, service.name, image[None])
            seen.append(time.perf_counter() - began)
        began = time.perf_counter()
        bad = httpx.post(f"{running.url}/v2/models/{service.name}/infer", content=b"{}")
        seen.append(time.perf_counter() - began)
        assert bad.status_code == 400
        files = [("images", (p.name, p.read_bytes())) for p in PHOTOS[:2]]
        for _ in range(3):
            assert httpx.post(f"{running.url}/v1/classify", files=files, timeout=60).is_success
        httpx.get(f"{running.url}/v2/health/ready")
        stats = httpx.get(f"{running.url}/v1/stats").json()["latency"]
        metrics = httpx.get(f"{running.url}/metrics").text
    finally:
        running.stop()
    assert (stats["infer"]["requests"], stats["classify"]["requests"]) == (6, 3)
    assert stats["infer"]["window"] == 6
    infer = stats["infer"]
    assert 0 < infer["p50_ms"] <= infer["p99_ms"] <= max(seen) * 1000
    exposed = {
        (s.name, s.labels["kind"]): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name.startswith("res2net_request_latency_p")
    }
    for kind in ("infer", "classify"):
        for q in ("p50", "p99"):
            key = (f"res2net_request_latency_{q}_seconds", kind)
            assert exposed[key] == pytest.approx(stats[kind][f"{q}_ms"] / 1000)
