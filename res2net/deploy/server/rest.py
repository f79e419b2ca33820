"""REST front end: Open Inference Protocol v2 over HTTP, ``/v1/classify``, page, metrics.

Follows the protocol's REST spec (https://github.com/kserve/open-inference-protocol) and
Triton's binary tensor data extension (the JSON header's length in the
``Inference-Header-Content-Length`` header, tensor bytes after it), which ``tritonclient.http``
uses by default. Errors are ``{"error": message}`` with a 4xx/5xx status, as the spec says.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from res2net.deploy.server.page import render_page
from res2net.deploy.server.service import MODEL_VERSION, ModelService, ServeError, decode_tensor

HEADER_LENGTH = "Inference-Header-Content-Length"
# Reachable without the API key: load-balancer probes, the metrics scraper, the page itself
# (its requests carry the key the user types in).
OPEN_PATHS = {"/v2/health/live", "/v2/health/ready", "/metrics", "/"}


def error_response(status: int, message: str, retry_after: int | None = None) -> JSONResponse:
    """The protocol's error body, with Retry-After on 503."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class GuardMiddleware:
    """API key, request body limit and metrics for every HTTP request.

    The body limit is checked on the Content-Length header before the body is read; bodies
    without one (chunked uploads) are refused with 411, so no request can stream an
    unbounded body into memory.
    """

    def __init__(self, app: ASGIApp, service: ModelService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = {"code": 500}

        async def send_recording(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        refusal = self._refusal(scope)
        try:
            if refusal is not None:
                await refusal(scope, receive, send_recording)
            else:
                await self.app(scope, receive, send_recording)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.service.metrics.observe_request(
                "rest", endpoint, str(status["code"]), time.perf_counter() - began
            )

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        config = self.service.config
        if config.api_key and scope["path"] not in OPEN_PATHS:
            given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix(
                "Bearer "
            )
            if not hmac.compare_digest(given.encode(), config.api_key.encode()):
                return error_response(401, "missing or wrong API key: send it in X-API-Key")
        if scope["method"] in ("POST", "PUT", "PATCH"):
            length = headers.get("content-length")
            if length is None:
                return error_response(411, "send a Content-Length header (chunked bodies refused)")
            if not (length.isascii() and length.isdigit()):
                return error_response(400, f"invalid Content-Length {length!r}")
            if int(length) > config.max_body_bytes:
                return error_response(
                    413,
                    f"request body of {int(length)} bytes exceeds the limit of "
                    f"{config.max_body_bytes} bytes (--max-body-mb); send fewer images per request",
                )
        return None


def create_app(service: ModelService) -> FastAPI:
    """The FastAPI application serving ``service``."""
    app = FastAPI(title=f"res2net: {service.name}", docs_url=None, redoc_url=None)

    @app.exception_handler(ServeError)
    async def _serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.retry_after)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return error_response(400, f"invalid request: {problems}")

    _add_health_routes(app, service)
    _add_infer_routes(app, service)
    _add_classify_routes(app, service)
    app.add_middleware(GuardMiddleware, service=service)
    return app


def _add_health_routes(app: FastAPI, service: ModelService) -> None:
    @app.get("/v2/health/live")
    async def live() -> dict:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return JSONResponse({"ready": service.ready}, status_code=200 if service.ready else 503)

    @app.get("/v2")
    async def server_metadata() -> dict:
        return service.server_metadata()

    @app.get("/v2/models")
    async def models_index() -> dict:
        return {"models": service.models_index()}

    @app.post("/v2/repository/index")
    async def repository_index() -> list:
        # Triton's model-repository extension: [{name, version, state}] per served model.
        return [
            {"name": m["name"], "version": v, "state": m["state"]}
            for m in service.models_index()
            for v in m["versions"]
        ]

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None) -> dict:
        service.check_model(name, version)
        return service.model_metadata()

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> Response:
        service.check_model(name, version)
        body = {"name": service.name, "ready": service.ready}
        return JSONResponse(body, status_code=200 if service.ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type="text/plain; version=0.0.4")


def _add_infer_routes(app: FastAPI, service: ModelService) -> None:
    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        service.check_model(name, version)
        body = await request.body()
        # Parsing and serializing large JSON tensors takes a while: keep it off the event loop.
        header, images, outputs = await run_in_threadpool(
            _parse_infer_body, body, request.headers.get(HEADER_LENGTH), service.image_size
        )
        logits = await service.logits_async(images)
        results = service.outputs_for(logits, list(outputs))
        return await run_in_threadpool(_infer_response, service, header, results, outputs)


def _parse_infer_body(
    body: bytes, header_length: str | None, image_size: int
) -> tuple[dict, np.ndarray, dict[str, bool]]:
    header, binary = _split_body(body, header_length)
    images, outputs = _parse_infer_request(header, binary, image_size)
    return header, images, outputs


def _split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON header and the binary tensor data that follows it (if any)."""
    if header_length is not None:
        valid = header_length.isascii() and header_length.isdigit()
        if not valid or int(header_length) > len(body):
            raise ServeError(400, f"{HEADER_LENGTH} {header_length!r} does not fit the body")
        text, binary = body[: int(header_length)], body[int(header_length) :]
    else:
        text, binary = body, b""
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServeError(400, f"malformed JSON in the inference request: {exc}") from None
    except RecursionError:
        raise ServeError(400, "the inference request's JSON is nested too deep") from None
    if not isinstance(header, dict):
        raise ServeError(400, "the inference request must be a JSON object")
    return header, binary


def _parse_infer_request(
    header: dict, binary: bytes, image_size: int
) -> tuple[np.ndarray, dict[str, bool]]:
    """The input tensor, and the requested outputs -> whether each is wanted in binary."""
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ServeError(400, "'inputs' must be a list holding exactly one tensor ('input')")
    tensor = inputs[0]
    for key in ("name", "datatype", "shape"):
        if key not in tensor:
            raise ServeError(400, f"input tensor is missing the required field {key!r}")
    params = _parameters(tensor, "inputs[0].parameters")
    raw = None
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if type(size) is not int or size != len(binary):
            raise ServeError(
                400, f"binary_data_size {size!r} does not match the {len(binary)} bytes sent"
            )
        raw = binary
    images = decode_tensor(
        tensor["name"],
        tensor["datatype"],
        tensor["shape"],
        raw=raw,
        data=tensor.get("data"),
        image_size=image_size,
    )
    binary_default = bool(_parameters(header, "parameters").get("binary_data_output", False))
    requested = header.get("outputs")
    if requested is None:
        return images, {}
    if not isinstance(requested, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
    ):
        raise ServeError(400, "'outputs' must be a list of objects with a 'name'")
    outputs = {
        o["name"]: bool(_parameters(o, "outputs[].parameters").get("binary_data", binary_default))
        for o in requested
    }
    return images, outputs


def _parameters(holder: dict, field: str) -> dict:
    """A request object's ``parameters``: absent, null or a JSON object, nothing else."""
    params = holder.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ServeError(400, f"{field!r} must be a JSON object, not {type(params).__name__}")
    return params


def _infer_response(
    service: ModelService, header: dict, results: dict[str, np.ndarray], binary: dict[str, bool]
) -> Response:
    binary_default = bool(_parameters(header, "parameters").get("binary_data_output", False))
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array in results.items():
        out: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(array.shape)}
        if binary.get(name, binary_default):
            blob = np.ascontiguousarray(array, dtype="<f4").tobytes()
            out["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            out["data"] = array.reshape(-1).tolist()
        outputs.append(out)
    body: dict[str, Any] = {"model_name": service.name, "model_version": MODEL_VERSION}
    if "id" in header:
        body["id"] = header["id"]
    body["outputs"] = outputs
    text = json.dumps(body).encode()
    if not blobs:
        return Response(text, media_type="application/json")
    return Response(
        text + b"".join(blobs),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(text))},
    )


def _add_classify_routes(app: FastAPI, service: ModelService) -> None:
    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return render_page(service.name, **service.page_facts())

    @app.post("/v1/classify")
    async def classify(request: Request, topk: int = service.config.topk) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + service.config.timeout_s  # decoding counts in the timeout
        blobs = await _read_images(request)
        tensors, errors = await service.decode_images_async(blobs, deadline)
        if not tensors:
            raise ServeError(400, "no image could be decoded: " + "; ".join(filter(None, errors)))
        logits = await service.logits_async(np.stack(tensors), deadline - loop.time())
        tops = iter(service.top_k(logits, topk))
        predictions = [
            {"source": source, "error": error, **({} if error else next(tops))}
            for (source, _), error in zip(blobs, errors, strict=True)
        ]
        return {"model_name": service.name, "predictions": predictions}


async def _read_images(request: Request) -> list[tuple[str, bytes]]:
    """Encoded images from a multipart form (every file field) or the raw body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        files = [
            (value.filename or key, await value.read())
            for key, value in form.multi_items()
            if not isinstance(value, str)
        ]
        await form.close()
        if not files:
            raise ServeError(400, "the multipart form holds no file field; attach an image")
        return files
    body = await request.body()
    return [("body", body)] if body else []
