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

import asyncio
import dataclasses
import logging
import os
import time
import typing
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import uvicorn
from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ssp_detect.data.decode import ImageDecodeError, load_rgb
from ssp_detect.data.patch import SMALL_IMAGE_SIZE
from ssp_detect.data.preprocess import Prepared
from ssp_detect.detector import Detection, Detector

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
_Pending = tuple[Prepared, asyncio.Future[float]]  # a queued image and the future of its p_fake
NO_FILE_ERROR = "The request has no image file; send one or more files in a multipart form field named 'file' or 'files'."


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask of the service, and how requests are batched on the model.

    Attributes:
        max_upload_bytes: Largest request body (all files plus the multipart framing), 20 MiB;
            a larger body is refused with 413 as soon as its size is known, before it is parsed.
        max_pixels: Largest image, in pixels (40 million); checked from the header before the
            pixels are decoded, so a decompression bomb costs nothing. It replaces the detector's
            own ``max_pixels`` for uploads.
        max_files: Most files in one request (16).
        max_batch: Most images in one model forward (32), gathered across requests.
        max_wait_ms: Longest time the first image of a batch waits for others to join it (5 ms);
            a batch also starts as soon as it is full.
        decode_workers: Threads that decode images and select patches (min(4, CPU count)).
    """

    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_files: int = 16
    max_batch: int = 32
    max_wait_ms: float = 5.0
    decode_workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_files", "max_batch", "decode_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"Serve limit {name}={getattr(self, name)} must be at least 1.")
        if self.max_wait_ms < 0:
            raise ValueError(f"Serve limit max_wait_ms={self.max_wait_ms} must not be negative.")


def _result_schema() -> type[BaseModel]:
    """The JSON of one uploaded file: :meth:`Detection.to_dict` with ``source`` named ``filename``
    (``error`` set and the rest null when the file could not be read). Built from the record's
    fields, so the service and the API cannot diverge."""
    hints = typing.get_type_hints(Detection)
    fields: dict[str, Any] = {"filename": (str, ...)}
    for f in dataclasses.fields(Detection):
        if f.name != "source":
            kind = hints[f.name]
            fields[f.name] = (list[int] | None if "tuple" in str(kind) else kind, ...)
    return create_model("FileResult", __doc__="The verdict on one uploaded file.", **fields)


FileResult = _result_schema()


class Timings(BaseModel):
    """Wall-clock time of a request's stages, in milliseconds."""

    decode_and_patch: float
    queue_and_model: float
    total: float


class DetectResponse(BaseModel):
    """Response of ``POST /v1/detect``: results in upload order, the model that made them, timings."""

    results: list[FileResult]
    model: dict[str, Any]
    timings_ms: Timings


class ErrorBody(BaseModel):
    """Body of every error response."""

    error: str


class UploadTooLarge(HTTPException):
    """A request body over the upload limit (413), raised while the body streams in."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            413, f"The request body is over the upload limit of {max_bytes:,} bytes; send fewer or smaller files."
        )


class BodySizeLimit:
    """ASGI middleware refusing request bodies over ``max_bytes``.

    A declared ``Content-Length`` over the limit is answered with 413 without reading the body; a
    body without one (chunked) is counted as it arrives and cut off with :class:`UploadTooLarge`.

    Args:
        app: The wrapped ASGI app.
        max_bytes: Largest accepted body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            error = UploadTooLarge(self.max_bytes)
            await error_response(error.status_code, error.detail)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise UploadTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


def error_response(status_code: int, sentence: str, **extra: Any) -> JSONResponse:
    """The JSON body of an error: ``{"error": sentence, **extra}``."""
    return JSONResponse({"error": sentence, **extra}, status_code=status_code)


class DynamicBatcher:
    """Gathers images from concurrent requests into model batches.

    One asyncio task takes queued images until ``max_batch`` are gathered or ``max_wait_s`` has
    passed since the first, then runs ``score`` on them in a dedicated thread, so the event loop
    keeps accepting and decoding requests while the model runs; images queued meanwhile form the
    next batch. A failing ``score`` fails the requests of that batch only.

    Args:
        score: p_fake of a list of prepared images (one forward pass).
        max_batch: Most images per call of ``score``.
        max_wait_s: Longest wait of a batch's first image for others.
    """

    def __init__(self, score: Callable[[list[Prepared]], np.ndarray], *, max_batch: int, max_wait_s: float) -> None:
        self._score = score
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.batches = 0
        self.images = 0
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self._model_thread: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`, while the batching task is alive."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the batching task on the running event loop."""
        self._queue = asyncio.Queue()
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ssp-model")
        self._task = asyncio.create_task(self._run(), name="ssp-batcher")

    async def stop(self) -> None:
        """Stop the task; requests still waiting are cancelled."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()[1].cancel()
        if self._model_thread is not None:
            self._model_thread.shutdown(wait=True)

    async def score(self, items: Sequence[Prepared]) -> list[float]:
        """p_fake of each item, in order, once the batches holding them have run.

        Raises:
            HTTPException: 503 when the batcher is not running.
        """
        if not self.running or self._queue is None:
            raise HTTPException(503, "The model is not running; the service is starting or stopping, retry in a moment.")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        for item, future in zip(items, futures):
            self._queue.put_nowait((item, future))
        return list(await asyncio.gather(*futures))

    async def _next_batch(self, queue: asyncio.Queue[_Pending]) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        batch = [await queue.get()]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [(item, future) for item, future in await self._next_batch(self._queue) if not future.done()]
            if not batch:
                continue
            try:
                probs = await loop.run_in_executor(self._model_thread, self._score, [item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # the model failing must not kill the batcher
                log.exception("Scoring a batch of %d images failed.", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.images += len(batch)
            log.debug("Scored a batch of %d images.", len(batch))
            for (_, future), p in zip(batch, probs.tolist()):
                if not future.done():
                    future.set_result(p)


class DetectionService:
    """Detection of uploaded files: decoding in a thread pool, scoring through a :class:`DynamicBatcher`.

    Args:
        detector: The loaded detector.
        limits: The service limits.
    """

    def __init__(self, detector: Detector, limits: ServeLimits) -> None:
        self.detector = detector
        self.limits = limits
        self.model_info = detector.info
        self.batcher = DynamicBatcher(detector.score, max_batch=limits.max_batch, max_wait_s=limits.max_wait_ms / 1000)
        self._decode_pool: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Start the decode threads and the batcher (on the running event loop), after choosing a
        patch once so that the first request does not pay for loading the compiled selection."""
        self._decode_pool = ThreadPoolExecutor(max_workers=self.limits.decode_workers, thread_name_prefix="ssp-decode")
        blank = np.zeros((SMALL_IMAGE_SIZE, SMALL_IMAGE_SIZE, 3), np.uint8)
        await asyncio.get_running_loop().run_in_executor(self._decode_pool, self.detector.prepare, blank)
        await self.batcher.start()

    async def stop(self) -> None:
        """Stop the batcher and the decode threads."""
        await self.batcher.stop()
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=False, cancel_futures=True)

    def prepare_upload(self, filename: str, data: bytes) -> tuple[Prepared | None, str | None]:
        """Decode one upload and select its patch; an unreadable file gives its error sentence instead."""
        try:
            return self.detector.prepare(load_rgb(data, max_pixels=self.limits.max_pixels)), None
        except ImageDecodeError as exc:
            # The decoder names in-memory data "uploaded data"; name the file instead.
            return None, str(exc).replace("uploaded data", f"Upload {filename!r}", 1)

    async def detect(self, uploads: Sequence[tuple[str, bytes]]) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """Score uploads given as (filename, bytes).

        Returns:
            One result dict per upload, in order (see :class:`FileResult`), and the timings in ms.
        """
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        outcomes = await asyncio.gather(
            *(loop.run_in_executor(self._decode_pool, self.prepare_upload, name, data) for name, data in uploads)
        )
        decoded = time.perf_counter()
        good = [i for i, (prepared, _) in enumerate(outcomes) if prepared is not None]
        probs = await self.batcher.score([outcomes[i][0] for i in good]) if good else []
        scored = time.perf_counter()
        p_by_index = dict(zip(good, probs))
        results = []
        for i, ((name, _), (prepared, error)) in enumerate(zip(uploads, outcomes)):
            result = self.detector.make_detection(name, prepared, p_by_index.get(i), error).to_dict()
            results.append({"filename": result.pop("source"), **result})
        timings = {
            "decode_and_patch": round((decoded - start) * 1000, 2),
            "queue_and_model": round((scored - decoded) * 1000, 2),
            "total": round((scored - start) * 1000, 2),
        }
        return results, timings


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
        return error_response(400, f"Invalid request field {where}: {str(first.get('msg', 'invalid value')).rstrip('.')}.")

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
    ) -> dict[str, Any] | JSONResponse:
        """Detect AI-generated images: p_fake, verdict and the simple patch of each uploaded file."""
        uploads = [*(file or []), *(files or [])]
        if not uploads:
            raise HTTPException(400, NO_FILE_ERROR)
        if len(uploads) > limits.max_files:
            raise HTTPException(
                413, f"The request has {len(uploads)} files, over the limit of {limits.max_files}; send at most that many per request."
            )
        named = [(upload.filename or f"file {i + 1}", await upload.read()) for i, upload in enumerate(uploads)]
        results, timings = await service.detect(named)
        if all(result["error"] for result in results):
            sentence = (results[0]["error"] if len(results) == 1
                        else f"None of the {len(results)} files could be scored; see each file's error.")
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
    detector: Detector, host: str = "127.0.0.1", port: int = 8000, limits: ServeLimits | None = None, *, log_level: str = "info"
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
