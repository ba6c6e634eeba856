"""ESSP: SSP with a perception module and a prompt-guided enhancement module in front.

The paper describes ESSP but never released it; this design is ours and ``docs/essp.md`` justifies
each choice. Forward, on a normalised simple patch ``x`` (B, 3, P, P):

1. :class:`Perception` predicts, from the patch's clipped SRM residual, two logits: is the patch
   blurred, is it JPEG-compressed.
2. Their probabilities weight two learned task embeddings (deblur, decompress) into a prompt.
3. :class:`Enhancer`, a small U-Net whose blocks are FiLM-modulated by the prompt, predicts a
   residual; ``restored = x + gate * residual`` with ``gate = P(blurred or compressed)``, so a
   patch judged clean reaches the detector (almost) unchanged.
4. The SSP detector (SRM -> Hardtanh -> ResNet, :class:`~ssp_detect.models.ssp.SSPNet`) classifies
   ``restored``.

``forward(x)`` returns the logit of *fake* (B,) like every detector; ``forward_all(x)`` (or
``forward(x, all_outputs=True)``, the form the training loop calls so DDP sees it) also returns
the perception logits and the restored patch, and :meth:`ESSPNet.training_loss` combines the
detection, perception and restoration losses.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ssp_detect.models.backbone import Norm, Stem
from ssp_detect.models.registry import ModelSpec, register_model
from ssp_detect.models.ssp import SSPNet

DEGRADATIONS = ("blur", "jpeg")


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1)


class PromptBlock(nn.Module):
    """Residual block conv-FiLM-ReLU-conv (EDSR style, no normalisation), modulated by a prompt.

    Args:
        channels: Feature channels.
        prompt_dim: Size of the task prompt.
    """

    def __init__(self, channels: int, prompt_dim: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(channels, channels)
        self.film = nn.Linear(prompt_dim, 2 * channels, bias=False)
        self.conv2 = _conv3x3(channels, channels)

    def forward(self, h: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(prompt)[:, :, None, None].chunk(2, dim=1)
        return h + self.conv2(F.relu(self.conv1(h) * (1 + gamma) + beta))


class Enhancer(nn.Module):
    """A U-Net on the pixel-unshuffled patch (P/2 -> P/4 -> P/8 and back) that predicts a
    restoration residual at full resolution.

    Pixel unshuffle (space-to-depth, as FFDNet) is lossless and cuts the work four-fold.

    Args:
        width: Channels at P/2 (twice that at P/4, four times at P/8).
        middle_blocks: Prompt blocks at P/8, where most parameters sit.
        prompt_dim: Size of the task prompt.
    """

    def __init__(self, width: int, middle_blocks: int, prompt_dim: int) -> None:
        super().__init__()
        c = width
        self.head = _conv3x3(3 * 4, c)
        self.enc1 = PromptBlock(c, prompt_dim)
        self.down1 = _conv3x3(c, 2 * c, stride=2)
        self.enc2 = PromptBlock(2 * c, prompt_dim)
        self.down2 = _conv3x3(2 * c, 4 * c, stride=2)
        self.middle = nn.ModuleList(PromptBlock(4 * c, prompt_dim) for _ in range(middle_blocks))
        self.up2 = _conv3x3(4 * c, 2 * c)
        self.dec2 = PromptBlock(2 * c, prompt_dim)
        self.up1 = _conv3x3(2 * c, c)
        self.dec1 = PromptBlock(c, prompt_dim)
        self.tail = _conv3x3(c, 3 * 4)
        # Zero residual at initialisation: an untrained ESSP is exactly its SSP detector.
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        """The residual to add to ``x`` (even sides), same shape as ``x``."""
        s1 = self.enc1(self.head(F.pixel_unshuffle(x, 2)), prompt)
        s2 = self.enc2(self.down1(s1), prompt)
        h = self.down2(s2)
        for block in self.middle:
            h = block(h, prompt)
        h = self.dec2(s2 + self.up2(F.interpolate(h, size=s2.shape[-2:], mode="nearest")), prompt)
        h = self.dec1(s1 + self.up1(F.interpolate(h, size=s1.shape[-2:], mode="nearest")), prompt)
        return F.pixel_shuffle(self.tail(F.relu(h)), 2)


class Perception(nn.Module):
    """A small CNN that predicts one logit per degradation (blur, JPEG) from a high-pass residual.

    Runs on the pixel-unshuffled input (lossless, four times less work), then two stride-2 convs.

    Args:
        width: Channels of the first conv (doubled at each of two stride-2 convs).
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        c = width
        layers: list[nn.Module] = [nn.PixelUnshuffle(2)]
        for c_in, c_out, stride in ((3 * 4, c, 1), (c, 2 * c, 2), (2 * c, 4 * c, 2), (4 * c, 4 * c, 1)):
            layers += [_conv3x3(c_in, c_out, stride), _norm(c_out), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(4 * c, len(DEGRADATIONS))

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2): blurred, JPEG-compressed, from the (B, 3, P, P) residual."""
        return self.head(self.features(residual).mean(dim=(2, 3)))


class ESSPNet(SSPNet):
    """SSP detector behind a perception module and a prompt-guided enhancement module.

    The detector keeps SSPNet's attribute names (``srm``, ``disc``), so backbone weights load as
    for SSP.

    Args:
        enhancer_width: Channels of the enhancer U-Net's first level (see :class:`Enhancer`).
        middle_blocks: Enhancer blocks at the lowest resolution.
        prompt_dim: Size of each task embedding.
        perception_width: First-layer channels of the perception CNN.
        upsample_to, srm_first, arch, norm, stem: The SSP detector's options (see
            :class:`~ssp_detect.models.ssp.SSPNet`); the defaults are the paper's SSP.
    """

    def __init__(
        self,
        *,
        enhancer_width: int = 64,
        middle_blocks: int = 4,
        prompt_dim: int = 64,
        perception_width: int = 48,
        upsample_to: int | None = 256,
        srm_first: bool = False,
        arch: str = "resnet50",
        norm: Norm = "batch",
        stem: Stem = "standard",
    ) -> None:
        super().__init__(upsample_to=upsample_to, srm_first=srm_first, arch=arch, norm=norm, stem=stem)
        self.perception = Perception(perception_width)
        self.task_embeddings = nn.Parameter(torch.empty(len(DEGRADATIONS), prompt_dim))
        if not self.task_embeddings.is_meta:  # meta: built for a checkpoint's tensors (registry.empty_model)
            nn.init.normal_(self.task_embeddings)  # the numbers torch.randn gave
        self.enhancer = Enhancer(enhancer_width, middle_blocks, prompt_dim)

    def extra_parameters(self) -> int:
        """Parameters added to the SSP detector (perception, task embeddings, enhancer)."""
        extra = [self.task_embeddings, *self.perception.parameters(), *self.enhancer.parameters()]
        return sum(p.numel() for p in extra)

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every output: ``logit`` (B,) of fake, ``p_blur_logit`` and ``p_jpeg_logit`` (B,), and
        ``restored`` (B, 3, P, P), the patch the detector saw (normalised like ``x``, float32).

        The perception sees the clipped SRM residual of the patch at its native resolution: a
        simple patch is nearly flat, its pixels dominated by their mean colour, and the traces of
        blur and JPEG live in the high-frequency band that the residual isolates. Perception and
        enhancement run in float32 even under autocast: the restored patch feeds the SRM filter,
        whose signal bf16 would swamp.
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            degradation_logits = self.perception(F.hardtanh(self.srm(x), -3.0, 3.0))
            p = torch.sigmoid(degradation_logits)
            prompt = p @ self.task_embeddings
            gate = 1 - (1 - p[:, 0]) * (1 - p[:, 1])
            restored = x + gate[:, None, None, None] * self.enhancer(x, prompt)
        return {
            "logit": super().forward(restored),
            "p_blur_logit": degradation_logits[:, 0],
            "p_jpeg_logit": degradation_logits[:, 1],
            "restored": restored,
        }

    def forward(self, x: torch.Tensor, *, all_outputs: bool = False) -> torch.Tensor | dict[str, torch.Tensor]:  # type: ignore[override]
        """Logits of *fake*, shape (B,); the dict of :meth:`forward_all` when ``all_outputs``."""
        out = self.forward_all(x)
        return out if all_outputs else out["logit"]

    @staticmethod
    def training_loss(
        outputs: dict[str, torch.Tensor],
        labels: torch.Tensor,
        *,
        clean: torch.Tensor,
        degradation: torch.Tensor,
        perception_weight: float = 0.5,
        restoration_weight: float = 1.0,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Detection BCE + ``perception_weight`` x perception BCE + ``restoration_weight`` x L1.

        Args:
            outputs: :meth:`forward_all`'s dict.
            labels: 1 fake, 0 real, (B,).
            clean: The same patch before the augmentation's blur and JPEG, normalised like the
                input, (B, 3, P, P).
            degradation: (B, 2) targets, 1 where a blur / a JPEG re-compression was applied.
            perception_weight: Weight of the perception loss (mean BCE over the two degradations).
            restoration_weight: Weight of the restoration loss (mean absolute error between the
                restored and the clean patch, in normalised units).

        Returns:
            The total loss and its parts as floats (losses and the perception accuracies).
        """
        detection = F.binary_cross_entropy_with_logits(outputs["logit"].float(), labels)
        degradation_logits = torch.stack([outputs["p_blur_logit"], outputs["p_jpeg_logit"]], dim=1).float()
        perception = F.binary_cross_entropy_with_logits(degradation_logits, degradation)
        restoration = F.l1_loss(outputs["restored"].float(), clean)
        total = detection + perception_weight * perception + restoration_weight * restoration
        correct = ((degradation_logits > 0).float() == degradation).float().mean(dim=0)
        parts = {
            "loss_detection": detection.item(),
            "loss_perception": perception.item(),
            "loss_restoration": restoration.item(),
            "perception_acc_blur": correct[0].item(),
            "perception_acc_jpeg": correct[1].item(),
        }
        return total, parts


register_model(
    ModelSpec(
        name="essp",
        builder=ESSPNet,
        description="ESSP (our design of the paper's enhanced SSP): perception + prompt-guided enhancer (~7M "
        "parameters) before the paper's SSP (ResNet-50).",
    )
)
register_model(
    ModelSpec(
        name="essp-lite",
        builder=partial(
            ESSPNet,
            enhancer_width=16,
            middle_blocks=2,
            prompt_dim=32,
            perception_width=16,
            upsample_to=None,
            srm_first=True,
            arch="compact",
            norm="group",
            stem="native",
        ),
        description="ESSP with a small perception/enhancer (~0.3M parameters) before ssp-lite: CPU-sized.",
    )
)
