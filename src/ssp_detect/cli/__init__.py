"""``ssp``: one command line for training, testing, prediction, serving and the demo.

One module per command or family, each with ``add_<name>_parser(subparsers)`` and ``cmd_<name>(args)``
(listed in its ``PARSERS``); a command function parses, calls the library and prints. Shared options,
whose ``choices`` are the library's constants, are in :mod:`ssp_detect.cli.options`.

* :mod:`~ssp_detect.cli.models`: ``models``
* :mod:`~ssp_detect.cli.train`: ``train`` (flags derived from :class:`~ssp_detect.config.TrainConfig`)
* :mod:`~ssp_detect.cli.evaluate`: ``test``/``eval``, ``cross-eval``, ``robustness``, ``calibrate``
* :mod:`~ssp_detect.cli.predict`: ``predict``, ``explain``
* :mod:`~ssp_detect.cli.serve`: ``serve``
* :mod:`~ssp_detect.cli.data`: ``data build-demo``, ``demo``
* :mod:`~ssp_detect.cli.export`: ``export``, ``card``

Errors a user can cause (:class:`~ssp_detect.errors.SSPError`, and missing or unreadable paths) end
in one sentence on stderr and exit status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ssp_detect import __version__
from ssp_detect.errors import SSPError

# Path errors are the user's too: a folder or file that is missing, unreadable, or of the wrong kind.
USER_ERRORS: tuple[type[BaseException], ...] = (SSPError, FileNotFoundError, PermissionError, IsADirectoryError)


def build_parser() -> argparse.ArgumentParser:
    """The ``ssp`` argument parser with every sub-command."""
    from ssp_detect.cli import data, evaluate, export, models, predict, serve, train

    parser = argparse.ArgumentParser(
        prog="ssp", description="ssp-detect: AI-generated image detection from a single simple patch (SSP)."
    )
    parser.add_argument("--version", action="version", version=f"ssp-detect {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging; errors show their traceback.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (models, train, evaluate, predict, serve, data, export):
        for add in module.PARSERS:
            add(sub)
    return parser


def error_sentence(exc: BaseException) -> str:
    """The one sentence shown for a user error."""
    if isinstance(exc, OSError) and not isinstance(exc, SSPError) and exc.filename is not None:
        return f"{exc.strerror or 'cannot use'}: {exc.filename}"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ssp`` with ``argv`` (default: the process arguments); returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    command = " ".join(filter(None, (args.command, getattr(args, "data_command", None))))
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        if args.verbose:
            raise
        print(f"ssp {command}: error: {error_sentence(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
