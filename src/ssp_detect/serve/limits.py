"""What the service lets one request, and all of them together, cost: the limits record.

Sizes are in bytes here and in MiB (2**20 bytes) on the command line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

MIB = 1 << 20
RETRY_AFTER_S = 1  # the Retry-After of every 503: the service is busy now, not broken


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask of the service, what all requests together may hold, and how
    requests are batched on the model.

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
        max_in_flight: Most detection requests inside the service at once (64), from their first
            body byte to their answer; one more is answered 503 with ``Retry-After`` at once.
        max_decode_bytes: Memory budget shared by all requests for their uploaded bytes and the
            images being decoded (1 GiB): each upload is counted from its size, each image from
            its header (pixels x the bytes per pixel its decoding takes) before it is decoded.
            An image that would not fit waits up to ``decode_wait_s`` for memory to free, then is
            answered 503 with ``Retry-After``; a request whose uploads or one image alone exceed
            the whole budget is answered 413.
        decode_wait_s: Longest wait of an image for the decode budget (5 s).
        header_timeout_s: Time a client has to send a request's headers, from its connection or
            the end of its previous request (10 s); the connection is then closed.
        body_timeout_s: Time a client has to send a request's whole body, from the end of its
            headers (30 s, so about 0.7 MiB/s for the largest upload); the request is then
            answered 408 and the connection closed.
    """

    max_upload_bytes: int = 20 * MIB
    max_pixels: int = 40_000_000
    max_files: int = 16
    max_batch: int = 32
    max_wait_ms: float = 5.0
    decode_workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    max_in_flight: int = 64
    max_decode_bytes: int = 1024 * MIB
    decode_wait_s: float = 5.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in (
            "max_upload_bytes",
            "max_pixels",
            "max_files",
            "max_batch",
            "decode_workers",
            "max_in_flight",
            "max_decode_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"Serve limit {name}={getattr(self, name)} must be at least 1.")
        for name in ("max_wait_ms", "decode_wait_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"Serve limit {name}={getattr(self, name)} must not be negative.")
        for name in ("header_timeout_s", "body_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Serve limit {name}={getattr(self, name)} must be above 0.")


def mib(n_bytes: int) -> str:
    """A size for people: ``20 MiB``, ``0.5 MiB``."""
    return f"{n_bytes / MIB:,.4g} MiB"
