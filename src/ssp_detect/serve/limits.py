"""What one request may ask of the service: the limits record and the body-size middleware."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ssp_detect import constants
from ssp_detect.serve.schemas import error_response


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

    max_upload_bytes: int = constants.SERVE_MAX_UPLOAD_BYTES
    max_pixels: int = constants.SERVE_MAX_PIXELS
    max_files: int = constants.SERVE_MAX_FILES
    max_batch: int = constants.SERVE_MAX_BATCH
    max_wait_ms: float = constants.SERVE_MAX_WAIT_MS
    decode_workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_files", "max_batch", "decode_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"Serve limit {name}={getattr(self, name)} must be at least 1.")
        if self.max_wait_ms < 0:
            raise ValueError(f"Serve limit max_wait_ms={self.max_wait_ms} must not be negative.")


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
