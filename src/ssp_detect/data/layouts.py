"""Finding labelled images on disk: GenImage, ForenSynths, a pair of folders, or a CSV manifest.

Every layout yields :class:`Sample` records with our labels (real = 0, fake = 1) and the subset
(generator) each image belongs to.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssp_detect.constants import LAYOUTS
from ssp_detect.data.decode import is_image_file
from ssp_detect.errors import SSPError

log = logging.getLogger(__name__)

REAL, FAKE = 0, 1

GENIMAGE_SUBSETS: dict[str, str] = {
    "adm": "imagenet_ai_0508_adm",
    "biggan": "imagenet_ai_0419_biggan",
    "glide": "imagenet_glide",
    "midjourney": "imagenet_midjourney",
    "sdv4": "imagenet_ai_0419_sdv4",
    "sdv5": "imagenet_ai_0424_sdv5",
    "vqdm": "imagenet_ai_0419_vqdm",
    "wukong": "imagenet_ai_0424_wukong",
    "dalle2": "imagenet_DALLE2",
}
_REAL_WORDS = {"real", "nature", "0", "0_real"}
_FAKE_WORDS = {"fake", "ai", "1", "1_fake"}


class DatasetError(SSPError, ValueError):
    """A data location or manifest that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Sample:
    """One labelled image: ``path``, ``label`` (0 real, 1 fake) and ``subset`` (generator).

    When a data manifest records them: ``jpeg_quality`` and ``jpeg_subsampling`` are the JPEG
    history of a file not stored as JPEG (e.g. a PNG crop of a JPEG photo), ``source`` names
    the photo the image was made from (crops of one photo, and a fake made from a crop, are not
    independent samples), and ``collection`` the collection that photo came from (a package, a
    camera, a site: what a leave-one-source-out protocol holds out whole).
    """

    path: str
    label: int
    subset: str
    jpeg_quality: int | None = None
    source: str | None = None
    jpeg_subsampling: str | None = None
    collection: str | None = None

    @property
    def group(self) -> str:
        """What a bootstrap draws whole: the source photo when known, else the image itself."""
        return self.source or self.path


def has_jpeg_history(sample: Sample) -> bool:
    """True when the image was JPEG-compressed at some point: stored as JPEG, or so recorded."""
    return sample.jpeg_quality is not None or Path(sample.path).suffix.lower() in {".jpg", ".jpeg", ".jfif"}


def manifest_records(root: Path) -> dict[str, dict[str, Any]]:
    """What ``<root>/manifest.json`` (written by ``ssp data build-demo``) records of each image:
    relative path -> the :class:`Sample` fields ``jpeg_quality``, ``jpeg_subsampling``, ``source``
    (the photo) and ``collection`` (its package), each None when not recorded. Empty when there is
    no such manifest."""
    path = root / "manifest.json"
    if not path.is_file():
        return {}
    try:
        images = json.loads(path.read_text()).get("images", [])
    except (json.JSONDecodeError, AttributeError):
        return {}
    return {
        r["path"]: {
            "jpeg_quality": int(r["jpeg_quality"]) if r.get("jpeg_quality") else None,
            "jpeg_subsampling": r.get("jpeg_subsampling") or None,
            "source": r.get("photo_id") or None,
            "collection": r["source"].get("package") or None if isinstance(r.get("source"), dict) else None,
        }
        for r in images
        if isinstance(r, dict) and r.get("path")
    }


def _may_be_images(name: str) -> bool:
    """A broken link's name that could stand for an image or a folder of them."""
    return not Path(name).suffix or is_image_file(name)


def list_image_files(folder: str | Path, *, recursive: bool = True) -> list[str]:
    """The image files in ``folder`` (in all its subfolders with ``recursive``), sorted.

    Symlinked folders are followed, each real folder once (so a link back to a parent adds nothing
    and ends no walk in a loop). A broken link (dangling, or looping on itself) named like an image
    or with no extension is listed too, so that it is reported as unreadable rather than skipped;
    so is a subfolder that cannot be listed (permission denied).
    """
    found: list[str] = []
    seen: set[str] = set()
    pending = [str(folder)]  # depth first, in name order: which of two links to a folder is listed is fixed
    while pending:
        current = pending.pop()
        real = os.path.realpath(current)
        if real in seen:
            log.debug("%s: already listed as %s", current, real)
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except PermissionError:
            found.append(current)
            continue
        subfolders = []
        for entry in entries:
            try:
                is_dir, is_file = entry.is_dir(), entry.is_file()
            except OSError:  # e.g. a link that loops on itself
                is_dir = is_file = False
            if is_dir:
                subfolders.append(entry.path)
            elif is_file:
                if is_image_file(entry.name):
                    found.append(entry.path)
            elif entry.is_symlink() and _may_be_images(entry.name):
                found.append(entry.path)
        if recursive:
            pending += reversed(subfolders)
    return sorted(found)


def _images_in(folder: Path) -> list[Path]:
    return [Path(p) for p in list_image_files(folder)]


def _subset_name(folder_name: str) -> str:
    short = {v: k for k, v in GENIMAGE_SUBSETS.items()}
    return short.get(folder_name, folder_name)


def genimage_subset_dirs(root: Path) -> list[Path]:
    """Subset folders of a GenImage root: those holding ``<split>/{ai,nature}``."""
    return sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and any((s / "ai").is_dir() or (s / "nature").is_dir() for s in d.iterdir() if s.is_dir())
    )


def resolve_genimage_subsets(root: Path, names: Sequence[str] | None) -> list[Path]:
    """Map short names (``sdv4``) or folder names to subset folders; all of them when None."""
    available = genimage_subset_dirs(root)
    if not available:
        raise DatasetError(f"{root} has no GenImage subset folders (<subset>/<split>/{{ai,nature}}).")
    if not names:
        return available
    by_name = {d.name: d for d in available} | {_subset_name(d.name): d for d in available}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise DatasetError(
            f"Subset(s) {', '.join(missing)} not found under {root}; available: "
            f"{', '.join(sorted(_subset_name(d.name) for d in available))}."
        )
    return [by_name[n] for n in names]


def genimage_samples(root: str | Path, split: str, subsets: Sequence[str] | None = None) -> list[Sample]:
    """Samples of ``<root>/<subset>/<split>/{ai,nature}``; subsets by short or folder name."""
    root = Path(root)
    recorded = manifest_records(root)
    samples: list[Sample] = []
    for d in resolve_genimage_subsets(root, subsets):
        split_dir = d / split
        if not split_dir.is_dir():
            raise DatasetError(
                f"{d} has no '{split}' split folder; splits there: "
                f"{', '.join(sorted(p.name for p in d.iterdir() if p.is_dir()))}."
            )
        name = _subset_name(d.name)
        for folder, label in (("nature", REAL), ("ai", FAKE)):
            if (split_dir / folder).is_dir():
                samples += [
                    Sample(str(p), label, name, **recorded.get(p.relative_to(root).as_posix(), {}))
                    for p in _images_in(split_dir / folder)
                ]
    return samples


def _forensynths_label_dirs(folder: Path) -> Iterable[tuple[Path, int]]:
    for p in sorted(folder.rglob("*")):
        if p.is_dir() and p.name in ("0_real", "1_fake"):
            yield p, REAL if p.name == "0_real" else FAKE


def forensynths_samples(root: str | Path, generators: Sequence[str] | None = None) -> list[Sample]:
    """Samples of ``<root>/<generator>/[<class>/]{0_real,1_fake}``.

    A root that itself holds ``0_real``/``1_fake`` (directly or under class folders) is one subset
    named after the root.
    """
    root = Path(root)
    direct = any(p.name in ("0_real", "1_fake") for p in root.iterdir() if p.is_dir())
    groups = {root.name: root} if direct else {p.name: p for p in sorted(root.iterdir()) if p.is_dir()}
    if generators:
        missing = [g for g in generators if g not in groups]
        if missing:
            raise DatasetError(
                f"Generator folder(s) {', '.join(missing)} not found under {root}; available: "
                f"{', '.join(sorted(groups))}."
            )
        groups = {g: groups[g] for g in generators}
    samples = [
        Sample(str(img), label, name)
        for name, folder in groups.items()
        for label_dir, label in _forensynths_label_dirs(folder)
        for img in _images_in(label_dir)
    ]
    if not samples:
        raise DatasetError(f"{root} holds no images under 0_real/1_fake folders.")
    return samples


def folder_pair_samples(real_dir: str | Path, fake_dir: str | Path, subset: str = "custom") -> list[Sample]:
    """Every image under ``real_dir`` (label 0) and ``fake_dir`` (label 1)."""
    out: list[Sample] = []
    for folder, label in ((Path(real_dir), REAL), (Path(fake_dir), FAKE)):
        if not folder.is_dir():
            raise DatasetError(f"Folder {folder} does not exist.")
        out += [Sample(str(p), label, subset) for p in _images_in(folder)]
    return out


def parse_label(value: str) -> int:
    """Read a label word (real/fake, nature/ai, 0/1, 0_real/1_fake), case-insensitive."""
    v = value.strip().lower()
    if v in _REAL_WORDS:
        return REAL
    if v in _FAKE_WORDS:
        return FAKE
    raise ValueError(f"label {value!r} is not one of real/fake, nature/ai, 0/1")


def csv_samples(path: str | Path) -> list[Sample]:
    """Samples of a CSV with a header ``path,label[,generator]``; relative paths are taken
    relative to the CSV's folder."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"CSV manifest {path} does not exist.")
    out: list[Sample] = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise DatasetError(
                f"CSV manifest {path} needs a header with the columns path,label (and optionally generator)."
            )
        for line, row in enumerate(reader, start=2):
            try:
                label = parse_label(row["label"] or "")
            except ValueError as exc:
                raise DatasetError(f"{path}, line {line}: {exc}.") from exc
            p = Path(row["path"])
            out.append(
                Sample(
                    str(p if p.is_absolute() else path.parent / p),
                    label,
                    (row.get("generator") or "").strip() or "custom",
                )
            )
    return out


def detect_layout(root: Path) -> str:
    """Guess the layout of a data location."""
    if root.is_file() and root.suffix.lower() == ".csv":
        return "csv"
    if root.is_dir():
        if genimage_subset_dirs(root):
            return "genimage"
        if any(p.name in ("0_real", "1_fake") for p in root.rglob("*") if p.is_dir()):
            return "forensynths"
    raise DatasetError(
        f"Cannot tell the layout of {root}: expected a GenImage root (<subset>/<split>/{{ai,nature}}), "
        "a ForenSynths root (0_real/1_fake folders), or a .csv manifest; or pass --real and --fake."
    )


def load_samples(
    data: str | Path | None = None,
    *,
    layout: str = "auto",
    split: str = "val",
    subsets: Sequence[str] | None = None,
    real: str | Path | None = None,
    fake: str | Path | None = None,
) -> list[Sample]:
    """Samples from any supported layout.

    Args:
        data: GenImage or ForenSynths root, or a CSV manifest.
        layout: One of ``auto``, ``genimage``, ``forensynths``, ``folders``, ``csv``.
        split: GenImage split folder (``train``, ``val``, ...).
        subsets: GenImage subsets (short or folder names) or ForenSynths generators.
        real, fake: Folders of real and fake images (the ``folders`` layout).
    """
    if layout not in LAYOUTS:
        raise DatasetError(f"Unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}.")
    if real is not None or fake is not None or layout == "folders":
        if real is None or fake is None:
            raise DatasetError("The folders layout needs both --real DIR and --fake DIR.")
        samples = folder_pair_samples(real, fake)
    else:
        if data is None:
            raise DatasetError("No data given: pass --data PATH, or --real DIR and --fake DIR.")
        root = Path(data)
        if not root.exists():
            raise DatasetError(f"Data location {root} does not exist.")
        kind = detect_layout(root) if layout == "auto" else layout
        if kind == "genimage":
            samples = genimage_samples(root, split, subsets)
        elif kind == "forensynths":
            samples = forensynths_samples(root, subsets)
        else:
            samples = csv_samples(root)
    if not samples:
        raise DatasetError("The data location holds no images with a known extension.")
    return samples
