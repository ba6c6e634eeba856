"""Options shared by the ``ssp`` commands, and the library records built from them.

Every ``choices`` list is a constant of the library (patch modes, layouts, precisions, decoders, ...),
so the command line cannot offer what the library refuses; they come from :mod:`ssp_detect.constants`,
so that building the parser imports neither torch nor numpy (``ssp --help`` starts at once). Flags
mean the same on every command: ``--workers`` is DataLoader worker processes, ``--arch`` the
architecture of a foreign state dict (``--model`` is kept as a hidden alias where weights are loaded),
``--progress/--no-progress`` the progress bars.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ssp_detect.constants import (
    BACKENDS,
    DECODERS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_UNCERTAIN_BAND,
    LAYOUTS,
    MODES,
    PRECISIONS,
)

if TYPE_CHECKING:
    from ssp_detect.data.layouts import Sample
    from ssp_detect.data.preprocess import PatchOptions
    from ssp_detect.engine.scoring import EvalRuntime

Target = argparse.ArgumentParser | argparse._ArgumentGroup


# ---------------------------------------------------------------- argument types


def at_least(low: float, kind: type = int) -> Callable[[str], Any]:
    """An argparse type: a number of ``kind`` (int or float) >= ``low``; argparse turns the error into
    one sentence and exit status 2."""
    what = "a whole number" if kind is int else "a number"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} >= {low:g}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what} >= {low:g}, got {text!r}")
        return value

    parse.__name__ = f"{kind.__name__} >= {low:g}"
    return parse


def above_zero(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


non_negative_int = at_least(0)
positive_int = at_least(1)


# ---------------------------------------------------------------- option groups


def add_switch(p: Target, name: str, *, help: str, default: bool | None = None) -> None:
    """The one form of an on/off option: ``--NAME/--no-NAME`` (dest ``NAME`` with dashes as
    underscores). ``default`` None leaves it unset, so that a preset's value stands (``ssp train``)."""
    p.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, help=help)
    if default is not None:
        # Set on the parser, not the action: BooleanOptionalAction would add its own "(default: ...)".
        p.set_defaults(**{name.replace("-", "_"): default})


def progress_help(default: bool) -> str:
    return f"Show progress bars (default {'on' if default else 'off'})."


def add_progress_option(p: Target, *, default: bool | None = True) -> None:
    """``--progress/--no-progress``, the same on every command that has progress bars."""
    add_switch(p, "progress", help=progress_help(True if default is None else default), default=default)


def add_data_options(p: argparse.ArgumentParser, *, split_default: str = "val") -> None:
    """Labelled data: ``--data`` in any layout, or ``--real`` and ``--fake`` folders."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        help="GenImage root (<subset>/<split>/{ai,nature}), ForenSynths root (0_real/1_fake "
        "folders) or a CSV manifest (path,label[,generator]).",
    )
    g.add_argument("--layout", default="auto", choices=LAYOUTS, help="Layout of --data (default: detected).")
    g.add_argument("--split", default=split_default, help=f"GenImage split folder to read (default: {split_default}).")
    g.add_argument(
        "--subsets",
        nargs="+",
        help="GenImage subsets by short name (adm biggan glide midjourney sdv4 "
        "sdv5 vqdm wukong dalle2) or folder name; ForenSynths generator folders. Default: all.",
    )
    g.add_argument("--real", help="Folder of real images (with --fake, instead of --data).")
    g.add_argument("--fake", help="Folder of fake images (with --real).")


def add_device_options(p: Target, *, precision: bool = True, backend: bool = False) -> None:
    """``--device``, with ``precision`` ``--precision`` and, with ``backend``, ``--backend`` (commands
    that score images with the model's output alone; ``explain`` reads its internals and keeps PyTorch)."""
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N (default auto).")
    if precision:
        p.add_argument(
            "--precision",
            default="auto",
            choices=PRECISIONS,
            help="auto = fp32 on CPU; bf16 autocast on CUDA, except for official weights, which keep fp32 "
            "(default auto). The SRM filter always runs in fp32.",
        )
    if backend:
        p.add_argument(
            "--backend",
            default="auto",
            choices=BACKENDS,
            help="What runs the model after patch selection: auto (default) = ONNX Runtime on the CPU in fp32 "
            "when it is installed and the model exports (exported once per checkpoint, cached under $SSP_CACHE "
            "or ~/.cache/ssp-detect/onnx), else PyTorch; torch; onnxruntime (CPU, fp32 only).",
        )


def add_runtime_options(p: argparse.ArgumentParser, *, decode: bool = False) -> None:
    """Device, precision, backend, DataLoader workers, batch size, progress bars and, with ``decode``, where
    images are decoded: the fields of :class:`~ssp_detect.engine.scoring.EvalRuntime`."""
    g = p.add_argument_group("runtime")
    add_device_options(g, backend=True)
    if decode:
        g.add_argument(
            "--decode",
            default="workers",
            choices=DECODERS,
            help="workers (default): PIL in DataLoader workers, patch chosen there; device: JPEGs decoded "
            "by torchvision on the model's device (nvJPEG on CUDA) and the patch chosen there in one batch; "
            "other formats are decoded in the workers. Pixels from nvJPEG can differ from PIL's by a grey "
            "level, so patches may differ.",
        )
    g.add_argument(
        "--workers", type=non_negative_int, help="DataLoader worker processes (default: CPU cores - 1, at most 16)."
    )
    g.add_argument("--batch-size", type=positive_int, default=64, help="Images per batch (default 64).")
    add_allow_truncated_option(g)
    add_max_pixels_option(g)
    add_progress_option(g)


def add_allow_truncated_option(p: Target) -> None:
    p.add_argument(
        "--allow-truncated",
        action="store_true",
        help="Score images whose data ends early (the decoder makes the missing part up) instead of "
        "listing them as unreadable; their verdicts are 'uncertain' with the reason truncated.",
    )


def add_max_pixels_option(p: Target) -> None:
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=DEFAULT_MAX_PIXELS,
        help=f"Largest image accepted, in pixels (default {DEFAULT_MAX_PIXELS:,}); a larger one is refused from "
        "its header, before any pixel is decoded (a decompression-bomb guard).",
    )


def add_arch_option(p: Target) -> None:
    """``--arch``: the architecture of a foreign state dict; ``--model`` is its hidden alias."""
    p.add_argument(
        "--arch",
        help="Architecture of a foreign state dict (default: inferred; official SSP files are "
        "'ssp'; see 'ssp models').",
    )
    p.add_argument("--model", dest="arch", help=argparse.SUPPRESS)


def add_weights_options(p: argparse.ArgumentParser, *, multiple: bool = False) -> None:
    """``--weights`` (one checkpoint, or several) and ``--arch``."""
    if multiple:  # both --weights A B and --weights A --weights B
        p.add_argument(
            "--weights",
            required=True,
            nargs="+",
            action="extend",
            help="Checkpoints (several, or the option repeated): ssp-detect .pt files or the official SSP "
            ".pth release.",
        )
    else:
        p.add_argument(
            "--weights", required=True, help="Checkpoint: an ssp-detect .pt file or the official SSP .pth release."
        )
    add_arch_option(p)


def add_patch_options(p: argparse.ArgumentParser) -> None:
    """How the simple patch is chosen: the fields of :class:`~ssp_detect.data.preprocess.PatchOptions`."""
    g = p.add_argument_group("simple patch")
    g.add_argument(
        "--patch-mode",
        default="seeded",
        choices=MODES,
        help="Simple-patch selection (default seeded): seeded = random candidates seeded by the image "
        "(deterministic), exhaustive = true minimum over all positions, random = the official, unseeded "
        "behaviour.",
    )
    g.add_argument("--seed", type=non_negative_int, default=0, help="Seed of the seeded patch mode (default 0).")
    g.add_argument(
        "--num-candidates",
        type=int,
        help="Random candidates per image in seeded/random mode (default: the "
        "checkpoint's; the official 64 for 32x32 patches).",
    )
    g.add_argument(
        "--patch-size",
        type=int,
        help="Simple-patch side in pixels, for patch models (default: the checkpoint's; 32 as in the paper).",
    )


def add_threshold_option(p: Target) -> None:
    """The verdict options: ``--threshold`` and ``--uncertain-band``."""
    p.add_argument(
        "--threshold",
        type=unit_float,
        help="Decision threshold on p_fake, in [0, 1] (default: the checkpoint's, chosen for a "
        "false-positive rate when trained by ssp-detect; 0.5 for official weights).",
    )
    p.add_argument(
        "--uncertain-band",
        type=band_float,
        default=DEFAULT_UNCERTAIN_BAND,
        metavar="B",
        help=f"Call a verdict 'uncertain' when p_fake is within B of the threshold (default "
        f"{DEFAULT_UNCERTAIN_BAND:g}; 0: off). Images without texture or smaller than the model's input are "
        "uncertain whatever B.",
    )


def unit_float(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    from ssp_detect.verdict import ScoreError, check_threshold

    try:
        return check_threshold(text, "value")
    except ScoreError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def band_float(text: str) -> float:
    """argparse type: an uncertainty band in [0, 0.5]."""
    from ssp_detect.verdict import ScoreError, check_band

    try:
        return check_band(text)
    except ScoreError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_bootstrap_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--bootstrap",
        type=non_negative_int,
        default=1000,
        metavar="N",
        help=f"Bootstrap resamples for {what} (default 1000; 0: none). Images made from one photo, as a "
        "data manifest records (the demo benchmark's), are resampled together.",
    )


def add_names_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--names", nargs="+", help=f"{what}, one per checkpoint.")


# ---------------------------------------------------------------- records from parsed options


def patch_options(args: argparse.Namespace) -> PatchOptions:
    from ssp_detect.data.preprocess import PatchOptions

    return PatchOptions(args.patch_mode, args.seed, args.num_candidates, args.patch_size)


def eval_runtime(args: argparse.Namespace, *, join_process_group: bool = False) -> EvalRuntime:
    """The :class:`~ssp_detect.engine.scoring.EvalRuntime` of :func:`add_runtime_options` and
    :func:`add_patch_options`, resolved once."""
    from ssp_detect.engine.scoring import EvalRuntime

    return EvalRuntime.resolve(
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        workers=args.workers,
        patch=patch_options(args),
        progress=args.progress,
        decode=getattr(args, "decode", "workers"),
        join_process_group=join_process_group,
        allow_truncated=args.allow_truncated,
        backend=args.backend,
        max_pixels=args.max_pixels,
    )


def load_data(args: argparse.Namespace) -> list[Sample]:
    """The samples that :func:`add_data_options` names."""
    from ssp_detect.data.layouts import load_samples

    return load_samples(
        args.data, layout=args.layout, split=args.split, subsets=args.subsets, real=args.real, fake=args.fake
    )


def data_source(args: argparse.Namespace, *, split: bool = False) -> str:
    """Where the data came from, for reports: ``--data``, or the ``(real, fake)`` folders; with
    ``split``, followed by ``split <name>``."""
    source = str(args.data or (args.real, args.fake))
    return f"{source} split {args.split}" if split else source
