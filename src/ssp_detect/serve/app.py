"""The HTTP service: ``POST /v1/detect`` with dynamic batching, health and model info, a web page.

Flow of a request: multipart upload (body size checked while it streams in) -> bytes per file ->
decode and simple patch in a thread pool -> the batcher's queue, shared by all requests -> one
model forward per batch in the model thread -> p_fake per file -> JSON.

Status codes (every non-200 body is ``{"error": "<one sentence>"}``):

* 200: every file was scored, or at least one was; a file that could not be read has ``p_fake``
  null and an ``error`` sentence in its result.
* 400: no file in the request, a malformed multipart body or an invalid form field.
* 404 / 405: unknown path or method.
* 413: the body is over ``max_upload_bytes``, or it holds more than ``max_files`` files.
* 422: no file could be scored (empty, truncated, corrupt, not an image, an unsupported pixel
  format, over the pixel limit); the body also carries the per-file ``results``.
* 500: an unexpected fault of the server, never a user's input (the sentence points to the log).
* 503: the batcher is not running (the app was served without its lifespan).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ssp_detect.detector import Detector
from ssp_detect.serve.limits import BodySizeLimit, ServeLimits
from ssp_detect.serve.schemas import DetectResponse, ErrorBody, error_response
from ssp_detect.serve.service import DetectionService
from ssp_detect.verdict import ScoreError

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
NO_FILE_ERROR = (
    "The request has no image file; send one or more files in a multipart form field named 'file' or 'files'."
)


def _sentence(detail: Any, request: Request) -> str:
    """An HTTP error's detail as one sentence naming the request when the detail is terse."""
    text = str(detail)
    return text if text.endswith(".") else f"{text}: {request.method} {request.url.path}."


def create_app(detector: Detector, limits: ServeLimits | None = None) -> FastAPI:
    """The FastAPI app serving ``detector``.

    Endpoints: ``POST /v1/detect``, ``GET /v1/model``, ``GET /healthz``, the web page at ``/``
    (files under ``/static``) and the OpenAPI docs at ``/docs``. The batcher and the decode
    threads live in the app's lifespan: serve it with uvicorn, or use ``with TestClient(app)``.

    Args:
        detector: The loaded detector.
        limits: Service limits; None uses the defaults of :class:`ServeLimits`.
    """
    limits = limits or ServeLimits()
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
    )
    app.state.service = service
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_upload_bytes)

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
        413: {"model": ErrorBody, "description": "The body is too large, or it has too many files."},
        422: {"model": ErrorBody, "description": "No file could be scored; the body also has per-file results."},
        503: {"model": ErrorBody, "description": "The model is not running."},
    }

    @app.post("/v1/detect", response_model=DetectResponse, responses=error_responses)
    async def detect(
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
        named = [(upload.filename or f"file {i + 1}", await upload.read()) for i, upload in enumerate(uploads)]
        results, timings = await service.detect(named, stability=stability)
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
        """Liveness: ok while the batcher runs, with the batches and images scored so far."""
        if not service.batcher.running:
            raise HTTPException(503, "The model batcher is not running.")
        return {"status": "ok", "batches": service.batcher.batches, "images": service.batcher.images}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def run_server(
    detector: Detector,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServeLimits | None = None,
    *,
    log_level: str = "info",
) -> None:
    """Serve ``detector`` over HTTP with uvicorn until interrupted (blocks).

    Args:
        detector: The loaded detector.
        host: Interface to listen on; the default accepts local connections only.
        port: TCP port.
        limits: Service limits; None uses the defaults of :class:`ServeLimits`.
        log_level: uvicorn's log level.
    """
    log.info("Web page and API on http://%s:%d/ (API docs at /docs).", host, port)
    uvicorn.run(create_app(detector, limits), host=host, port=port, log_level=log_level)
