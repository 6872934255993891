"""KServe v2 REST routes (and OVMS's /v1/config) over a DataPlane, as a FastAPI app.

The app is built by a function so that the Ray ingress builds it inside its replica and unit
tests build it over in-process models; the routes themselves know nothing of Ray.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from app.dataplane import DataPlane
from app.errors import (
    MalformedRequest,
    RequestTooLarge,
    ServingError,
    fault_summary,
    find_serving_error,
    http_status,
)
from app.kserve_rest import HEADER_LENGTH, decode_request, encode_response, parse_version
from app.metrics import ServingMetrics
from app.tensors import decimal

log = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 256 << 20


@dataclass(frozen=True)
class RouteSettings:
    """What a replica answering REST routes needs besides its servables."""

    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    metrics_list: tuple[str, ...] | None = None  # OVMS's metrics to count; None: metrics are off
    # The named actor (name, namespace) that sums every replica's counts for GET /metrics.
    metrics_board: tuple[str, str] | None = None


Reload = Callable[[], Awaitable[bool]]
Scrape = Callable[[], Awaitable[bytes]]


async def _nothing_to_reload() -> bool:
    return False


def build_rest_app(
    dataplane: DataPlane,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    reload: Reload = _nothing_to_reload,
    metrics: ServingMetrics | None = None,
    scrape: Scrape | None = None,
) -> FastAPI:
    """``reload`` re-reads what can change at run time and says whether anything did; with
    ``metrics``, requests are counted and ``GET /metrics`` serves what ``scrape`` gives (by
    default, this process's counts), as OVMS's ``monitoring`` asks."""
    app = _app()
    app.include_router(server_routes(dataplane, reload, metrics, scrape))
    app.include_router(model_routes(dataplane, max_request_bytes, metrics))
    return app


def build_servable_app(
    dataplane: DataPlane, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, metrics: ServingMetrics | None = None
) -> ASGIApp:
    """The routes of the models and pipelines in ``dataplane`` alone, for the replica that serves
    them: it gets their requests straight from the front door, under their route prefix."""
    app = _app()
    app.include_router(model_routes(dataplane, max_request_bytes, metrics))
    return _routed_from_the_root(app)


def _app() -> FastAPI:
    app = FastAPI(title="rayvino", description="KServe v2 REST for OVMS configs on Ray Serve")
    app.add_exception_handler(ServingError, _serving_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    return app


def _routed_from_the_root(app: ASGIApp) -> ASGIApp:
    """Serve mounts an application at its route prefix (``/v2/models/<name>``), and Starlette
    routes below it; the model routes are written from the root, the same for every servable."""

    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, "root_path": ""} if scope.get("root_path") else scope, receive, send)

    return routed


def server_routes(
    dataplane: DataPlane, reload: Reload, metrics: ServingMetrics | None, scrape: Scrape | None = None
) -> APIRouter:
    """What the whole server answers: metadata, health, OVMS's config status and reload, metrics."""
    router = APIRouter()

    @router.get("/v2")
    async def server_metadata() -> dict:
        return dataplane.server_metadata()

    @router.get("/v2/health/live")
    async def live() -> Response:
        return Response(status_code=200)

    @router.get("/v2/health/ready")
    async def ready() -> Response:
        # Not ready until every deployment of the config has started once (OVMS: all models loaded).
        return Response(status_code=200 if dataplane.ready else 503)

    @router.get("/v1/config")
    async def config_status() -> dict:
        return await dataplane.config_status()

    @router.post("/v1/config/reload")
    async def config_reload() -> JSONResponse:
        changed = await reload()
        # OVMS: 201 when the reload changed something, 200 when it did not.
        return JSONResponse(await dataplane.config_status(), status_code=201 if changed else 200)

    if metrics is not None:

        async def own_counts() -> bytes:
            return metrics.exposition()

        @router.get("/metrics")
        async def prometheus_metrics() -> Response:
            return Response(await (scrape or own_counts)(), media_type=CONTENT_TYPE_LATEST)

    return router


def model_routes(dataplane: DataPlane, max_request_bytes: int, metrics: ServingMetrics | None) -> APIRouter:
    """What each model and pipeline answers: metadata, ready and infer, per version or the default one."""
    router = APIRouter()

    def counted(method: str, model: str, version: str | None) -> AbstractContextManager[dict]:
        # Only servables that exist are counted: a client cannot grow the label set at will.
        if metrics is None or model not in dataplane.servables:
            return nullcontext({"version": version})
        return metrics.request(method, model, dataplane.version_label(model, version))

    @router.get("/v2/models/{model}")
    @router.get("/v2/models/{model}/versions/{version}")
    async def model_metadata(model: str, version: str | None = None) -> dict:
        with counted("ModelMetadata", model, version):
            return await dataplane.metadata(model, parse_version(version))

    @router.get("/v2/models/{model}/ready")
    @router.get("/v2/models/{model}/versions/{version}/ready")
    async def model_ready(model: str, version: str | None = None) -> Response:
        with counted("ModelReady", model, version):
            await dataplane.model_ready(model, parse_version(version))
        return Response(status_code=200)

    @router.post("/v2/models/{model}/infer")
    @router.post("/v2/models/{model}/versions/{version}/infer")
    async def infer(request: Request, model: str, version: str | None = None) -> Response:
        dataplane.servable(model)  # an unknown model is 404 whatever the body holds
        with counted("ModelInfer", model, version) as outcome:
            body = await read_body(request, max_request_bytes)
            infer_request = decode_request(model, parse_version(version), body, _header_length(request))
            infer_response = await dataplane.infer(infer_request)
            outcome["version"] = str(infer_response.model_version)
        if metrics is not None:
            metrics.inference_time(model, outcome["version"], infer_response.inference_us)
        content, headers = encode_response(infer_response, infer_request)
        return Response(content=content, headers=headers)

    return router


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = decimal(request.headers.get("content-length") or "")
    if declared is not None and declared > limit:
        raise RequestTooLarge(f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _header_length(request: Request) -> int | None:
    value = request.headers.get(HEADER_LENGTH)
    if value is None:
        return None
    length = decimal(value.strip())
    if length is None:
        raise MalformedRequest(f"Inference-Header-Content-Length is '{value}'; expected a byte count")
    return length


def error_response(exc: ServingError) -> Response:
    status = http_status(exc)
    if status == 204:  # no demultiplexer results: OVMS answers 204, which carries no body
        return Response(status_code=204)
    return JSONResponse({"error": exc.message}, status_code=status)


async def _serving_error(_: Request, exc: Exception) -> Response:
    return error_response(find_serving_error(exc) or exc)  # type: ignore[arg-type]


async def _http_error(request: Request, exc: Exception) -> Response:
    """What the router itself refuses (no such route: 404, a wrong method: 405) in OVMS's body
    shape, ``{"error": ...}``, instead of FastAPI's ``{"detail": ...}``."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        text = f"Not found - no route {request.method} {request.url.path}; see KServe v2's REST routes"
    else:
        text = f"{exc.detail} - {request.method} {request.url.path}"
    return JSONResponse({"error": text}, status_code=exc.status_code, headers=exc.headers)


async def _unexpected_error(_: Request, exc: Exception) -> Response:
    # A replica's ServingError may arrive wrapped by Ray; anything else is a real fault.
    known = find_serving_error(exc)
    if known is not None:
        return error_response(known)
    log.exception("unexpected error while serving a request")
    return JSONResponse({"error": f"Internal server error - {fault_summary(exc)}"}, status_code=500)
