"""``ssp predict`` and ``ssp explain``: commands that score unlabelled images with one checkpoint."""

from __future__ import annotations

import argparse
import sys

from ssp_detect.cli import options
from ssp_detect.constants import FORMATS


def add_predict_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="Is this image AI-generated? Score files, folders, globs or a CSV list.",
        description="Score images and stream one result per image: path, p_fake, label (fake when "
        "p_fake >= threshold), the simple patch box and its texture score, or an error for unreadable "
        "files. Exits 1 when nothing could be scored (or, with --strict, when anything could not), and 2, before "
        "scoring, when --output cannot be written.",
    )
    p.add_argument("paths", nargs="+", help="Image files, folders, glob patterns (quoted) or .csv lists (path column).")
    options.add_weights_options(p)
    options.add_threshold_option(p)
    p.add_argument("--format", default="table", choices=FORMATS, help="Output format (default table).")
    p.add_argument("--output", help="Write results to this file instead of standard output.")
    p.add_argument("--recursive", action="store_true", help="Descend into sub-folders.")
    p.add_argument("--batch-size", type=options.positive_int, default=32, help="Images per model batch (default 32).")
    p.add_argument("--threads", type=options.non_negative_int, default=2, help="Decoding threads (default 2).")
    p.add_argument("--workers", dest="threads", type=options.non_negative_int, help=argparse.SUPPRESS)  # the old name
    options.add_device_options(p, backend=True)
    options.add_patch_options(p)
    p.add_argument(
        "--stability",
        action="store_true",
        help="Also score each image after common deliveries (JPEG 95/85/75, WebP 80, resize x0.75 and x0.5, "
        "a PNG round trip) in the same batch; report the lowest and highest p_fake and the delivery that "
        "moved it most; a verdict that flips becomes 'uncertain' (reason unstable).",
    )
    options.add_allow_truncated_option(p)
    options.add_max_pixels_option(p)
    p.add_argument("--strict", action="store_true", help="Exit non-zero if any image could not be read.")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from ssp_detect.predict_io import predict_to

    counts = predict_to(
        args.weights,
        args.paths,
        fmt=args.format,
        output=args.output,
        recursive=args.recursive,
        model_name=args.arch,
        device=args.device,
        precision=args.precision,
        threshold=args.threshold,
        patch=options.patch_options(args),
        batch_size=args.batch_size,
        threads=args.threads,
        uncertain_band=args.uncertain_band,
        stability=args.stability,
        allow_truncated=args.allow_truncated,
        backend=args.backend,
        max_pixels=args.max_pixels,
    )
    if counts.main and args.output:
        print(f"{counts.scored} scored, {counts.failed} unreadable; results in {args.output}", file=sys.stderr)
    return 1 if counts.scored == 0 or (args.strict and counts.failed) else 0


def add_explain_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="Figure: candidate patches, the chosen simple patch, its SRM residuals and p_fake.",
        description="Draw one image with every candidate patch and the chosen simple patch boxed, the "
        "patch enlarged, its three SRM residual maps and the verdict. Runs PyTorch (no --backend): the figure "
        "reads the model's internals.",
    )
    p.add_argument("image", help="Image file.")
    options.add_weights_options(p)
    p.add_argument("--out", required=True, help="Output PNG.")
    options.add_device_options(p, precision=False)
    options.add_threshold_option(p)
    options.add_allow_truncated_option(p)
    options.add_max_pixels_option(p)
    options.add_patch_options(p)
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from ssp_detect.detector import Detector
    from ssp_detect.explain import explain_figure
    from ssp_detect.outputs import ensure_writable_file

    ensure_writable_file(args.out, "--out")
    detector = Detector.from_checkpoint(
        args.weights,
        model_name=args.arch,
        device=args.device,
        threshold=args.threshold,
        patch=options.patch_options(args),
        uncertain_band=args.uncertain_band,
        allow_truncated=args.allow_truncated,
        backend="torch",  # the figure reads the model's internals; its verdict comes from the same module
        max_pixels=args.max_pixels,
    )
    d = explain_figure(detector, args.image, args.out)
    print(f"{d['label']} (p_fake {d['p_fake']:.4f}); figure written to {args.out}")
    return 0


PARSERS = (add_predict_parser, add_explain_parser)
