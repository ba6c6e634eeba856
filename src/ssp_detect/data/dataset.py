"""A map-style dataset of labelled images that yields model inputs, never silently substituting.

An unreadable image yields an error record instead of pixels; :func:`collate` drops it from the
batch and keeps ``(index, message)`` so the run can count, log and report it.

Items hold ``pixels`` (uint8 (3, S, S)), ``label``, ``box`` and ``score``; with
``restoration_targets=True`` also ``clean_pixels`` (the same region before the augmentation's blur
and JPEG, uint8 (3, S, S)) and ``degradation`` (float32 (2,): blurred, JPEG-compressed), the
supervision of ESSP's perception and enhancement modules.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ssp_detect.data.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from ssp_detect.data.degradations import Degradation, TrainAugment
from ssp_detect.data.layouts import Sample, has_jpeg_history
from ssp_detect.data.preprocess import Preprocessor


class DetectionDataset(Dataset):
    """Decodes, optionally augments, and preprocesses each sample.

    Random draws (augmentation, ``random`` patch mode when training) come from a generator seeded by
    ``(seed, epoch, index)``: a run is reproducible and resumable whatever the worker count.

    Args:
        samples: The images and labels.
        preprocessor: Patch or whole-image preprocessing.
        augment: Training augmentation, applied to the whole image before patch selection.
        degradation: A fixed degradation applied to every image before patch selection (after
            ``augment``), for robustness evaluation.
        restoration_targets: Add ``clean_pixels`` and ``degradation`` to each item (see the
            module docstring); for training, so not together with ``degradation``.
        seed: Base seed of the per-item generators.
        max_pixels: Decompression-bomb limit.
        input_checks: Add each item's ``texture`` level and ``upscaled`` and ``truncated`` flags
            (what makes a verdict ``uncertain`` whatever the model says; see :mod:`ssp_detect.verdict`).
        allow_truncated: Score images whose data ends early (the decoder makes the rest up) instead
            of listing them as unreadable.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        preprocessor: Preprocessor,
        *,
        augment: TrainAugment | None = None,
        degradation: Degradation | None = None,
        restoration_targets: bool = False,
        seed: int = 0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        input_checks: bool = False,
        allow_truncated: bool = False,
    ) -> None:
        if restoration_targets and degradation is not None:
            raise ValueError(
                "Restoration targets describe the training augmentation; do not combine them with a fixed "
                "evaluation degradation."
            )
        self.samples = list(samples)
        self.preprocessor = preprocessor
        self.augment = augment if augment is not None and augment.active else None
        self.degradation = degradation if degradation is not None and not degradation.is_identity else None
        self.restoration_targets = restoration_targets
        self.seed = seed
        # Shared memory: persistent DataLoader workers hold their own copy of the dataset, and
        # must still see the epoch that set_epoch selects (else every epoch replays epoch 0's draws).
        self._epoch = multiprocessing.RawValue("q", 0)
        self.max_pixels = max_pixels
        self.input_checks = input_checks
        self.allow_truncated = allow_truncated

    @property
    def epoch(self) -> int:
        """The epoch whose random draws the items use."""
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws the items use, also in running worker processes."""
        self._epoch.value = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        try:
            decoded = decode_image(sample.path, max_pixels=self.max_pixels, allow_truncated=self.allow_truncated)
        except ImageDecodeError as exc:
            return {"index": index, "error": str(exc)}
        img = decoded.pixels
        needs_rng = self.augment is not None or self.degradation is not None or self.preprocessor.mode == "random"
        rng = item_rng(self.seed, self.epoch, index) if needs_rng else None
        source, applied = img, (False, False)
        if self.augment is not None:
            augmented = self.augment.apply(img, rng, label=sample.label, stored_as_jpeg=has_jpeg_history(sample))
            img, source, applied = augmented.image, augmented.source, (augmented.blurred, augmented.jpeg)
        if self.degradation is not None:
            img = self.degradation(img, rng)
        prepared = self.preprocessor(img, rng)
        item = {
            "index": index,
            "pixels": torch.from_numpy(prepared.pixels),
            "label": sample.label,
            "box": prepared.box,
            "score": prepared.score,
        }
        if self.input_checks:
            item["texture"], item["upscaled"], item["truncated"] = (
                prepared.texture,
                prepared.upscaled,
                decoded.truncated,
            )
        if self.restoration_targets:
            clean = prepared.pixels if source is img else self.preprocessor.same_region(source, prepared)
            item["clean_pixels"] = torch.from_numpy(clean)
            item["degradation"] = torch.tensor(applied, dtype=torch.float32)
        return item


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random generator of one item's draws in one epoch, the same in any worker or order."""
    return np.random.default_rng([seed, epoch, index])


def split_errors(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """The good items, and the failed ones as (index, message)."""
    return [it for it in items if "error" not in it], [(it["index"], it["error"]) for it in items if "error" in it]


def empty_batch(errors: list[tuple[int, str]]) -> dict[str, Any]:
    """A batch without images (``pixels`` None) that carries only its ``errors``."""
    return {
        "pixels": None,
        "label": torch.zeros(0),
        "index": torch.zeros(0, dtype=torch.long),
        "box": torch.zeros(0, 4, dtype=torch.long),
        "score": torch.zeros(0, dtype=torch.long),
        "errors": errors,
    }


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the good items; keep the failed ones as ``errors`` [(index, message)]."""
    good, errors = split_errors(items)
    if not good:
        return empty_batch(errors)
    batch = {
        "pixels": torch.stack([it["pixels"] for it in good]),
        "label": torch.tensor([it["label"] for it in good], dtype=torch.float32),
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "box": torch.tensor([it["box"] for it in good], dtype=torch.long),
        "score": torch.tensor([it["score"] for it in good], dtype=torch.long),
        "errors": errors,
    }
    for key in ("clean_pixels", "degradation"):
        if key in good[0]:
            batch[key] = torch.stack([it[key] for it in good])
    if "texture" in good[0]:
        batch["texture"] = torch.tensor([it["texture"] for it in good], dtype=torch.float64)
        batch["upscaled"] = torch.tensor([it["upscaled"] for it in good], dtype=torch.bool)
        batch["truncated"] = torch.tensor([it["truncated"] for it in good], dtype=torch.bool)
    return batch


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
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]] = collate,
) -> DataLoader:
    """A DataLoader with our collate (or ``collate_fn``), persistent workers and prefetching when
    workers > 0."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        generator=generator,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        drop_last=drop_last,
    )
