"""From a decoded image to what a model is fed: the simple patch, the whole image resized, or the
centre crop at native resolution.

Two records say how: :class:`InputSpec` is the model's side of the contract (what its weights were
trained on: input kind, sizes, normalisation), held by the model registry and stored in every
checkpoint; :class:`PatchOptions` is the user's side (how the simple patch is drawn, and any
override of the patch size or candidate count). :class:`Preprocessor` joins the two and does the
work.

Workers produce uint8 tensors (3, S, S); normalisation to the model's mean and std happens on the
model's device in :func:`normalize`, so the CPU ships 3 KB per 32x32 patch and no floats.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from ssp_detect.data.patch import (
    SMALL_IMAGE_SIZE,
    Mode,
    check_mode,
    default_num_candidates,
    resize_if_small,
    select_simplest_patch,
)
from ssp_detect.errors import UsageError

MIN_PATCH_SIZE = 8
# A region whose mean absolute difference between neighbouring pixels (per channel, in grey levels,
# over the four directions of SSP's texture score) is below this holds no noise to judge: flat or
# saturated. Measured on the demo benchmark (docs/results.md, "uncertain verdicts").
NO_TEXTURE_LEVEL = 0.1
TEXTURE_TILE = 32
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
InputKind = Literal["patch", "image", "crop"]
INPUT_KINDS: tuple[str, ...] = ("patch", "image", "crop")


@dataclass(frozen=True)
class InputSpec:
    """How a model is fed: the contract between its weights and the pixels.

    Attributes:
        input: ``patch`` (the simplest patch of the image), ``image`` (the whole image resized)
            or ``crop`` (the centre ``image_size`` square at native resolution).
        patch_size: Side of the simple patch, for ``patch`` models.
        image_size: Side the whole image is resized to, for ``image`` models; side of the crop,
            for ``crop`` models.
        num_candidates: Random candidates per image for ``patch`` models; None is the official
            (256 // patch_size)^2 (64 for 32x32).
        mean: Per-channel normalisation mean, on [0, 1] pixels.
        std: Per-channel normalisation std.
    """

    input: InputKind = "patch"
    patch_size: int = 32
    image_size: int = 256
    num_candidates: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.input not in INPUT_KINDS:
            raise ValueError(f"Unknown model input {self.input!r}; expected one of {', '.join(INPUT_KINDS)}.")
        if not MIN_PATCH_SIZE <= self.patch_size <= SMALL_IMAGE_SIZE:
            raise ValueError(
                f"The patch size must be between {MIN_PATCH_SIZE} and {SMALL_IMAGE_SIZE} pixels, not {self.patch_size}."
            )
        if self.image_size < MIN_PATCH_SIZE:
            raise ValueError(f"The image size must be at least {MIN_PATCH_SIZE} pixels, not {self.image_size}.")
        if self.num_candidates is not None and self.num_candidates < 1:
            raise ValueError(f"The candidate count must be at least 1, not {self.num_candidates}.")

    @property
    def size(self) -> int:
        """Side of the model input."""
        return self.patch_size if self.input == "patch" else self.image_size

    def to_dict(self) -> dict[str, Any]:
        """Plain types, as stored in checkpoints under ``preprocess``."""
        return {**dataclasses.asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], default: InputSpec | None = None) -> InputSpec:
        """Read a stored spec; keys it lacks come from ``default`` and keys it does not know (the
        ``name``, ``paper`` or ``patch_mode`` of older checkpoints) are ignored."""
        base = dataclasses.asdict(default or cls())
        base.update({k: v for k, v in d.items() if k in base and v is not None})
        base["mean"], base["std"] = tuple(base["mean"]), tuple(base["std"])
        return cls(**base)

    def with_options(self, options: PatchOptions) -> InputSpec:
        """This spec with the user's overrides of the patch size and candidate count."""
        return dataclasses.replace(
            self,
            patch_size=options.patch_size or self.patch_size,
            num_candidates=options.num_candidates or self.num_candidates,
        )


@dataclass(frozen=True)
class PatchOptions:
    """How the simple patch is chosen, as a user asks for it.

    Attributes:
        mode: ``seeded`` (deterministic, the default), ``exhaustive`` or ``random`` (official).
        seed: Seed of the ``seeded`` mode.
        num_candidates: Random candidates per image; None takes the checkpoint's, else the
            official (256 // patch_size)^2 (64 for 32x32).
        patch_size: Patch side; None takes the checkpoint's, else the model's (32).
    """

    mode: Mode = "seeded"
    seed: int = 0
    num_candidates: int | None = None
    patch_size: int | None = None

    def __post_init__(self) -> None:
        """Raises :class:`~ssp_detect.errors.UsageError` for a value a user cannot mean."""
        check_mode(self.mode)
        if not 0 <= self.seed < 2**64:
            raise UsageError(f"The patch seed must be a whole number from 0 to 2^64 - 1, not {self.seed}.")
        if self.num_candidates is not None and self.num_candidates < 1:
            raise UsageError(f"The candidate count must be at least 1, not {self.num_candidates}.")
        if self.patch_size is not None and not MIN_PATCH_SIZE <= self.patch_size <= SMALL_IMAGE_SIZE:
            raise UsageError(
                f"The patch size must be between {MIN_PATCH_SIZE} and {SMALL_IMAGE_SIZE} pixels, not {self.patch_size}."
            )


class FedBy:
    """What a record that holds an :class:`InputSpec` as ``feed`` says of it, by name (a model's spec,
    a preprocessor): ``input``, ``patch_size``, ``image_size``, ``num_candidates``, ``mean``,
    ``std`` and ``size``."""

    feed: InputSpec

    @property
    def input(self) -> str:
        return self.feed.input

    @property
    def patch_size(self) -> int:
        return self.feed.patch_size

    @property
    def image_size(self) -> int:
        return self.feed.image_size

    @property
    def num_candidates(self) -> int | None:
        return self.feed.num_candidates

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.feed.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.feed.std

    @property
    def size(self) -> int:
        """Side of the model input."""
        return self.feed.size


@dataclass(frozen=True)
class Prepared:
    """One preprocessed image: ``pixels`` uint8 (3, S, S), the patch ``box`` (x, y, w, h) and its
    texture ``score`` (whole-image models: the full image and -1; crop models: the crop and -1),
    the (width, height) of the image the box refers to (256x256 when a small image was resized
    first), and for patch models the (y, x) corners of the candidates that were scored (empty in
    exhaustive mode). ``texture`` is the mean texture level of the region the model reads (see
    :func:`texture_level`) and ``upscaled`` says the image was smaller than the model's patch or
    crop and was interpolated up to it."""

    pixels: np.ndarray
    box: tuple[int, int, int, int]
    score: int
    searched_size: tuple[int, int]
    candidates: np.ndarray | None = None
    kind: InputKind = "patch"
    upscaled: bool = False

    @functools.cached_property
    def texture(self) -> float:
        """The texture level of what the model reads: the patch or whole image (:func:`texture_level`),
        or a crop's simplest tiles (:func:`simplest_tiles_level`); computed when first asked for."""
        if self.kind == "patch" and self.score >= 0:
            return patch_texture_level(self.score, self.pixels.shape[-1])
        return simplest_tiles_level(self.pixels) if self.kind == "crop" else texture_level(self.pixels)

    @property
    def input_reasons(self) -> tuple[str, ...]:
        """Why the input itself makes a verdict unsafe: ``no-texture`` and/or ``upscaled``."""
        return (("no-texture",) if self.texture < NO_TEXTURE_LEVEL else ()) + (("upscaled",) if self.upscaled else ())


def texture_level(pixels: np.ndarray) -> float:
    """SSP's texture diversity of a (3, H, W) uint8 region per term: the mean absolute difference of
    neighbouring pixels in grey levels, over the channels and the four directions (0 for a flat or
    saturated region; about 1.1 sigma for Gaussian noise of std sigma)."""
    x = pixels.astype(np.int16)
    total = (
        np.abs(np.diff(x, axis=2)).sum()
        + np.abs(np.diff(x, axis=1)).sum()
        + np.abs(x[:, 1:, 1:] - x[:, :-1, :-1]).sum()
        + np.abs(x[:, 1:, :-1] - x[:, :-1, 1:]).sum()
    )
    c, h, w = x.shape
    terms = c * (h * (w - 1) + (h - 1) * w + 2 * (h - 1) * (w - 1))
    return float(total) / max(1, terms)


def texture_terms(side: int, channels: int = 3) -> int:
    """The number of absolute differences in SSP's texture score of a ``side`` x ``side`` region."""
    return channels * (2 * side * (side - 1) + 2 * (side - 1) ** 2)


def patch_texture_level(score: float, patch_size: int) -> float:
    """:func:`texture_level` of a square patch from its texture diversity score (no recomputation)."""
    return float(score) / texture_terms(patch_size)


def simplest_tiles_level(pixels: np.ndarray, tile: int = TEXTURE_TILE, share: float = 0.5) -> float:
    """The mean :func:`texture_level` of the simplest ``share`` of the ``tile`` x ``tile`` tiles of a
    (3, H, W) region: what a model that reads the simplest tiles of a crop (ssp-strata) sees."""
    c, h, w = pixels.shape
    if h < tile or w < tile:
        return texture_level(pixels)
    levels = sorted(
        texture_level(pixels[:, y : y + tile, x : x + tile])
        for y in range(0, h - tile + 1, tile)
        for x in range(0, w - tile + 1, tile)
    )
    kept = levels[: max(1, round(share * len(levels)))]
    return float(sum(kept) / len(kept))


@dataclass(frozen=True)
class Preprocessor(FedBy):
    """Turns an RGB uint8 image into model input, according to a model's :class:`InputSpec`.

    Args:
        feed: How the model is fed. Crop models take the centre square of the image at native
            resolution; an image whose shorter side is below it is first resized to
            ``image_size`` x ``image_size``, as the official code does with images smaller than
            the patch.
        mode: Patch selection mode (``random`` official, ``seeded`` or ``exhaustive``).
        seed: Seed of the ``seeded`` mode.
    """

    feed: InputSpec = InputSpec()
    mode: Mode = "seeded"
    seed: int = 0

    @classmethod
    def for_model(cls, feed: InputSpec, options: PatchOptions = PatchOptions()) -> Preprocessor:
        """The preprocessor of a model fed as ``feed`` (a registry spec's or a checkpoint's), with the
        user's patch options; an option left at None keeps the model's value."""
        return cls(feed.with_options(options), options.mode, options.seed)

    def settings(self) -> dict[str, Any]:
        """What decides the model input, as plain types (shown by the service and in reports)."""
        candidates = self.num_candidates or default_num_candidates(self.patch_size)
        return {
            "input": self.input,
            "patch_size": self.patch_size,
            "image_size": self.image_size,
            "patch_mode": self.mode,
            "num_candidates": candidates if self.input == "patch" else None,
        }

    def describe(self) -> str:
        """The model input in words, for reports."""
        if self.input == "image":
            return f"none (whole image resized to {self.image_size}x{self.image_size})"
        if self.input == "crop":
            return (
                f"none (centre {self.image_size}x{self.image_size} crop at native resolution; "
                "the model ranks its tiles itself)"
            )
        n = self.num_candidates or default_num_candidates(self.patch_size)
        how = "every position" if self.mode == "exhaustive" else f"lowest of {n} candidates"
        return f"{self.patch_size}x{self.patch_size}, {self.mode} mode (seed {self.seed}), {how}"

    def __call__(self, img: np.ndarray, rng: np.random.Generator | None = None) -> Prepared:
        if self.input == "image":
            resized = Image.fromarray(img).resize((self.image_size, self.image_size), Image.BILINEAR)
            pixels = np.asarray(resized).transpose(2, 0, 1)
            size = (img.shape[1], img.shape[0])
            pixels = np.ascontiguousarray(pixels)
            upscaled = min(img.shape[:2]) < self.image_size
            return Prepared(pixels, (0, 0, *size), -1, size, kind="image", upscaled=upscaled)
        if self.input == "crop":
            upscaled = min(img.shape[:2]) < self.image_size
            img = self.searched(img)
            height, width = img.shape[:2]
            box = ((width - self.image_size) // 2, (height - self.image_size) // 2, self.image_size, self.image_size)
            pixels = _cut(img, box)
            return Prepared(pixels, box, -1, (width, height), kind="crop", upscaled=upscaled)
        choice = select_simplest_patch(
            img, self.patch_size, self.mode, num_candidates=self.num_candidates, seed=self.seed, rng=rng
        )
        searched = (SMALL_IMAGE_SIZE, SMALL_IMAGE_SIZE) if choice.resized else (img.shape[1], img.shape[0])
        pixels = np.ascontiguousarray(choice.patch.transpose(2, 0, 1))
        return Prepared(pixels, choice.box, choice.score, searched, choice.candidates, upscaled=choice.resized)

    def same_region(self, img: np.ndarray, prepared: Prepared) -> np.ndarray:
        """The region of ``img`` that ``prepared`` was cut from, as uint8 (3, S, S).

        ``img`` must have the size of the image ``prepared`` came from (e.g. the same image
        before a blur or JPEG re-compression): ESSP's restoration target is cut this way.
        """
        if self.input == "image":
            return self(img).pixels
        return _cut(self.searched(img), prepared.box)

    def searched(self, img: np.ndarray) -> np.ndarray:
        """The image that patch and crop boxes refer to: ``img``, or ``img`` resized when it is small."""
        if self.input == "patch":
            return resize_if_small(img, self.patch_size)[0]
        if min(img.shape[:2]) >= self.image_size:
            return img
        return np.asarray(Image.fromarray(img).resize((self.image_size, self.image_size), Image.BICUBIC))


def _cut(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The (x, y, w, h) box of an (H, W, 3) image as contiguous uint8 (3, h, w)."""
    x, y, w, h = box
    return np.ascontiguousarray(img[y : y + h, x : x + w].transpose(2, 0, 1))


def normalize(pixels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> float32 normalised with mean/std on [0, 1] pixels, on pixels' device."""
    m = torch.tensor(mean, device=pixels.device, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, device=pixels.device, dtype=torch.float32).view(1, -1, 1, 1)
    return (pixels.float() / 255.0 - m) / s
