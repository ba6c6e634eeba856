"""``ssp models``: the registered models."""

from __future__ import annotations

import argparse


def add_models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models", help="List the registered models.", description="List the registered models and what each is."
    )
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from ssp_detect.models.registry import get_spec, list_models

    for name in list_models():
        spec = get_spec(name)
        print(f"{name:<20} {'[paper] ' if spec.paper else ''}{spec.description}")
    return 0


PARSERS = (add_models_parser,)
