"""A faithful re-implementation of the official SSP pipeline, written from the paper (Chen, Yao, Niu,
"A Single Simple Patch is All You Need for AI-generated Image Detection", arXiv 2402.01123) and the
defaults of its official code release, independently of ssp_detect's own code.

It serves two purposes: tests compare ssp_detect against it (patch choice, logits), and the
benchmarks time it against ssp_detect on the same files. It keeps the official conventions:
labels real = 1, fake = 0 (its logit is the log-odds of *real*), per-crop PIL ``RandomCrop`` with
the global torch RNG, one numpy score per crop, a stable sort, ToTensor + Normalize.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.models import resnet50

PATCH = 32
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def official_texture_score(patch: np.ndarray) -> int:
    """Texture diversity of one HxWx3 patch, as four explicit difference sums over int values."""
    x = patch.astype(np.int64)
    res = 0
    res += np.sum(np.abs(x[:, :-1, :] - x[:, 1:, :]))  # horizontal
    res += np.sum(np.abs(x[:-1, :, :] - x[1:, :, :]))  # vertical
    res += np.sum(np.abs(x[:-1, :-1, :] - x[1:, 1:, :]))  # diagonal
    res += np.sum(np.abs(x[1:, :-1, :] - x[:-1, 1:, :]))  # anti-diagonal
    return int(res)


def official_crop_boxes(
    width: int, height: int, n: int, generator: torch.Generator | None = None
) -> list[tuple[int, int]]:
    """n (top, left) corners drawn like torchvision's RandomCrop.get_params (top first)."""
    boxes = []
    for _ in range(n):
        i = int(torch.randint(0, height - PATCH + 1, size=(1,), generator=generator).item())
        j = int(torch.randint(0, width - PATCH + 1, size=(1,), generator=generator).item())
        boxes.append((i, j))
    return boxes


def official_select_patch(
    img: Image.Image, generator: torch.Generator | None = None
) -> tuple[Image.Image, tuple[int, int], int]:
    """The official simple patch: 64 PIL crops, each scored, the lowest kept (stable sort).

    Returns the patch, its (top, left) corner and its score.
    """
    if min(img.size) < PATCH:
        img = img.resize((256, 256))
    n = (256 // PATCH) ** 2
    boxes = official_crop_boxes(img.size[0], img.size[1], n, generator)
    crops = [img.crop((j, i, j + PATCH, i + PATCH)) for i, j in boxes]
    scores = [official_texture_score(np.array(c)) for c in crops]
    order = sorted(range(n), key=lambda k: scores[k])  # Python's sort is stable
    best = order[0]
    return crops[best], boxes[best], scores[best]


official_transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


class OfficialSRM(nn.Module):
    """The SRM conv: weight (3, 3, 5, 5), output channel k = filter k on each input channel."""

    def __init__(self) -> None:
        super().__init__()
        f1 = [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]]
        f2 = [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]]
        f3 = [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
        k = np.zeros((3, 3, 5, 5), dtype=np.float32)
        for c in range(3):
            k[0, c] = np.array(f1) / 4.0
            k[1, c] = np.array(f2) / 12.0
            k[2, c] = np.array(f3) / 2.0
        self.kernel = nn.Parameter(torch.from_numpy(k), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, stride=1, padding=2)


class OfficialSSP(nn.Module):
    """The official model: upsample to 256, SRM, Hardtanh(-3, 3), ResNet-50 with one logit
    (log-odds of *real*)."""

    def __init__(self) -> None:
        super().__init__()
        self.srm = OfficialSRM()
        self.disc = resnet50(weights=None, num_classes=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False)
        x = F.hardtanh(self.srm(x), -3, 3)
        return self.disc(x)


class OfficialDataset(Dataset):
    """The official data path: PIL open, RGB, simple patch from 64 PIL crops, ToTensor, Normalize.

    Labels follow the official convention (real = 1)."""

    def __init__(self, paths: list[str], labels_fake: list[int]) -> None:
        self.paths, self.labels = paths, [1 - y for y in labels_fake]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = Image.open(self.paths[i]).convert("RGB")
        patch, _, _ = official_select_patch(img)
        return official_transform(patch), self.labels[i]
