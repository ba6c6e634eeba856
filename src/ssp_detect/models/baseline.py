"""The paper's ResNet-50 baseline: the whole image resized to 256x256, no patch, no SRM."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ssp_detect.data.preprocess import InputSpec
from ssp_detect.models.backbone import Norm, build_resnet
from ssp_detect.models.registry import ModelSpec, register_model


class WholeImageNet(nn.Module):
    """A ResNet on the whole (resized, normalised) image; backbone named ``disc`` like SSP's."""

    def __init__(self, arch: str = "resnet50", norm: Norm = "batch") -> None:
        super().__init__()
        self.disc = build_resnet(arch, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of *fake*, shape (B,)."""
        return self.disc(x).squeeze(1)


register_model(
    ModelSpec(
        name="resnet50-baseline",
        builder=WholeImageNet,
        feed=InputSpec(input="image"),
        paper=True,
        description="The paper's ResNet-50 baseline: whole image resized to 256x256.",
    )
)
register_model(
    ModelSpec(
        name="baseline-lite",
        builder=partial(WholeImageNet, arch="compact", norm="group"),
        feed=InputSpec(input="image"),
        description="The whole-image baseline with ssp-lite's compact ResNet (GroupNorm): the CPU demo's "
        "like-for-like comparison.",
    )
)
