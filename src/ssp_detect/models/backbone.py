"""ResNet backbones with a one-logit head, in the torchvision layout, written with ``torch.nn`` alone.

The paper's backbone is torchvision's ResNet-50 (stride in the 3x3 conv of each bottleneck, "ResNet
v1.5") with BatchNorm and its fc replaced by ``Linear(2048, 1)``. This module rebuilds that network
instead of importing it: ``torchvision.models`` imports detection ops and ``torch._dynamo`` on the
way (about 1.5 s on 2 cores), which ``ssp predict`` does not need. What must not change, and what
``tests/test_startup.py`` checks against torchvision itself:

* the module names, so the state-dict keys are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``,
  ``layer2.0.downsample.0``, ..., ``fc``): official checkpoints and ImageNet weights load as-is;
* the operations, in order, so the outputs are the same numbers;
* the order in which modules are created and initialised, so the same seed gives the same random
  weights (runs made before this module existed reproduce).

Built on the meta device (:func:`~ssp_detect.models.registry.empty_model`, for a checkpoint's
weights), a ResNet skips its Kaiming-normal initialisation: ``normal_`` on the meta device runs a
Python kernel that imports torch's compiler stack (about 3 s on 2 cores) for numbers nobody reads.

Two switches exist for the variants beyond the paper that train from random weights (see
``docs/models.md``):

* ``norm="group"``: GroupNorm(32) instead of BatchNorm, so no decision depends on the other
  images of a batch.
* ``stem="native"``: a 3x3 stride-1 first conv and no max-pool, for a 32x32 input whose
  resolution must be kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

Norm = Literal["batch", "group"]
Stem = Literal["standard", "native"]
NormLayer = Callable[[int], nn.Module]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut (ResNet-18's block); the stride is in the first conv."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, *, norm_layer: NormLayer
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 convs and a shortcut (ResNet-50's block); the stride is in the 3x3 conv."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, *, norm_layer: NormLayer
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        out += identity
        return self.relu(out)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """torchvision's ``ResNet`` (groups 1, width 64, no dilation): 7x7 stem, four stages, global
    average pool, ``fc``. Convs get Kaiming-normal weights (fan out), norms weight 1 and bias 0."""

    def __init__(
        self, block: Block, layers: list[int], *, num_classes: int = 1000, norm_layer: NormLayer = nn.BatchNorm2d
    ) -> None:
        super().__init__()
        self._norm_layer = norm_layer
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        if self.fc.weight.is_meta:  # built to receive a checkpoint's tensors (registry.empty_model)
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        """One stage; the shortcut conv is created before the blocks, as torchvision does."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride), self._norm_layer(planes * block.expansion)
            )
        layers = [block(self.inplanes, planes, stride, downsample, norm_layer=self._norm_layer)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, norm_layer=self._norm_layer) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(*, num_classes: int = 1000, norm_layer: NormLayer = nn.BatchNorm2d) -> ResNet:
    """ResNet-50 as torchvision's ``resnet50(weights=None)``."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, norm_layer=norm_layer)


def resnet18(*, num_classes: int = 1000, norm_layer: NormLayer = nn.BatchNorm2d) -> ResNet:
    """ResNet-18 as torchvision's ``resnet18(weights=None)``."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, norm_layer=norm_layer)


def compact_resnet(*, num_classes: int = 1, norm_layer: NormLayer = nn.BatchNorm2d) -> ResNet:
    """A compact ResNet for CPU-sized training: one basic block per stage, widths 32-64-128-256.

    About 1/60 of ResNet-50's work on the same input; used by the ``-lite`` models. (Built as a
    standard one-block ResNet whose layers are then replaced, so the same seed gives the weights it
    always gave.)
    """
    net = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes, norm_layer=norm_layer)
    widths = (32, 64, 128, 256)
    net.inplanes = 32
    net.conv1 = nn.Conv2d(3, 32, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = norm_layer(32)
    net.layer1 = net._make_layer(BasicBlock, widths[0], 1)
    net.layer2 = net._make_layer(BasicBlock, widths[1], 1, stride=2)
    net.layer3 = net._make_layer(BasicBlock, widths[2], 1, stride=2)
    net.layer4 = net._make_layer(BasicBlock, widths[3], 1, stride=2)
    net.fc = nn.Linear(widths[3], num_classes)
    if net.fc.weight.is_meta:
        return net
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


_ARCHS: dict[str, Callable[..., ResNet]] = {"resnet50": resnet50, "resnet18": resnet18, "compact": compact_resnet}


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels)


def build_resnet(arch: str = "resnet50", *, norm: Norm = "batch", stem: Stem = "standard") -> ResNet:
    """Build a randomly initialised ResNet with a single-logit fc.

    Args:
        arch: ``resnet50`` (the paper's), ``resnet18`` or ``compact`` (see :func:`compact_resnet`).
        norm: ``batch`` (the paper's) or ``group``.
        stem: ``standard`` (7x7 stride-2 conv + max-pool) or ``native`` (3x3 stride-1, no pool).
    """
    if arch not in _ARCHS:
        raise ValueError(f"Unknown backbone {arch!r}; choose one of {sorted(_ARCHS)}.")
    norm_layer = nn.BatchNorm2d if norm == "batch" else _group_norm
    net = _ARCHS[arch](num_classes=1, norm_layer=norm_layer)
    if stem == "native":
        net.conv1 = nn.Conv2d(3, net.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    return net
