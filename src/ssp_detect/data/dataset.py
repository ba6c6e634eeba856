"""A map-style dataset of labelled images that yields model inputs, never silently substituting.

An unreadable image yields an error record instead of pixels; :func:`collate` drops it from the
batch and keeps ``(index, message)`` so the run can count, log and report it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ssp_detect.data.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, load_rgb
from ssp_detect.data.degradations import TrainAugment
from ssp_detect.data.layouts import Sample
from ssp_detect.data.preprocess import Preprocessor

JPEG_SUFFIXES = frozenset({".jpg", ".jpeg", ".jfif"})


def is_jpeg_file(path: str | Path) -> bool:
    """True when the file name says JPEG."""
    return Path(path).suffix.lower() in JPEG_SUFFIXES


class DetectionDataset(Dataset):
    """Decodes, optionally augments, and preprocesses each sample.

    Random draws (augmentation, ``random`` patch mode when training) come from a generator seeded by
    ``(seed, epoch, index)``: a run is reproducible and resumable whatever the worker count.

    Args:
        samples: The images and labels.
        preprocessor: Patch or whole-image preprocessing.
        augment: Training augmentation, applied to the whole image before patch selection.
        seed: Base seed of the per-item generators.
        max_pixels: Decompression-bomb limit.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        preprocessor: Preprocessor,
        *,
        augment: TrainAugment | None = None,
        seed: int = 0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.samples = list(samples)
        self.preprocessor = preprocessor
        self.augment = augment if augment is not None and augment.active else None
        self.seed = seed
        self.epoch = 0
        self.max_pixels = max_pixels

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws the items use."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        try:
            img = load_rgb(sample.path, max_pixels=self.max_pixels)
        except ImageDecodeError as exc:
            return {"index": index, "error": str(exc)}
        needs_rng = self.augment is not None or self.preprocessor.mode == "random"
        rng = np.random.default_rng([self.seed, self.epoch, index]) if needs_rng else None
        if self.augment is not None:
            img = self.augment(img, rng, label=sample.label, stored_as_jpeg=is_jpeg_file(sample.path))
        prepared = self.preprocessor(img, rng)
        return {
            "index": index,
            "pixels": torch.from_numpy(prepared.pixels),
            "label": sample.label,
            "box": prepared.box,
            "score": prepared.score,
        }


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the good items; keep the failed ones as ``errors`` [(index, message)]."""
    good = [it for it in items if "error" not in it]
    errors = [(it["index"], it["error"]) for it in items if "error" in it]
    if not good:
        return {"pixels": None, "label": torch.zeros(0), "index": torch.zeros(0, dtype=torch.long),
                "box": torch.zeros(0, 4, dtype=torch.long), "score": torch.zeros(0, dtype=torch.long), "errors": errors}
    return {
        "pixels": torch.stack([it["pixels"] for it in good]),
        "label": torch.tensor([it["label"] for it in good], dtype=torch.float32),
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "box": torch.tensor([it["box"] for it in good], dtype=torch.long),
        "score": torch.tensor([it["score"] for it in good], dtype=torch.long),
        "errors": errors,
    }


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    workers: int,
    shuffle: bool = False,
    sampler: Sampler | None = None,
    generator: torch.Generator | None = None,
    pin_memory: bool = False,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with our collate, persistent workers and prefetching when workers > 0."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        generator=generator,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        drop_last=drop_last,
    )
