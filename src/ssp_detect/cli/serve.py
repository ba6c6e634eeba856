"""``ssp serve``: the HTTP service and its web page."""

from __future__ import annotations

import argparse

from ssp_detect.cli import options
from ssp_detect.constants import (
    SERVE_MAX_BATCH,
    SERVE_MAX_FILES,
    SERVE_MAX_PIXELS,
    SERVE_MAX_UPLOAD_BYTES,
    SERVE_MAX_WAIT_MS,
)


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="HTTP service with a web page (FastAPI on uvicorn).",
        description="Serve POST /v1/detect, GET /v1/model, GET /healthz, the OpenAPI docs at /docs "
        "and a web page at /.",
    )
    options.add_weights_options(p)
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
    p.add_argument("--port", type=int, default=8000, help="Port (default 8000).")
    options.add_device_options(p)
    options.add_threshold_option(p)
    options.add_allow_truncated_option(p)
    # The limits' types refuse what ServeLimits refuses, in one sentence, before anything is loaded.
    p.add_argument(
        "--max-upload-mb",
        type=options.above_zero,
        default=SERVE_MAX_UPLOAD_BYTES / 1e6,
        help=f"Largest accepted request body in MB (default {SERVE_MAX_UPLOAD_BYTES / 1e6:g}).",
    )
    p.add_argument(
        "--max-pixels",
        type=options.positive_int,
        default=SERVE_MAX_PIXELS,
        help=f"Largest accepted image in pixels (default {SERVE_MAX_PIXELS:,}).",
    )
    p.add_argument(
        "--max-files",
        type=options.positive_int,
        default=SERVE_MAX_FILES,
        help=f"Most images per request (default {SERVE_MAX_FILES}).",
    )
    p.add_argument(
        "--max-batch",
        type=options.positive_int,
        default=SERVE_MAX_BATCH,
        help=f"Most images per model batch (default {SERVE_MAX_BATCH}).",
    )
    p.add_argument(
        "--max-wait-ms",
        type=options.at_least(0.0, float),
        default=SERVE_MAX_WAIT_MS,
        help=f"How long the batcher waits to fill a batch (default {SERVE_MAX_WAIT_MS:g} ms).",
    )
    options.add_patch_options(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from ssp_detect.detector import Detector
    from ssp_detect.serve.app import ServeLimits, run_server

    limits = ServeLimits(
        max_upload_bytes=max(1, int(args.max_upload_mb * 1e6)),
        max_pixels=args.max_pixels,
        max_files=args.max_files,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
    )
    detector = Detector.from_checkpoint(
        args.weights,
        model_name=args.arch,
        device=args.device,
        precision=args.precision,
        threshold=args.threshold,
        patch=options.patch_options(args),
        max_pixels=args.max_pixels,
        uncertain_band=args.uncertain_band,
        allow_truncated=args.allow_truncated,
    )
    run_server(detector, host=args.host, port=args.port, limits=limits)
    return 0


PARSERS = (add_serve_parser,)
