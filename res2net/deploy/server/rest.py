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
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from res2net.deploy.server.budget import ByteBudget
from res2net.deploy.server.page import render_page
from res2net.deploy.server.service import MODEL_VERSION, ModelService, ServeError, decode_tensor

HEADER_LENGTH = "Inference-Header-Content-Length"
# Reachable without the API key: load-balancer probes, the metrics scraper, the page itself
# (its requests carry the key the user types in).
OPEN_PATHS = {"/v2/health/live", "/v2/health/ready", "/metrics", "/v1/stats", "/"}


# What a request body costs the server while it is read and parsed, per byte received
# (measured with ru_maxrss): JSON of short numbers ("1.5,") becomes a list of Python floats,
# then arrays, about 14 bytes per byte in all; binary tensors and encoded images are held
# as received chunks, the joined body and a batch copy.
JSON_BYTE_COST = 14
BINARY_BYTE_COST = 3
# 18 digits hold any body size a server could accept and stay clear of Python's limit on
# the digits int() converts (4,300, CVE-2020-10735).
MAX_LENGTH_DIGITS = 18


def error_response(
    status: int, message: str, retry_after: int | None = None, *, close: bool = False
) -> JSONResponse:
    """The protocol's error body, with Retry-After on 503 and ``Connection: close`` when the
    request's body was left unread."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if close:
        headers["Connection"] = "close"
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def parse_length(text: str) -> int | None:
    """A decimal byte count from a header, or ``None`` when it is not one (ASCII digits
    only: ``str.isdigit`` also accepts other scripts' digits and superscripts)."""
    if not (0 < len(text) <= MAX_LENGTH_DIGITS and text.isascii() and text.isdigit()):
        return None
    return int(text)


def body_cost(path: str, headers: dict[str, str], received: int) -> int:
    """Estimated peak bytes of handling ``received`` bytes of a request body to ``path``:
    an inference request's JSON header (all of it without the binary extension) at the
    JSON rate, everything else at the binary rate."""
    if not path.endswith("/infer"):
        return received * BINARY_BYTE_COST
    declared = parse_length(headers.get(HEADER_LENGTH.lower(), ""))
    json_bytes = received if declared is None else min(received, declared)
    return json_bytes * JSON_BYTE_COST + (received - json_bytes) * BINARY_BYTE_COST


class GuardMiddleware:
    """API key, request body limits and metrics for every HTTP request.

    A body is counted as it arrives, whether its length was declared (Content-Length) or
    not (chunked): against the body limit (413), the server's in-flight byte budget shared
    with gRPC (503 with Retry-After) and the body timeout (408). A declared length is
    checked before any of the body is read. A request that declares both a Content-Length
    and a Transfer-Encoding is refused (400): HTTP/1.1 lets the Transfer-Encoding win, but
    RFC 9112 section 6.3 calls such a message a likely smuggling attempt that a server may
    reject, and a length check on one header would be bypassed by the other.
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

        try:
            await self._guarded(scope, receive, send_recording)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.service.metrics.observe_request(
                "rest", endpoint, str(status["code"]), time.perf_counter() - began
            )

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            self._check_key(scope, headers)
            reader = self._body_reader(scope, headers, receive)
        except ServeError as exc:
            response = error_response(exc.status, exc.message, exc.retry_after, close=exc.close)
            await response(scope, receive, send)
            return
        if reader is None:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, reader, send)
        finally:
            reader.release()

    def _check_key(self, scope: Scope, headers: dict[str, str]) -> None:
        api_key = self.service.config.api_key
        if not api_key or scope["path"] in OPEN_PATHS:
            return
        given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ServeError(401, "missing or wrong API key: send it in X-API-Key")

    def _body_reader(
        self, scope: Scope, headers: dict[str, str], receive: Receive
    ) -> BodyReader | None:
        """The counting reader of a request with a body (None for one without)."""
        config = self.service.config
        length_text = headers.get("content-length")
        chunked = "transfer-encoding" in headers
        if length_text is None and not chunked:
            return None
        if length_text is not None and chunked:
            raise ServeError(
                400,
                "the request has both Content-Length and Transfer-Encoding; send one",
                close=True,
            )
        declared = None if length_text is None else parse_length(length_text)
        if length_text is not None and declared is None:
            raise ServeError(400, f"invalid Content-Length {length_text!r:.40}", close=True)
        if declared is not None and declared > config.max_body_bytes:
            raise _too_large(declared, config.max_body_bytes)
        path = scope["path"]
        reader = BodyReader(
            receive,
            self.service.inflight,
            cost=lambda received: body_cost(path, headers, received),
            limit=config.max_body_bytes,
            timeout_s=config.body_timeout_s,
        )
        reader.charge(declared or 0)
        return reader


def _too_large(size: int, limit: int) -> ServeError:
    return ServeError(
        413,
        f"request body of {size} bytes exceeds the limit of {limit} bytes (--max-body-mb); "
        "send fewer images per request",
        close=True,
    )


class BodyReader:
    """An ASGI ``receive`` that counts the body as it arrives.

    Each part is charged to the in-flight ``budget`` before the application sees it (the
    reservation only grows, up to the declared length's cost first), and the whole body
    must arrive within ``timeout_s`` of the request's headers. Once the body is complete,
    ``receive`` is passed through untouched (it then only reports a disconnect).
    """

    def __init__(
        self,
        receive: Receive,
        budget: ByteBudget,
        *,
        cost: Callable[[int], int],
        limit: int,
        timeout_s: float,
    ) -> None:
        self._receive = receive
        self._budget = budget
        self._cost = cost
        self._limit = limit
        self._timeout_s = timeout_s
        self._deadline = asyncio.get_running_loop().time() + timeout_s
        self._received = 0
        self._reserved = 0
        self._complete = False

    async def __call__(self) -> Message:
        if self._complete:
            return await self._receive()
        remaining = self._deadline - asyncio.get_running_loop().time()
        try:
            message = await asyncio.wait_for(self._receive(), max(remaining, 0.001))
        except asyncio.TimeoutError:
            raise ServeError(
                408,
                f"the request body did not arrive within {self._timeout_s:g} s of its headers",
                close=True,
            ) from None
        if message["type"] != "http.request":
            self._complete = True
            return message
        self._received += len(message.get("body", b""))
        if self._received > self._limit:
            raise _too_large(self._received, self._limit)
        self.charge(self._received)
        self._complete = not message.get("more_body", False)
        return message

    def charge(self, received: int) -> None:
        """Reserve the cost of ``received`` body bytes, beyond what is reserved already."""
        more = self._cost(received) - self._reserved
        if more > 0:
            self._budget.reserve(more, close=True)
            self._reserved += more

    def release(self) -> None:
        """Give the reservation back (the request has been answered)."""
        self._budget.release(self._reserved)
        self._reserved = 0


def create_app(service: ModelService) -> FastAPI:
    """The FastAPI application serving ``service``."""
    app = FastAPI(title=f"res2net: {service.name}", docs_url=None, redoc_url=None)

    @app.exception_handler(ServeError)
    async def _serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.retry_after, close=exc.close)

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

    @app.get("/v1/stats")
    async def stats() -> dict:
        return service.stats()


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
        length = parse_length(header_length)
        if length is None or length > len(body):
            raise ServeError(400, f"{HEADER_LENGTH} {header_length!r:.40} does not fit the body")
        text, binary = body[:length], body[length:]
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
