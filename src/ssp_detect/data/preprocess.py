"""From a decoded image to what a model is fed: the simple patch, the whole image resized, or the
centre crop at native resolution.

Workers produce uint8 tensors (3, S, S); normalisation to the model's mean and std happens on the
model's device in :func:`normalize`, so the CPU ships 3 KB per 32x32 patch and no floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ssp_detect.data.patch import SMALL_IMAGE_SIZE, Mode, check_mode, default_num_candidates, resize_if_small, select_simplest_patch
from ssp_detect.models.registry import ModelSpec

MIN_PATCH_SIZE = 8


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
        check_mode(self.mode)
        if self.num_candidates is not None and self.num_candidates < 1:
            raise ValueError(f"The candidate count must be at least 1, not {self.num_candidates}.")
        if self.patch_size is not None and not MIN_PATCH_SIZE <= self.patch_size <= SMALL_IMAGE_SIZE:
            raise ValueError(f"The patch size must be between {MIN_PATCH_SIZE} and {SMALL_IMAGE_SIZE} pixels, not {self.patch_size}.")



@dataclass(frozen=True)
class Prepared:
    """One preprocessed image: ``pixels`` uint8 (3, S, S), the patch ``box`` (x, y, w, h) and its
    texture ``score`` (whole-image models: the full image and -1; crop models: the crop and -1),
    and the (width, height) of the image the box refers to (256x256 when a small image was
    resized first)."""

    pixels: np.ndarray
    box: tuple[int, int, int, int]
    score: int
    searched_size: tuple[int, int]


@dataclass(frozen=True)
class Preprocessor:
    """Turns an RGB uint8 image into model input, according to a model's spec.

    Args:
        input: ``patch``, ``image`` or ``crop``.
        patch_size: Simple-patch side.
        image_size: Whole-image side (``image`` models) or crop side (``crop`` models: the centre
            square of the image at native resolution; an image whose shorter side is below it is
            first resized to ``image_size`` x ``image_size``, as the official code does with images
            smaller than the patch).
        mode: Patch selection mode (``random`` official, ``seeded`` or ``exhaustive``).
        num_candidates: Candidates for random/seeded modes (None: the official 64).
        seed: Seed of the ``seeded`` mode.
    """

    input: str = "patch"
    patch_size: int = 32
    image_size: int = 256
    mode: Mode = "seeded"
    num_candidates: int | None = None
    seed: int = 0

    @classmethod
    def for_model(cls, spec: ModelSpec | dict[str, Any], options: PatchOptions = PatchOptions()) -> Preprocessor:
        """The preprocessor of a registered model or of a checkpoint's stored preprocess dict
        (see :attr:`~ssp_detect.models.loading.LoadedModel.preprocess`), with the user's patch
        options; an option left at None keeps the stored value."""
        d = spec.preprocess_config() if isinstance(spec, ModelSpec) else spec
        return cls(
            input=d["input"],
            patch_size=options.patch_size or d["patch_size"],
            image_size=d["image_size"],
            mode=options.mode,
            num_candidates=options.num_candidates or d.get("num_candidates"),
            seed=options.seed,
        )

    @property
    def size(self) -> int:
        """Side of the model input."""
        return self.patch_size if self.input == "patch" else self.image_size

    def settings(self) -> dict[str, Any]:
        """What decides the model input, as plain types (stored in checkpoints, shown by the service)."""
        candidates = self.num_candidates or default_num_candidates(self.patch_size)
        return {"input": self.input, "patch_size": self.patch_size, "image_size": self.image_size, "patch_mode": self.mode,
                "num_candidates": candidates if self.input == "patch" else None}

    def __call__(self, img: np.ndarray, rng: np.random.Generator | None = None) -> Prepared:
        if self.input == "image":
            resized = Image.fromarray(img).resize((self.image_size, self.image_size), Image.BILINEAR)
            pixels = np.asarray(resized).transpose(2, 0, 1)
            size = (img.shape[1], img.shape[0])
            return Prepared(np.ascontiguousarray(pixels), (0, 0, *size), -1, size)
        if self.input == "crop":
            img = self.searched(img)
            height, width = img.shape[:2]
            box = ((width - self.image_size) // 2, (height - self.image_size) // 2, self.image_size, self.image_size)
            return Prepared(_cut(img, box), box, -1, (width, height))
        choice = select_simplest_patch(
            img, self.patch_size, self.mode, num_candidates=self.num_candidates, seed=self.seed, rng=rng
        )
        searched = (SMALL_IMAGE_SIZE, SMALL_IMAGE_SIZE) if choice.resized else (img.shape[1], img.shape[0])
        return Prepared(np.ascontiguousarray(choice.patch.transpose(2, 0, 1)), choice.box, choice.score, searched)

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
