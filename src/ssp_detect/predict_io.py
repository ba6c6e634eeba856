"""Inputs and outputs of ``ssp predict``: expanding paths, streaming result writers, and the run that
joins them (:func:`predict_to`)."""

from __future__ import annotations

import contextlib
import csv
import functools
import glob
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ssp_detect.constants import DEFAULT_MAX_PIXELS, FORMATS
from ssp_detect.data.decode import GLOB_CHARS
from ssp_detect.data.layouts import list_image_files
from ssp_detect.data.preprocess import PatchOptions
from ssp_detect.detector import Detection, Detector
from ssp_detect.errors import UsageError
from ssp_detect.outputs import ensure_writable_file, writing
from ssp_detect.verdict import DEFAULT_UNCERTAIN_BAND

log = logging.getLogger(__name__)


def iter_image_paths(inputs: Sequence[str], *, recursive: bool = False) -> Iterator[str]:
    """Expand files, folders (images inside; all levels with ``recursive``), glob patterns and
    ``.csv`` lists (a ``path`` column, or the first column) into image paths, lazily.

    A named file is yielded even when its extension is unknown, so that it is reported, not lost.
    A path that matches nothing is yielded too, and so is a glob pattern that matches no file: the
    detector reports them (missing, matches no file). Folders are listed by
    :func:`~ssp_detect.data.layouts.list_image_files`: symlinked folders followed (each real folder
    once), broken links listed so that they are reported.
    """
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            yield from list_image_files(p, recursive=recursive)
        elif p.is_file() and p.suffix.lower() == ".csv":
            with p.open(newline="") as f:
                rows = csv.reader(f)
                header = next(rows, [])
                col = header.index("path") if "path" in header else 0
                if "path" not in header and header:
                    yield str(p.parent / header[0]) if not Path(header[0]).is_absolute() else header[0]
                for row in rows:
                    if row and row[col].strip():
                        q = Path(row[col].strip())
                        yield str(q if q.is_absolute() else p.parent / q)
        elif any(ch in item for ch in GLOB_CHARS) and not p.exists():
            yield from sorted(glob.glob(item, recursive=recursive)) or [item]
        else:
            yield item


def printable(text: str) -> str:
    """``text`` on one line: control characters (a newline in a file name) escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


class ResultWriter:
    """Writes detections one by one as they arrive, in table, CSV, JSON or JSON-lines format."""

    def __init__(self, stream: IO[str], fmt: str) -> None:
        if fmt not in FORMATS:
            raise UsageError(f"Unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}.")
        self.stream, self.fmt, self.count = stream, fmt, 0
        if fmt == "csv":
            self.csv = csv.DictWriter(stream, fieldnames=list(Detection("", None, None, 0.5).to_row()))
            self.csv.writeheader()
        elif fmt == "json":
            stream.write("[")
        elif fmt == "table":
            stream.write(f"{'label':<9} {'p_fake':>7}  {'patch (x,y)':<13} path  [why uncertain]\n")

    def write(self, d: Detection) -> None:
        row = d.to_row()
        if self.fmt == "csv":
            self.csv.writerow({k: "" if v is None else v for k, v in row.items()})
        elif self.fmt == "jsonl":
            self.stream.write(json.dumps(row) + "\n")
        elif self.fmt == "json":
            self.stream.write(("," if self.count else "") + "\n  " + json.dumps(row))
        elif d.error:  # the sentence names the file
            self.stream.write(f"{'ERROR':<9} {'':>7}  {'':<13} {printable(d.error)}\n")
        else:
            corner = f"({row['x']},{row['y']})"
            extra = f"  [{', '.join(d.reasons)}]" if d.reasons else ""
            if d.stability:
                s = d.stability
                extra += f"  p_fake {s.p_min:.3f}-{s.p_max:.3f} over deliveries, most moved by {s.most_moved}"
            self.stream.write(f"{d.label:<9} {d.p_fake:7.4f}  {corner:<13} {printable(d.source)}{extra}\n")
        self.count += 1
        if self.stream is sys.stdout:
            self.stream.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self.stream.write("\n]\n" if self.count else "]\n")


def write_results(detections: Iterable[Detection], output: str | Path | None, fmt: str) -> tuple[int, int]:
    """Stream ``detections`` to ``output`` (None: standard output) in ``fmt``; returns (scored,
    unreadable). Only the writes are guarded (:func:`~ssp_detect.outputs.writing`): an ``OSError``
    while the detections are made (reading a CSV list) is not the output's."""
    guard = functools.partial(writing, output, "the results") if output else contextlib.nullcontext
    with guard():
        stream = open(output, "w", newline="") if output else sys.stdout
    scored = failed = 0
    try:
        with guard():
            writer = ResultWriter(stream, fmt)
        try:
            for d in detections:
                with guard():
                    writer.write(d)
                scored += d.error is None
                failed += d.error is not None
        finally:
            with guard():
                writer.close()  # ends a JSON array even after an interruption
        if output:
            with guard():
                stream.close()
    finally:
        if output and not stream.closed:
            with contextlib.suppress(OSError):
                stream.close()
    return scored, failed


@dataclass(frozen=True)
class PredictCounts:
    """How a prediction run went: images ``scored`` and ``failed`` (unreadable), over every rank;
    ``main`` is True on the process that wrote the results."""

    scored: int
    failed: int
    main: bool


def predict_to(
    weights: str | Path,
    inputs: Sequence[str],
    *,
    fmt: str = "table",
    output: str | Path | None = None,
    recursive: bool = False,
    model_name: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    threshold: float | None = None,
    patch: PatchOptions = PatchOptions(),
    batch_size: int = 32,
    threads: int = 2,
    uncertain_band: float = DEFAULT_UNCERTAIN_BAND,
    stability: bool = False,
    allow_truncated: bool = False,
    backend: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PredictCounts:
    """Score every image that ``inputs`` name (see :func:`iter_image_paths`) and stream one row per
    image, in input order, to ``output`` (default: standard output) in ``fmt``.

    Under torchrun each rank scores its share of every chunk and rank 0 writes them all; the
    process group is left at the end. A progress bar shows on a terminal when the results do not.

    Args:
        weights: Checkpoint (ours or official); ``model_name`` names a foreign architecture.
        device, precision, threshold, patch, uncertain_band, allow_truncated, backend, max_pixels: As for
            :class:`~ssp_detect.detector.Detector`.
        stability: Score each image after common deliveries too (see :mod:`ssp_detect.stability`).
        batch_size: Images per model batch.
        threads: Decoding threads.

    Raises:
        OutputError: ``output`` cannot be written (checked before the model is loaded), or a
            write fails later (a full disk).
    """
    from tqdm import tqdm

    from ssp_detect.engine import distributed
    from ssp_detect.engine.runtime import resolve_device

    if fmt not in FORMATS:
        raise UsageError(f"Unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if batch_size < 1:  # a chunk of 0 paths would score nothing, silently
        raise UsageError(f"The batch size must be at least 1, not {batch_size}.")
    dev = distributed.setup(resolve_device(device))
    if output and distributed.is_main():
        ensure_writable_file(output, "--output")  # before the work, so that nothing scored is lost
    detector = Detector.from_checkpoint(
        weights,
        model_name=model_name,
        device=str(dev),
        precision=precision,
        threshold=threshold,
        patch=patch,
        uncertain_band=uncertain_band,
        allow_truncated=allow_truncated,
        backend=backend,
        max_pixels=max_pixels,
    )
    paths = iter_image_paths(inputs, recursive=recursive)
    # Under torchrun each rank scores its share of every chunk; rank 0 writes them in input order.
    results = distributed.sharded_map(
        paths,
        batch_size,
        lambda chunk: list(detector.predict_iter(chunk, batch_size=batch_size, workers=threads, stability=stability)),
    )
    scored = failed = 0
    if distributed.is_main():
        show_bar = sys.stderr.isatty() and (output is not None or not sys.stdout.isatty())
        scored, failed = write_results(tqdm(results, disable=not show_bar, unit="img", desc="predict"), output, fmt)
        log.info("%d image(s) scored, %d could not be read", scored, failed)
    else:
        for _ in results:  # drives this rank's share; rank 0 does the writing
            pass
    counts = distributed.all_gather_objects((scored, failed))[0]
    main = distributed.is_main()
    distributed.teardown()
    return PredictCounts(counts[0], counts[1], main)
