"""``ssp export`` and ``ssp card``: a checkpoint as ONNX or safetensors, and its model card."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssp_detect.cli import options
from ssp_detect.constants import EXPORT_FORMATS


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="Write a checkpoint as ONNX (the model after patch selection) or safetensors + JSON config.",
        description="onnx: one graph from the normalised batch (dynamic batch axis) to the logit of fake, with the "
        "input contract (input kind and size, mean, std, labels real=0 fake=1, threshold, temperature, model, "
        "checkpoint sha256) in its metadata; checked against PyTorch (p_fake within 1e-4) before it is written. "
        "safetensors: the weights, and PATH.json beside them with the model, threshold, temperature, preprocessing "
        "and training records; 'ssp predict --weights PATH' reads the pair like a .pt.",
    )
    p.add_argument("checkpoint", help="Checkpoint: an ssp-detect .pt file or the official SSP .pth release.")
    options.add_arch_option(p)
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="onnx or safetensors.")
    p.add_argument("--out", required=True, help="Output file (e.g. model.onnx or model.safetensors).")
    p.add_argument("--card", action="store_true", help="Also write the model card beside it (OUT with suffix .md).")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ssp_detect.models.card import write_model_card
    from ssp_detect.models.export import export_onnx
    from ssp_detect.models.loading import load_model
    from ssp_detect.models.safetensors_io import config_path, save_safetensors
    from ssp_detect.outputs import ensure_writable_file

    # Every file this will write is checked before the (possibly long) export.
    ensure_writable_file(args.out, "--out")
    if args.format == "safetensors":
        ensure_writable_file(config_path(args.out), "--out")
    if args.card:
        ensure_writable_file(Path(args.out).with_suffix(".md"), "--out")
    loaded = load_model(args.checkpoint, model_name=args.arch)
    if args.format == "onnx":
        written = [export_onnx(loaded, args.out)]
    else:
        written = list(save_safetensors(loaded, args.out))
    if args.card:
        written.append(write_model_card(loaded, Path(args.out).with_suffix(".md")))
    print(f"written: {', '.join(map(str, written))}")
    return 0


def add_card_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "card",
        help="Write a model card (Markdown) from a checkpoint.",
        description="Model and what it reads, training data and recipe, validation metrics, the threshold and how "
        "it was chosen, the temperature, and known limits; all from the checkpoint itself.",
    )
    p.add_argument("checkpoint", help="Checkpoint: an ssp-detect .pt or .safetensors file, or the official release.")
    options.add_arch_option(p)
    p.add_argument("--out", help="Markdown file to write (default: print to standard output).")
    p.set_defaults(func=cmd_card)


def cmd_card(args: argparse.Namespace) -> int:
    from ssp_detect.models.card import model_card, write_model_card
    from ssp_detect.models.loading import load_model
    from ssp_detect.outputs import ensure_writable_file

    if args.out:
        ensure_writable_file(args.out, "--out")
    loaded = load_model(args.checkpoint, model_name=args.arch)
    if args.out:
        print(f"written: {write_model_card(loaded, args.out, title=f'Model card: {Path(args.checkpoint).name}')}")
    else:
        print(model_card(loaded, title=f"Model card: {Path(args.checkpoint).name}"), end="")
    return 0


PARSERS = (add_export_parser, add_card_parser)
