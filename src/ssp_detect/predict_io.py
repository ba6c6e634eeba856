"""Inputs and outputs of ``ssp predict``: expanding paths, and streaming result writers."""

from __future__ import annotations

import csv
import glob
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from ssp_detect.data.decode import GLOB_CHARS
from ssp_detect.data.layouts import list_image_files
from ssp_detect.detector import Detection

FORMATS = ("table", "csv", "json", "jsonl")


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


class ResultWriter:
    """Writes detections one by one as they arrive, in table, CSV, JSON or JSON-lines format."""

    def __init__(self, stream: IO[str], fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"Unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}.")
        self.stream, self.fmt, self.count = stream, fmt, 0
        if fmt == "csv":
            self.csv = csv.DictWriter(stream, fieldnames=list(Detection("", None, None, 0.5).to_row()))
            self.csv.writeheader()
        elif fmt == "json":
            stream.write("[")
        elif fmt == "table":
            stream.write(f"{'label':<6} {'p_fake':>7}  {'patch (x,y)':<13} path\n")

    def write(self, d: Detection) -> None:
        row = d.to_row()
        if self.fmt == "csv":
            self.csv.writerow({k: "" if v is None else v for k, v in row.items()})
        elif self.fmt == "jsonl":
            self.stream.write(json.dumps(row) + "\n")
        elif self.fmt == "json":
            self.stream.write(("," if self.count else "") + "\n  " + json.dumps(row))
        elif d.error:
            self.stream.write(f"{'ERROR':<6} {'':>7}  {'':<13} {d.source}: {d.error}\n")
        else:
            corner = f"({row['x']},{row['y']})"
            self.stream.write(f"{d.label:<6} {d.p_fake:7.4f}  {corner:<13} {d.source}\n")
        self.count += 1
        if self.stream is sys.stdout:
            self.stream.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self.stream.write("\n]\n" if self.count else "]\n")
