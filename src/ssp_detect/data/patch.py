"""Simple-patch selection: the patch of lowest texture diversity.

Texture diversity of a patch (integer pixels, summed over R, G and B)::

    L_div = sum |x[i,j]-x[i,j+1]| + sum |x[i,j]-x[i+1,j]|
          + sum |x[i,j]-x[i+1,j+1]| + sum |x[i+1,j]-x[i,j+1]|

Modes:

* ``random``: the official behaviour. ``num_candidates`` (default (256 // patch)^2 = 64) crops with
  uniform top-left corners (torchvision RandomCrop semantics), the lowest score kept (first on
  ties). Results change with the random state.
* ``seeded``: the same draw, but from numpy's generator seeded by ``seed`` and the image's own
  pixels (:func:`image_corners`), so one image always gets the same patch, whatever the batch,
  worker or order. The draw is computed by a compiled equivalent of numpy's
  (:mod:`ssp_detect.data.seeded_draw`), bit for bit, without building a generator per image.
* ``exhaustive``: the true minimum over every position (first in row-major order on ties),
  computed with integral images of the four difference maps.

Images whose shorter side is below the patch size are first resized to 256x256 (bicubic), as in
the official code.

Candidates are scored in place by a compiled loop (:mod:`ssp_detect.data.texture_kernel`); the
torch forms (:func:`texture_diversity_tensor`, :func:`exhaustive_scores_tensor`) serve the
exhaustive mode and the batched selection on a GPU in :mod:`ssp_detect.data.device_patch`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ssp_detect.constants import MODES
from ssp_detect.errors import UsageError

Mode = Literal["random", "seeded", "exhaustive"]
SMALL_IMAGE_SIZE = 256
FINGERPRINT_STRIDE = 8


@dataclass(frozen=True)
class PatchChoice:
    """The chosen simple patch.

    Attributes:
        patch: The patch, uint8 (P, P, 3).
        box: (x, y, w, h) in the pixels of the image that was searched (after the small-image
            resize, if any; ``resized`` says so).
        score: Its texture diversity.
        resized: True when the image was smaller than the patch and was resized to 256x256.
        candidates: (N, 2) array of the (y, x) corners that were scored; empty for exhaustive.
    """

    patch: np.ndarray
    box: tuple[int, int, int, int]
    score: int
    resized: bool
    candidates: np.ndarray


def texture_diversity_tensor(patches: torch.Tensor) -> torch.Tensor:
    """Texture diversity of each patch of an (N, C, P, P) uint8 tensor, int64 (N,) on its device.

    Computed in float32 with torch's vectorised kernels: exact, because every partial sum is an
    integer below 2^24, whatever the summation order; float64 when a patch is so large that its
    score could exceed that.
    """
    _, c, p, _ = patches.shape
    exact_in_float32 = 4 * c * p * (p - 1) * 255 < 2**24
    x = patches.to(torch.float32 if exact_in_float32 else torch.float64)
    total = (
        (x[..., :, 1:] - x[..., :, :-1]).abs_().sum((1, 2, 3))  # horizontal
        + (x[..., 1:, :] - x[..., :-1, :]).abs_().sum((1, 2, 3))  # vertical
        + (x[..., 1:, 1:] - x[..., :-1, :-1]).abs_().sum((1, 2, 3))  # diagonal
        + (x[..., 1:, :-1] - x[..., :-1, 1:]).abs_().sum((1, 2, 3))  # anti-diagonal
    )
    return total.to(torch.int64)


def candidate_scores(img: np.ndarray, corners: np.ndarray, patch_size: int) -> np.ndarray:
    """Texture diversity of the patch_size crop at each (y, x) corner of an (H, W, C) uint8 image,
    int64 (N,), scored in place by the compiled loop (numba loads on the first call). Raises
    ValueError when a crop would leave the image."""
    from ssp_detect.data import texture_kernel  # lazily: numba takes a moment to import

    return texture_kernel.candidate_scores(img, corners, patch_size)


def texture_diversity_batch(patches: np.ndarray) -> np.ndarray:
    """Texture diversity of each patch of an (N, P, P, C) uint8 batch (channels last), int64 (N,)."""
    n, p = patches.shape[:2]
    corners = np.stack([np.arange(n) * p, np.zeros(n, np.int64)], axis=1)
    return candidate_scores(patches.reshape(n * p, *patches.shape[2:]), corners, p)


def texture_diversity(patch: np.ndarray) -> int:
    """Texture diversity of one (P, P, C) uint8 patch (channels last, as decoded)."""
    return int(texture_diversity_batch(patch[None])[0])


def _box_sums(values: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Sum of every rows x cols window of a 2-D integer tensor, via an integral image (int64)."""
    integral = F.pad(values.cumsum(0, dtype=torch.int64).cumsum(1), (1, 0, 1, 0))
    return integral[rows:, cols:] - integral[:-rows, cols:] - integral[rows:, :-cols] + integral[:-rows, :-cols]


def exhaustive_scores_tensor(img: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Texture diversity of the patch at every top-left (y, x) of a (C, H, W) uint8 image tensor:
    shape (H-P+1, W-P+1), int64, on the image's device."""
    x = img.to(torch.int16)
    p = patch_size
    horizontal = (x[:, :, :-1] - x[:, :, 1:]).abs_().sum(0, dtype=torch.int32)
    vertical = (x[:, :-1, :] - x[:, 1:, :]).abs_().sum(0, dtype=torch.int32)
    diagonal = (x[:, :-1, :-1] - x[:, 1:, 1:]).abs_().sum(0, dtype=torch.int32)
    anti_diagonal = (x[:, 1:, :-1] - x[:, :-1, 1:]).abs_().sum(0, dtype=torch.int32)
    return (
        _box_sums(horizontal, p, p - 1)
        + _box_sums(vertical, p - 1, p)
        + _box_sums(diagonal + anti_diagonal, p - 1, p - 1)
    )


def exhaustive_scores(img: np.ndarray, patch_size: int) -> np.ndarray:
    """Texture diversity of the patch at every top-left (y, x) of an (H, W, C) uint8 image: shape
    (H-P+1, W-P+1), int64; see :func:`exhaustive_scores_tensor`."""
    return exhaustive_scores_tensor(
        torch.from_numpy(np.require(img, requirements="W")).permute(2, 0, 1), patch_size
    ).numpy()


def check_mode(mode: str) -> None:
    """Raise a one-sentence :class:`~ssp_detect.errors.UsageError` for an unknown patch mode."""
    if mode not in MODES:
        raise UsageError(f"Unknown patch mode {mode!r}; choose one of {', '.join(MODES)}.")


def is_small(height: int, width: int, patch_size: int) -> bool:
    """True when the official small-image rule applies: the shorter side is below the patch."""
    return min(height, width) < patch_size


def resize_if_small(img: np.ndarray, patch_size: int) -> tuple[np.ndarray, bool]:
    """Apply the official small-image rule: shorter side below the patch -> 256x256 bicubic."""
    if not is_small(img.shape[0], img.shape[1], patch_size):
        return img, False
    resized = Image.fromarray(img).resize((SMALL_IMAGE_SIZE, SMALL_IMAGE_SIZE), Image.BICUBIC)
    return np.asarray(resized), True


def default_num_candidates(patch_size: int) -> int:
    """The official candidate count, (256 // patch_size)^2 (64 for 32x32 patches)."""
    return max(1, (SMALL_IMAGE_SIZE // patch_size) ** 2)


def image_corners(img: np.ndarray, seed: int, patch_size: int, n: int) -> np.ndarray:
    """Seeded mode's n candidate corners (y, x) of an (H, W, C) image, an (n, 2) int64 array,
    determined by ``seed`` and the image's pixels alone.

    The fingerprint is a CRC of every 8th pixel in each direction plus the size: cheap, and two
    images that share it merely share their draws.
    """
    # Viewing each pixel as one 3-byte item makes the strided copy about twice as fast.
    pixels = img.view(np.dtype((np.void, img.shape[2]))) if img.flags.c_contiguous else img
    return fingerprint_corners(
        pixels[::FINGERPRINT_STRIDE, ::FINGERPRINT_STRIDE], img.shape[0], img.shape[1], seed, patch_size, n
    )


def fingerprint_corners(
    thumbnail: np.ndarray, height: int, width: int, seed: int, patch_size: int, n: int
) -> np.ndarray:
    """The corners of :func:`image_corners`, from the image's ``img[::8, ::8]`` (channels last, any
    memory layout, or its contiguous bytes flattened) and its size: what an image held elsewhere,
    e.g. on a GPU, needs to copy to the CPU to get the same draw.

    They are ``np.random.default_rng([seed, crc, height, width])``'s draws
    (``integers(0, height - P + 1, size=n)``, then the same for x), computed by the compiled
    equivalent in :mod:`ssp_detect.data.seeded_draw`.
    """
    from ssp_detect.data import seeded_draw  # lazily: numba takes a moment to import

    digest = zlib.crc32(np.ascontiguousarray(thumbnail).data)
    return seeded_draw.seeded_corners(seed, digest, height, width, patch_size, n)


def random_corners(rng: np.random.Generator, height: int, width: int, patch_size: int, n: int) -> np.ndarray:
    """Draw n uniform top-left corners (y, x) of patch_size crops, as an (n, 2) int array."""
    ys = rng.integers(0, height - patch_size + 1, size=n)
    xs = rng.integers(0, width - patch_size + 1, size=n)
    return np.stack([ys, xs], axis=1)


def select_simplest_patch(
    img: np.ndarray,
    patch_size: int = 32,
    mode: Mode = "seeded",
    *,
    num_candidates: int | None = None,
    seed: int = 0,
    rng: np.random.Generator | None = None,
) -> PatchChoice:
    """Choose the simplest (lowest texture diversity) patch of an RGB uint8 image.

    Args:
        img: (H, W, 3) uint8.
        patch_size: Side of the square patch.
        mode: ``random``, ``seeded`` or ``exhaustive`` (see the module docstring).
        num_candidates: Candidates for ``random``/``seeded``; default (256 // patch_size)^2.
        seed: Seed of ``seeded`` mode.
        rng: Generator for ``random`` mode (a fresh unseeded one when None).
    """
    check_mode(mode)
    img, resized = resize_if_small(img, patch_size)
    if mode == "exhaustive":
        scores = exhaustive_scores(img, patch_size)
        flat = int(np.argmin(scores))
        y, x = divmod(flat, scores.shape[1])
        corners = np.zeros((0, 2), dtype=np.int64)
        score = int(scores[y, x])
    else:
        n = num_candidates or default_num_candidates(patch_size)
        if mode == "seeded":
            corners = image_corners(img, seed, patch_size, n)
        else:
            corners = random_corners(rng or np.random.default_rng(), img.shape[0], img.shape[1], patch_size, n)
        scores = candidate_scores(img, corners, patch_size)
        best = int(np.argmin(scores))  # argmin returns the first minimum: a stable choice
        y, x = (int(v) for v in corners[best])
        score = int(scores[best])
    patch = np.ascontiguousarray(img[y : y + patch_size, x : x + patch_size])
    return PatchChoice(
        patch=patch, box=(x, y, patch_size, patch_size), score=score, resized=resized, candidates=corners
    )
