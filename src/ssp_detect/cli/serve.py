"""``ssp serve``: the HTTP service and its web page."""

from __future__ import annotations

import argparse

from ssp_detect.cli import options
from ssp_detect.serve.limits import MIB, ServeLimits


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    d = ServeLimits()
    p = sub.add_parser(
        "serve",
        help="HTTP service with a web page (FastAPI on uvicorn).",
        description="Serve POST /v1/detect, GET /v1/model, GET /healthz, the OpenAPI docs at /docs "
        "and a web page at /.",
    )
    options.add_weights_options(p)
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
    p.add_argument("--port", type=int, default=8000, help="Port (default 8000).")
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="Host header name the server answers to (repeatable; '*' for any). Default: localhost, "
        "127.0.0.1 and ::1 when --host is a loopback address, any name otherwise. Other names get 400, "
        "which stops DNS-rebinding pages.",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="Origin (such as https://app.example) whose browser pages may call the API (repeatable). "
        "Default: none; POSTs from pages of other origins than the server's own get 403.",
    )
    options.add_device_options(p, backend=True)
    options.add_threshold_option(p)
    options.add_allow_truncated_option(p)
    # The limits' types refuse what ServeLimits refuses, in one sentence, before anything is loaded.
    p.add_argument(
        "--max-upload-mb",
        metavar="MIB",
        type=options.above_zero,
        default=d.max_upload_bytes / MIB,
        help=f"Largest accepted request body in MiB (default {d.max_upload_bytes / MIB:g}).",
    )
    p.add_argument(
        "--max-decode-mb",
        metavar="MIB",
        type=options.above_zero,
        default=d.max_decode_bytes / MIB,
        help="Memory budget in MiB shared by all requests for their uploads and the images being decoded, "
        "estimated from each image's header before decoding (default "
        f"{d.max_decode_bytes / MIB:g}). Beyond it a request waits up to {d.decode_wait_s:g} s, then gets 503; "
        "one image needing more than all of it gets 413.",
    )
    p.add_argument(
        "--max-in-flight",
        metavar="N",
        type=options.positive_int,
        default=d.max_in_flight,
        help=f"Most detection requests at once; more get 503 with Retry-After (default {d.max_in_flight}).",
    )
    p.add_argument(
        "--header-timeout",
        metavar="S",
        type=options.above_zero,
        default=d.header_timeout_s,
        help=f"Seconds a client has to send its request headers (default {d.header_timeout_s:g}).",
    )
    p.add_argument(
        "--body-timeout",
        metavar="S",
        type=options.above_zero,
        default=d.body_timeout_s,
        help=f"Seconds a client has to send a whole request body; slower gets 408 (default {d.body_timeout_s:g}).",
    )
    p.add_argument(
        "--max-pixels",
        type=options.positive_int,
        default=d.max_pixels,
        help=f"Largest accepted image in pixels (default {d.max_pixels:,}).",
    )
    p.add_argument(
        "--max-files",
        type=options.positive_int,
        default=d.max_files,
        help=f"Most images per request (default {d.max_files}).",
    )
    p.add_argument(
        "--max-batch",
        type=options.positive_int,
        default=d.max_batch,
        help=f"Most images per model batch (default {d.max_batch}).",
    )
    p.add_argument(
        "--max-wait-ms",
        type=options.at_least(0.0, float),
        default=d.max_wait_ms,
        help=f"How long the batcher waits to fill a batch (default {d.max_wait_ms:g} ms).",
    )
    options.add_patch_options(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from ssp_detect.detector import Detector
    from ssp_detect.serve.app import run_server

    limits = ServeLimits(
        max_upload_bytes=max(1, int(args.max_upload_mb * MIB)),
        max_pixels=args.max_pixels,
        max_files=args.max_files,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_in_flight=args.max_in_flight,
        max_decode_bytes=max(1, int(args.max_decode_mb * MIB)),
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
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
        backend=args.backend,
    )
    run_server(
        detector,
        host=args.host,
        port=args.port,
        limits=limits,
        allowed_hosts=tuple(args.allowed_host),
        cors_origins=tuple(args.cors_origin),
    )
    return 0


PARSERS = (add_serve_parser,)
