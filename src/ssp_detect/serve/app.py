"""The HTTP service: ``POST /v1/detect`` with dynamic batching, health and model info, a web page.

Flow of a request: headers within ``header_timeout_s`` (:mod:`~ssp_detect.serve.protocol`) -> the
guards (:mod:`~ssp_detect.serve.middleware`: Host allow-list, cross-origin POSTs, requests in
flight, body size and time) -> multipart upload -> bytes per file (their size counted against the
memory budget) -> each image's decode cost from its header, counted against the budget -> decode
and simple patch in a thread pool -> the batcher's queue, shared by all requests -> one model
forward per batch in the model thread -> p_fake per file -> JSON. A client that disconnects on
the way cancels its request: its images not yet decoded or scored never are.

Status codes (every non-200 body is ``{"error": "<one sentence>"}``):

* 200: every file was scored, or at least one was; a file that could not be read has ``p_fake``
  null and an ``error`` sentence in its result.
* 400: no file in the request, a malformed multipart body, an invalid form field, or a Host
  header that is not allowed.
* 403: a POST from a browser page of another origin (not the service's own, nor a CORS origin).
* 404 / 405: unknown path or method.
* 408: the body did not arrive within ``body_timeout_s`` (or the headers within
  ``header_timeout_s``); the connection is closed.
* 413: the body is over ``max_upload_bytes``, it holds more than ``max_files`` files, or one of
  its images alone needs more memory than the whole decode budget.
* 422: no file could be scored (empty, truncated, corrupt, not an image, an unsupported pixel
  format, over the pixel limit); the body also carries the per-file ``results``.
* 500: an unexpected fault of the server, never a user's input (the sentence points to the log).
* 503 with ``Retry-After``: the service is busy (``max_in_flight`` requests in flight, or the
  decode budget stayed full for ``decode_wait_s``), or the batcher is not running.

Every response carries the standard security headers and a Content-Security-Policy that allows the
page's own files only; ``/docs`` (Swagger UI) is served from the assets of the ``fastapi-offline``
package, so it works offline.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import hashlib
import importlib.resources
import logging
import re
import sys
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, TypeVar

import uvicorn
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ssp_detect.detector import Detector
from ssp_detect.serve.limits import ServeLimits
from ssp_detect.serve.middleware import (
    AccessPolicy,
    BodyLimits,
    CrossOriginGuard,
    DeclaredSizeLimit,
    HostAllowList,
    InFlightLimit,
    SecurityHeaders,
)
from ssp_detect.serve.protocol import protocol_with_header_timeout
from ssp_detect.serve.schemas import DetectResponse, ErrorBody, error_response
from ssp_detect.serve.service import DetectionService
from ssp_detect.verdict import ScoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

STATIC_DIR = Path(__file__).parent / "static"
DOCS_ASSETS_DIR = Path(str(importlib.resources.files("fastapi_offline") / "static"))
DOCS_ASSETS_URL = "/docs-assets"
DETECT_PATH = "/v1/detect"
CLIENT_GONE = 499  # the status logged for a request whose client left; no client ever sees it
NO_FILE_ERROR = (
    "The request has no image file; send one or more files in a multipart form field named 'file' or 'files'."
)


def _sentence(detail: Any, request: Request) -> str:
    """An HTTP error's detail as one sentence naming the request when the detail is terse."""
    text = str(detail)
    return text if text.endswith(".") else f"{text}: {request.method} {request.url.path}."


def docs_page(root_path: str) -> HTMLResponse:
    """Swagger UI from local assets, with a Content-Security-Policy that allows its one inline
    script by hash."""
    page = get_swagger_ui_html(
        openapi_url=f"{root_path}/openapi.json",
        title="ssp-detect API",
        swagger_js_url=f"{root_path}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root_path}{DOCS_ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root_path}{DOCS_ASSETS_URL}/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},
    )
    html = bytes(page.body).decode()
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    )
    page.headers["content-security-policy"] = (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    return page


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """The result of ``work``, or None as soon as the client disconnects (``work`` is then
    cancelled: decoding not started and images still queued for the model are dropped)."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        with suppress(asyncio.CancelledError):
            await watch
    if not task.done():
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        return None
    return task.result()


def create_app(detector: Detector, limits: ServeLimits | None = None, access: AccessPolicy | None = None) -> FastAPI:
    """The FastAPI app serving ``detector``.

    Endpoints: ``POST /v1/detect``, ``GET /v1/model``, ``GET /healthz``, the web page at ``/``
    (files under ``/static``) and the OpenAPI docs at ``/docs``. The batcher and the decode
    threads live in the app's lifespan: serve it with uvicorn, or use ``with TestClient(app)``.

    Args:
        detector: The loaded detector.
        limits: Service limits; None uses the defaults of :class:`ServeLimits`.
        access: Allowed Host names and CORS origins; None allows any Host and no other origin
            (:func:`run_server` derives the Host names from the address it listens on).
    """
    limits = limits or ServeLimits()
    access = access or AccessPolicy()
    service = DetectionService(detector, limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        info = service.model_info
        log.info("Serving %s (sha256 %s), limits %s.", info["model"], info["checkpoint_sha256"][:12], limits)
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="ssp-detect",
        description="AI-generated image detection from the simplest 32x32 patch of an image (SSP).",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    # Added innermost first: a request meets them in the reverse order.
    app.add_middleware(BodyLimits, max_bytes=limits.max_upload_bytes, timeout_s=limits.body_timeout_s)
    app.add_middleware(InFlightLimit, max_in_flight=limits.max_in_flight, paths=(DETECT_PATH,))
    app.add_middleware(DeclaredSizeLimit, max_bytes=limits.max_upload_bytes)
    app.add_middleware(CrossOriginGuard, allowed=access.cors_origins)
    if access.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(access.cors_origins), allow_methods=["GET", "POST"], max_age=600
        )
    app.add_middleware(HostAllowList, allowed=access.allowed_hosts)
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = error_response(exc.status_code, _sentence(exc.detail, request))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return error_response(
            400, f"Invalid request field {where}: {str(first.get('msg', 'invalid value')).rstrip('.')}."
        )

    @app.exception_handler(ScoreError)
    async def untrustworthy_scores(request: Request, exc: ScoreError) -> JSONResponse:
        log.error("The model gave scores that cannot be trusted on %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, f"The model cannot give a verdict now: {exc}")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("Unexpected error on %s %s.", request.method, request.url.path, exc_info=exc)
        return error_response(500, "The server failed unexpectedly on this request; the error is in the server log.")

    error_responses: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorBody, "description": "No file, or a malformed request."},
        403: {"model": ErrorBody, "description": "A POST from a browser page of another origin."},
        408: {"model": ErrorBody, "description": "The body did not arrive in time."},
        413: {"model": ErrorBody, "description": "The body is too large, has too many files, or too costly an image."},
        422: {"model": ErrorBody, "description": "No file could be scored; the body also has per-file results."},
        503: {
            "model": ErrorBody,
            "description": "Busy (retry after Retry-After seconds), or the model is not running.",
        },
    }

    @app.post(DETECT_PATH, response_model=DetectResponse, responses=error_responses)
    async def detect(
        request: Request,
        file: Annotated[list[UploadFile] | None, File(description="One or more images.")] = None,
        files: Annotated[list[UploadFile] | None, File(description="More images (either field name works).")] = None,
        stability: Annotated[
            bool,
            Form(
                description="Also score each image after common deliveries (JPEG, WebP, "
                "resizing, PNG) and report how p_fake moved; a flipping verdict is uncertain."
            ),
        ] = False,
    ) -> dict[str, Any] | JSONResponse:
        """Detect AI-generated images: p_fake, verdict and the simple patch of each uploaded file."""
        uploads = [*(file or []), *(files or [])]
        if not uploads:
            raise HTTPException(400, NO_FILE_ERROR)
        if len(uploads) > limits.max_files:
            raise HTTPException(
                413,
                f"The request has {len(uploads)} files, over the limit of {limits.max_files}; send at most that "
                "many per request.",
            )
        size = sum(upload.size or 0 for upload in uploads)
        async with service.budget.hold(size, f"the request's {len(uploads)} file(s)"):
            named = [(upload.filename or f"file {i + 1}", await upload.read()) for i, upload in enumerate(uploads)]
            outcome = await unless_disconnected(request, service.detect(named, stability=stability))
        if outcome is None:
            log.info("The client of a request with %d file(s) left; its work was dropped.", len(uploads))
            return error_response(CLIENT_GONE, "The client disconnected before the answer.")
        results, timings = outcome
        if all(result["error"] for result in results):
            sentence = (
                results[0]["error"]
                if len(results) == 1
                else f"None of the {len(results)} files could be scored; see each file's error."
            )
            return error_response(422, sentence, results=results)
        return {"results": results, "model": service.model_info, "timings_ms": timings}

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        """The model (name, checkpoint sha256, threshold, preprocessing, device) and the service limits."""
        return {**service.model_info, "limits": asdict(limits)}

    @app.get("/healthz", responses={503: {"model": ErrorBody}})
    async def healthz() -> dict[str, Any]:
        """Liveness: ok while the batcher runs, with the batches and images scored so far, and the
        images dropped unscored because their clients left."""
        if not service.batcher.running:
            raise HTTPException(503, "The model batcher is not running.")
        batcher = service.batcher
        return {"status": "ok", "batches": batcher.batches, "images": batcher.images, "dropped": batcher.dropped}

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        return docs_page(request.scope.get("root_path", ""))

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    return app


def return_freed_memory() -> bool:
    """Make glibc's allocator give freed image buffers back to the system (a no-op elsewhere):
    buffers of 1 MiB and more are mapped on their own and unmapped when freed (glibc otherwise
    raises that threshold as large buffers are freed, then keeps them in its heaps), and at most
    two heaps are shared by the decode threads. Measured in ``benchmarks/serve_abuse.py``: peak
    RSS under abuse about 1.6 GB instead of 2.1-2.5 GB. True when applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_mmap_threshold, m_arena_max = -3, -8
        return bool(libc.mallopt(m_mmap_threshold, 1 << 20)) and bool(libc.mallopt(m_arena_max, 2))
    except (OSError, AttributeError):  # not glibc
        return False


def server_config(
    detector: Detector,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServeLimits | None = None,
    *,
    allowed_hosts: tuple[str, ...] = (),
    cors_origins: tuple[str, ...] = (),
    log_level: str = "info",
) -> uvicorn.Config:
    """The uvicorn configuration of :func:`run_server` (the app, its header deadline, the Host names
    allowed for ``host``); serve it with ``uvicorn.Server(config).run()``."""
    limits = limits or ServeLimits()
    access = AccessPolicy.for_bind(host, allowed_hosts, cors_origins)
    return uvicorn.Config(
        create_app(detector, limits, access),
        host=host,
        port=port,
        log_level=log_level,
        http=protocol_with_header_timeout(limits.header_timeout_s),
        timeout_keep_alive=5,
    )


def run_server(
    detector: Detector,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServeLimits | None = None,
    *,
    allowed_hosts: tuple[str, ...] = (),
    cors_origins: tuple[str, ...] = (),
    log_level: str = "info",
) -> None:
    """Serve ``detector`` over HTTP with uvicorn until interrupted (blocks).

    Args:
        detector: The loaded detector.
        host: Interface to listen on; the default accepts local connections only.
        port: TCP port.
        limits: Service limits; None uses the defaults of :class:`ServeLimits`.
        allowed_hosts: Host header names to answer; none given: the loopback names (localhost,
            127.0.0.1, ::1) when ``host`` is a loopback address, else any (see :class:`AccessPolicy`).
        cors_origins: Origins whose browser pages may call the API (CORS); none by default.
        log_level: uvicorn's log level.
    """
    config = server_config(
        detector, host, port, limits, allowed_hosts=allowed_hosts, cors_origins=cors_origins, log_level=log_level
    )
    return_freed_memory()
    log.info("Web page and API on http://%s:%d/ (API docs at /docs).", host, port)
    uvicorn.Server(config).run()
