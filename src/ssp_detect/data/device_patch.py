"""Simple-patch selection for a batch of images, in torch, on the device that holds them.

The same choices as :func:`~ssp_detect.data.patch.select_simplest_patch`, bit for bit, whatever the
device: ``seeded`` mode copies each image's every 8th pixel (all images in one copy) to the CPU to
fingerprint it and draw the same corners; ``random`` mode draws the corners from the
generators it is given; ``exhaustive`` mode scores every position with integral images on the
device. Candidates of all images are gathered by indexing and scored in one call. Images whose
shorter side is below the patch are resized to 256x256 on the CPU with PIL first, as there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ssp_detect.data.patch import (
    FINGERPRINT_STRIDE,
    Mode,
    check_mode,
    default_num_candidates,
    exhaustive_scores_tensor,
    fingerprint_corners,
    is_small,
    random_corners,
    resize_if_small,
    texture_diversity_tensor,
)


@dataclass(frozen=True)
class PatchBatch:
    """The simple patches chosen in a batch of images.

    Attributes:
        patches: uint8 (B, 3, P, P), on the images' device.
        boxes: int64 (B, 4) on the CPU: (x, y, w, h) in the pixels that were searched (after the
            small-image resize, where ``resized`` says so).
        scores: int64 (B,) on the CPU: the patches' texture diversity.
        resized: Per image, True when it was smaller than the patch and resized to 256x256.
    """

    patches: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    resized: list[bool]


def chw_tensor(img: np.ndarray) -> torch.Tensor:
    """An (H, W, 3) uint8 array as a contiguous (3, H, W) tensor; a copy, so read-only arrays (as
    PIL gives) are fine."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def _searched_image(img: torch.Tensor, patch_size: int) -> tuple[torch.Tensor, bool]:
    """The image the patch is searched in: ``img`` itself, or its 256x256 PIL resize when small."""
    if not is_small(img.shape[1], img.shape[2], patch_size):
        return img, False
    resized, _ = resize_if_small(img.permute(1, 2, 0).cpu().numpy(), patch_size)
    return chw_tensor(resized).to(img.device), True


def _fingerprint_corners(images: Sequence[torch.Tensor], seed: int, patch_size: int, n: int) -> list[np.ndarray]:
    """Each image's :func:`~ssp_detect.data.patch.image_corners`, from one copy of all thumbnails."""
    s = FINGERPRINT_STRIDE
    thumbnails = [img[:, ::s, ::s].permute(1, 2, 0).reshape(-1) for img in images]  # channels last, as in numpy
    flat = torch.cat(thumbnails).cpu().numpy()
    pieces = np.split(flat, np.cumsum([t.numel() for t in thumbnails])[:-1])
    return [
        fingerprint_corners(piece, img.shape[1], img.shape[2], seed, patch_size, n)
        for piece, img in zip(pieces, images, strict=False)
    ]


def _crops(img: torch.Tensor, corners: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The (N, 3, P, P) crops of a (3, H, W) image at (y, x) corners, an (N, 2) tensor on its device."""
    windows = img.unfold(1, patch_size, 1).unfold(2, patch_size, 1)  # (3, H', W', P, P), a view
    return windows[:, corners[:, 0], corners[:, 1]].transpose(0, 1)


def select_patches_on_device(
    images: Sequence[torch.Tensor],
    patch_size: int = 32,
    mode: Mode = "seeded",
    *,
    num_candidates: int | None = None,
    seed: int = 0,
    rngs: Sequence[np.random.Generator] | None = None,
) -> PatchBatch:
    """Choose the simplest patch of each image, as :func:`~ssp_detect.data.patch.select_simplest_patch`
    would, with the work on the images' device.

    Args:
        images: At least one uint8 (3, H, W) tensor, sizes may differ, all on one device.
        patch_size: Side of the square patch.
        mode: ``random``, ``seeded`` or ``exhaustive``.
        num_candidates: Candidates for ``random``/``seeded``; default (256 // patch_size)^2.
        seed: Seed of ``seeded`` mode.
        rngs: One generator per image for ``random`` mode (fresh unseeded ones when None).
    """
    check_mode(mode)
    if not images:
        raise ValueError("No images were given to choose patches from; pass at least one.")
    if rngs is not None and len(rngs) != len(images):
        raise ValueError(f"Random mode needs one generator per image: {len(rngs)} for {len(images)} images.")
    searched = [_searched_image(img, patch_size) for img in images]
    images = [img for img, _ in searched]
    device = images[0].device
    if mode == "exhaustive":
        maps = [exhaustive_scores_tensor(img, patch_size).flatten() for img in images]
        flat = torch.stack([m.argmin() for m in maps])  # the first minimum in row-major order
        widths = torch.tensor([img.shape[2] - patch_size + 1 for img in images], device=device)
        corners = torch.stack([flat // widths, flat % widths], dim=1)
        scores = torch.stack([m.min() for m in maps])
        patches = torch.cat([_crops(img, c[None], patch_size) for img, c in zip(images, corners, strict=False)])
    else:
        n = num_candidates or default_num_candidates(patch_size)
        if mode == "seeded":
            drawn = np.stack(_fingerprint_corners(images, seed, patch_size, n))
        else:
            generators = rngs or [np.random.default_rng() for _ in images]
            drawn = np.stack(
                [
                    random_corners(g, img.shape[1], img.shape[2], patch_size, n)
                    for g, img in zip(generators, images, strict=False)
                ]
            )
        candidates = torch.from_numpy(drawn).to(device)  # (B, N, 2)
        crops = torch.cat(
            [_crops(img, c, patch_size) for img, c in zip(images, candidates, strict=False)]
        )  # (B * N, 3, P, P)
        all_scores = texture_diversity_tensor(crops).view(len(images), n)
        best = all_scores.argmin(dim=1)  # the first minimum: a stable choice
        rows = torch.arange(len(images), device=device)
        corners, scores = candidates[rows, best], all_scores[rows, best]
        patches = crops.view(len(images), n, *crops.shape[1:])[rows, best]
    yx_scores = torch.cat([corners, scores[:, None]], dim=1).cpu()  # one copy back
    side = torch.full((len(images),), patch_size, dtype=torch.int64)
    boxes = torch.stack([yx_scores[:, 1], yx_scores[:, 0], side, side], dim=1)
    return PatchBatch(patches=patches, boxes=boxes, scores=yx_scores[:, 2], resized=[r for _, r in searched])
