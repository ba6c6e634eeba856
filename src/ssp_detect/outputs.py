"""Where results go: output folders and files are created and checked before any work, and a write
that fails later is one sentence naming the file.

Every command that writes calls :func:`ensure_writable_folder` (or :func:`ensure_writable_file`)
before it reads its first image, so a read-only, full or mistyped place costs nothing; a write that
fails afterwards (the disk fills up) raises :class:`OutputError` through :func:`writing`. Both end
the command with status 2, like every :class:`~ssp_detect.errors.SSPError`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ssp_detect.errors import SSPError


class OutputError(SSPError, OSError):
    """A result that cannot be written (read-only or full folder, a file where a folder should be);
    ``str()`` names the path and what to do. An ``OSError``, as the failed write was."""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or exc.__class__.__name__


def write_failed(subject: str, exc: OSError, note: str = "") -> OutputError:
    """The error for a failed write of ``subject`` ("the results to out/x.csv"): the system's
    reason, ``note`` (e.g. what was kept), and what to do (free space when the disk is full)."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    todo = "free some space or choose another place" if full else "choose another place"
    return OutputError(f"Could not write {subject} ({_reason(exc)}){note}; {todo}.")


def ensure_writable_folder(folder: str | Path, option: str) -> Path:
    """Create ``folder`` and check that a file can be written there, before any work.

    Raises:
        OutputError: a read-only, full or unusable place (naming the folder and ``option``).
    """
    path = Path(folder)
    probe = path / f".ssp-write-check-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"Cannot write into {path} ({_reason(exc)}); choose another {option}.") from None
    return path


def ensure_writable_file(file: str | Path, option: str) -> Path:
    """Create the folder of ``file`` and check that ``file`` can be written there, before any work
    (the file itself is neither created nor changed).

    Raises:
        OutputError: ``file`` is a folder, is read-only, or its folder cannot be written.
    """
    path = Path(file)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give {option} a file name.")
    ensure_writable_folder(path.parent, option)
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"Cannot write {path} (permission denied); choose another {option}.")
    return path


@contextmanager
def writing(path: str | Path, what: str = "") -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into an :class:`OutputError` naming ``path``
    (``what`` says what was being written, e.g. "the results")."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise write_failed(f"{what} to {path}" if what else str(path), exc) from exc
