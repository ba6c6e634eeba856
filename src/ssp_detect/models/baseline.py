"""The paper's ResNet-50 baseline: the whole image resized to 256x256, no patch, no SRM."""

from __future__ import annotations

import torch
from torch import nn

from ssp_detect.models.backbone import build_resnet
from ssp_detect.models.registry import ModelSpec, register_model


class WholeImageNet(nn.Module):
    """A ResNet-50 on the whole (resized, normalised) image; backbone named ``disc`` like SSP's."""

    def __init__(self) -> None:
        super().__init__()
        self.disc = build_resnet("resnet50")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of *fake*, shape (B,)."""
        return self.disc(x).squeeze(1)


register_model(
    ModelSpec(
        name="resnet50-baseline",
        builder=WholeImageNet,
        input="image",
        paper=True,
        description="The paper's ResNet-50 baseline: whole image resized to 256x256.",
    )
)
