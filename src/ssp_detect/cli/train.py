"""``ssp train``: its flags are derived from :class:`~ssp_detect.config.TrainConfig`'s fields.

Each field becomes ``--field-name`` with the help, group, choices, nargs, metavar and hidden old
names (``aliases``) of its metadata, the type of its annotation, and default None, so that
``build_config`` layers defaults < preset < the flags given. ``--config`` and ``--resume`` are the
only options of the command line alone.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

from ssp_detect.cli.options import add_switch, at_least
from ssp_detect.config import GROUPS, TrainConfig, build_config, option_help, resume_preset
from ssp_detect.errors import UsageError


def value_type(hint: Any) -> tuple[type, bool]:
    """(scalar type, is a list) of a field annotation such as ``int``, ``str | None`` or ``list[int] | None``."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True
    return hint, False


def add_field_option(p: argparse.ArgumentParser | argparse._ArgumentGroup, f: Field, hint: Any) -> None:
    """The flag (and hidden old flags) of one config field."""
    meta = f.metadata
    kind, many = value_type(hint)
    if kind is bool:
        add_switch(p, f.name.replace("_", "-"), help=option_help(f))
        return
    options: dict[str, Any] = {"dest": f.name, "default": None, "help": option_help(f)}
    options["type"] = at_least(meta["min"], kind) if "min" in meta else kind
    nargs = meta.get("nargs") or ("+" if many else None)
    if nargs is not None:
        options["nargs"] = nargs
    for key in ("choices", "metavar"):
        if key in meta:
            options[key] = meta[key]
    p.add_argument("--" + f.name.replace("_", "-"), **options)
    for alias in meta.get("aliases", ()):
        p.add_argument(alias, **(options | {"help": argparse.SUPPRESS}))


def add_config_options(p: argparse.ArgumentParser, config: type = TrainConfig) -> None:
    """One flag per field of ``config``, in field order, in the option groups of :data:`~ssp_detect.config.GROUPS`."""
    hints = typing.get_type_hints(config)
    groups = {key: p.add_argument_group(title) for key, title in GROUPS.items()}
    for f in fields(config):
        group = f.metadata.get("group")
        add_field_option(groups[group] if group else p, f, hints[f.name])


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="Train a detector (official SSP recipe by default).",
        description="Train a detector. Options come from the defaults (the official recipe) < --config "
        "preset < flags. Writes best.pt, last.pt, config.yaml, metrics.jsonl and train.log into --out.",
    )
    p.add_argument("--config", help="YAML preset: a file, or a packaged name (official, from-scratch, robust).")
    p.add_argument(
        "--resume",
        help="Continue exactly from a last.pt (model, optimizer, schedule, epoch), in its folder (wherever the "
        "run folder has moved); its run folder's config.yaml is the preset unless --config is given.",
    )
    add_config_options(p)
    p.set_defaults(func=cmd_train)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The config of parsed ``ssp train`` arguments: defaults < preset (``--config``, else the resumed
    run's config.yaml) < the flags given."""
    if args.resume and args.out is not None and Path(args.out).resolve() != Path(args.resume).parent.resolve():
        raise UsageError(
            f"--resume continues the run in the folder of {args.resume}; leave out --out, or copy that folder to "
            f"{args.out} and resume from the last.pt there."
        )
    preset = args.config or (resume_preset(args.resume) if args.resume else None)
    return build_config(preset, {f.name: getattr(args, f.name) for f in fields(TrainConfig)})


def cmd_train(args: argparse.Namespace) -> int:
    from ssp_detect.engine import distributed
    from ssp_detect.engine.train import train

    result = train(train_config(args), resume=args.resume)
    best = result.get("best_val") or {}
    print(
        f"best checkpoint: {result['best']} (validation acc {best.get('acc', float('nan')):.3f}, "
        f"AUC {best.get('auc', float('nan')):.3f}); run folder: {result['out']}"
    )
    distributed.teardown()  # as test and predict do: a process group left to the interpreter's exit can abort a rank
    return 0


PARSERS = (add_train_parser,)
