"""ResNet backbones with a one-logit head, in the torchvision layout.

The paper's backbone is torchvision's ResNet-50 (stride in the 3x3 conv of each bottleneck) with
BatchNorm and its fc replaced by ``Linear(2048, 1)``. Two switches exist for the variants beyond
the paper that train from random weights (see ``docs/models.md``):

* ``norm="group"``: GroupNorm(32) instead of BatchNorm, so no decision depends on the other
  images of a batch.
* ``stem="native"``: a 3x3 stride-1 first conv and no max-pool, for a 32x32 input whose
  resolution must be kept.
"""

from __future__ import annotations

from typing import Literal

from torch import nn
from torchvision.models import resnet

Norm = Literal["batch", "group"]
Stem = Literal["standard", "native"]


def compact_resnet(*, weights: None = None, num_classes: int = 1, norm_layer=nn.BatchNorm2d) -> resnet.ResNet:
    """A compact ResNet for CPU-sized training: one basic block per stage, widths 32-64-128-256.

    About 1/60 of ResNet-50's work on the same input; used by the ``-lite`` models.
    """
    net = resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1], num_classes=num_classes, norm_layer=norm_layer)
    widths = (32, 64, 128, 256)
    net.inplanes = 32
    net.conv1 = nn.Conv2d(3, 32, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = norm_layer(32)
    net.layer1 = net._make_layer(resnet.BasicBlock, widths[0], 1)
    net.layer2 = net._make_layer(resnet.BasicBlock, widths[1], 1, stride=2)
    net.layer3 = net._make_layer(resnet.BasicBlock, widths[2], 1, stride=2)
    net.layer4 = net._make_layer(resnet.BasicBlock, widths[3], 1, stride=2)
    net.fc = nn.Linear(widths[3], num_classes)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


_ARCHS = {"resnet50": resnet.resnet50, "resnet18": resnet.resnet18, "compact": compact_resnet}


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels)


def build_resnet(arch: str = "resnet50", *, norm: Norm = "batch", stem: Stem = "standard") -> resnet.ResNet:
    """Build a randomly initialised ResNet with a single-logit fc.

    Args:
        arch: ``resnet50`` (the paper's), ``resnet18`` or ``compact`` (see :func:`compact_resnet`).
        norm: ``batch`` (the paper's) or ``group``.
        stem: ``standard`` (7x7 stride-2 conv + max-pool) or ``native`` (3x3 stride-1, no pool).
    """
    if arch not in _ARCHS:
        raise ValueError(f"Unknown backbone {arch!r}; choose one of {sorted(_ARCHS)}.")
    norm_layer = nn.BatchNorm2d if norm == "batch" else _group_norm
    net = _ARCHS[arch](weights=None, num_classes=1, norm_layer=norm_layer)
    if stem == "native":
        net.conv1 = nn.Conv2d(3, net.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    return net
