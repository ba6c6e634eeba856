"""A small convolutional autoencoder, trained here on the training photos, whose reconstructions are fakes.

The idea of "aligned" fakes (Rajan et al., ICLR 2025; B-Free, CVPR 2025): pass real images
through a generator's autoencoder. A reconstruction keeps the scene, size and storage format of
its real image and differs from it only by what the decoder leaves behind, so a detector trained
or tested on such pairs is measured on the generator's traces, not on content or format. Latent
diffusion models decode every image with such a decoder; this one is small enough to train on a
CPU during the benchmark build, so its weights never ship and never need a download.

Architecture (:class:`ConvAutoencoder`, 0.16 M parameters, every convolution with reflect padding
so that the borders carry no zero-padding edge):

- encoder, to a latent of 16 channels at 1/4 of the resolution (48 numbers per 4x4 RGB block
  become 16): 3x3 conv 3 -> 32, SiLU; 4x4 conv stride 2, 32 -> 64, SiLU; 4x4 conv stride 2,
  64 -> 64, SiLU; 3x3 conv 64 -> 13; plus 3 channels that hold the mean colour of each 4x4 block;
- decoder, upsampling as latent-diffusion decoders do: 3x3 conv 16 -> 64, SiLU; nearest x2, 3x3
  conv 64 -> 64, SiLU; nearest x2, 3x3 conv 64 -> 16, SiLU; 3x3 conv 16 -> 3, added to the block
  means upsampled x4 (bilinear). The last convolution starts at zero, so training starts from the
  bilinear upsampling and spends its steps on detail: colours and low frequencies are right from
  the first step (a plain decoder, trained as briefly, shifted colours by tens of grey levels, a
  content cue instead of a trace). The output is not clamped; :func:`reconstruct` clamps and rounds.

Measured (``small`` recipe, 400 steps of 16 patches of 64 px, seed 0, one thread on a busy 2-core
machine: 107 s): L1 3.9 grey levels at the end of training; on 256-px crops of the validation
photos 31.7 dB PSNR (the bilinear upsampling of the block means alone: 26.8 dB), mean colour of a
crop within 0.6 grey levels. The reconstructions are slightly softer than the reals, with the
decoder's faint texture in flat areas.

Training (:func:`train_autoencoder`, deterministic for a seed on the CPU with a fixed thread
count): random ``patch x patch`` crops of the given photos (a photo drawn uniformly, then a
position uniformly, from a numpy generator seeded with the build seed), batches of ``batch``, L1
loss, Adam with a cosine-decayed learning rate, weights initialised under ``torch.manual_seed``
inside a forked RNG (the global RNG is left as it was). The builder passes only the photos of the
training split, so no validation photo is ever seen by the autoencoder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import pickle
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssp_detect.demo.errors import DemoBuildError
from ssp_detect.demo.sources import Photo

logger = logging.getLogger(__name__)

ARCHITECTURE = "conv-autoencoder-f4c16"
WIDTH = 32
LATENT = 16
OUT_WIDTH = 16
DOWNSCALE = 4  # the encoder's two stride-2 convolutions: image sides must be multiples of this


@dataclass(frozen=True)
class AutoencoderTraining:
    """How the autoencoder is trained.

    Attributes:
        steps: Optimiser steps.
        batch: Patches per step.
        patch: Side of a training patch in pixels (a multiple of 4).
        lr: Peak learning rate of Adam, decayed to 0 along a cosine.
    """

    steps: int
    batch: int
    patch: int = 64
    lr: float = 2e-3


def _conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, stride, padding=1, padding_mode="reflect")


class ConvAutoencoder(nn.Module):
    """RGB in [0, 1] of shape (N, 3, H, W), H and W multiples of 4, to its reconstruction of the same shape."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            _conv(3, WIDTH),
            nn.SiLU(),
            _conv(WIDTH, 2 * WIDTH, 4, 2),
            nn.SiLU(),
            _conv(2 * WIDTH, 2 * WIDTH, 4, 2),
            nn.SiLU(),
            _conv(2 * WIDTH, LATENT - 3),
        )
        self.decoder_in = nn.Sequential(_conv(LATENT, 2 * WIDTH), nn.SiLU())
        self.up1 = nn.Sequential(_conv(2 * WIDTH, 2 * WIDTH), nn.SiLU())
        self.up2 = nn.Sequential(_conv(2 * WIDTH, OUT_WIDTH), nn.SiLU())
        self.decoder_out = _conv(OUT_WIDTH, 3)
        nn.init.zeros_(self.decoder_out.weight)  # the decoder starts as the bilinear upsampling of the block means
        nn.init.zeros_(self.decoder_out.bias)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent, (N, 16, H/4, W/4): 13 learned channels, then the mean colour of each 4x4 block."""
        return torch.cat((self.encoder(x - 0.5), F.avg_pool2d(x, DOWNSCALE)), dim=1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """An image (N, 3, 4h, 4w) from a latent (N, 16, h, w): the block means upsampled bilinearly plus
        the learned detail."""
        base = F.interpolate(z[:, -3:], scale_factor=DOWNSCALE, mode="bilinear", align_corners=False)
        h = self.decoder_in(z)
        h = self.up1(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.up2(F.interpolate(h, scale_factor=2, mode="nearest"))
        return base + self.decoder_out(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode and decode."""
        return self.decode(self.encode(x))


@dataclass(frozen=True)
class TrainingRecord:
    """What a training run did, for the manifest.

    Attributes:
        photo_ids: The photos patches were drawn from, in the order given.
        patches_per_photo: How many training patches each of those photos gave.
        final_l1: Mean L1 loss (in grey levels, 0-255) over the last 10 % of the steps.
    """

    photo_ids: tuple[str, ...]
    patches_per_photo: tuple[int, ...]
    final_l1: float


def train_autoencoder(
    photos: list[Photo], training: AutoencoderTraining, seed: int, progress: bool = False
) -> tuple[ConvAutoencoder, TrainingRecord]:
    """Train a :class:`ConvAutoencoder` on random patches of ``photos``, on the CPU, deterministically.

    Args:
        photos: The photos to learn from (the builder passes the training split only); each at
            least ``training.patch`` pixels on both sides.
        training: Steps, batch, patch size and learning rate.
        seed: Seed of the weight initialisation and of the patch draws.
        progress: Show a tqdm progress bar.

    Returns:
        The network in eval mode on the CPU, and what the training did.

    Raises:
        DemoBuildError: no photos, a photo smaller than a patch, or a patch that is not a multiple of 4.
    """
    if not photos:
        raise DemoBuildError("The autoencoder has no training photos; install more photo packages or lower the size.")
    if training.patch % DOWNSCALE or training.patch <= 0:
        raise DemoBuildError(f"Autoencoder patch size {training.patch} is not a positive multiple of {DOWNSCALE}.")
    small = [p.source.photo_id for p in photos if min(p.height, p.width) < training.patch]
    if small:
        raise DemoBuildError(f"Photo(s) {', '.join(small)} are smaller than the {training.patch}-px training patch.")
    from tqdm import tqdm

    started = time.perf_counter()
    rng = np.random.default_rng([seed, 3])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ConvAutoencoder()
    optimizer = torch.optim.Adam(net.parameters(), lr=training.lr)
    counts = np.zeros(len(photos), dtype=np.int64)
    tail = max(1, training.steps // 10)
    tail_losses: list[float] = []
    net.train()
    for step in tqdm(range(training.steps), desc="autoencoder", unit="step", disable=not progress):
        for group in optimizer.param_groups:
            group["lr"] = training.lr * 0.5 * (1 + math.cos(math.pi * step / training.steps))
        batch = _draw_patches(photos, training, rng, counts)
        loss = (net(batch) - batch).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= training.steps - tail:
            tail_losses.append(float(loss.detach()) * 255)
    record = TrainingRecord(
        photo_ids=tuple(p.source.photo_id for p in photos),
        patches_per_photo=tuple(counts.tolist()),
        final_l1=round(float(np.mean(tail_losses)), 3),
    )
    seconds = time.perf_counter() - started
    logger.info("Trained the autoencoder in %.1f s: L1 %.2f grey levels.", seconds, record.final_l1)
    return net.eval(), record


def _draw_patches(
    photos: list[Photo], training: AutoencoderTraining, rng: np.random.Generator, counts: np.ndarray
) -> torch.Tensor:
    size = training.patch
    patches = []
    for index in rng.integers(len(photos), size=training.batch).tolist():
        photo = photos[index]
        top = int(rng.integers(photo.height - size + 1))
        left = int(rng.integers(photo.width - size + 1))
        patches.append(photo.pixels[top : top + size, left : left + size])
        counts[index] += 1
    return torch.from_numpy(np.stack(patches)).permute(0, 3, 1, 2).float() / 255


def reconstruct(net: ConvAutoencoder, image: np.ndarray) -> np.ndarray:
    """Pass an RGB uint8 image through the autoencoder, on the device of its weights.

    Args:
        net: The autoencoder, in eval mode.
        image: RGB uint8 array of shape (H, W, 3), H and W multiples of 4.

    Returns:
        The reconstruction: RGB uint8 of the same shape, clamped and rounded.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"Expected an RGB uint8 array of shape (H, W, 3), got {image.dtype} {image.shape}.")
    if image.shape[0] % DOWNSCALE or image.shape[1] % DOWNSCALE:
        raise ValueError(f"Image of {image.shape[1]}x{image.shape[0]} px: both sides must be multiples of 4.")
    device = next(net.parameters()).device
    x = torch.from_numpy(np.array(image)).to(device).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        y = net(x)
    return (y[0] * 255).clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def cache_key(photos: list[Photo], training: AutoencoderTraining, seed: int) -> str:
    """A short hash of everything the trained weights depend on: the photos, the recipe, seed, torch and threads."""
    payload = {
        "architecture": ARCHITECTURE,
        "training": asdict(training),
        "seed": seed,
        "photos": [(p.source.photo_id, p.height, p.width) for p in photos],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    return hashlib.sha256(repr(payload).encode()).hexdigest()[:16]


def weights_digest(net: ConvAutoencoder) -> str:
    """sha256 over the parameter names, shapes and float32 values: the same for equal weights, however stored."""
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        values = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}{tuple(values.shape)}".encode())
        digest.update(values.numpy().tobytes())
    return digest.hexdigest()


def save_cached(net: ConvAutoencoder, record: TrainingRecord, path: Path) -> None:
    """Write the state dict to ``path`` (``.pt``) and the training record beside it (``.json``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu() for name, tensor in net.state_dict().items()}
    torch.save(state, path)
    path.with_suffix(".json").write_text(json.dumps(asdict(record), indent=1) + "\n", encoding="utf-8")


def load_cached(path: Path) -> tuple[ConvAutoencoder | None, TrainingRecord | None]:
    """The autoencoder and training record saved by :func:`save_cached`, or (None, None) when either is
    missing or unusable (the autoencoder is then trained again)."""
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        net = ConvAutoencoder()
        net.load_state_dict(state)
        fields = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        record = TrainingRecord(
            photo_ids=tuple(fields["photo_ids"]),
            patches_per_photo=tuple(int(n) for n in fields["patches_per_photo"]),
            final_l1=float(fields["final_l1"]),
        )
    except (
        OSError,
        RuntimeError,
        ValueError,
        KeyError,
        TypeError,
        EOFError,
        AttributeError,
        pickle.UnpicklingError,
    ) as error:
        logger.warning("Ignoring the cached autoencoder %s (%s); training it again.", path, error)
        return None, None
    return net.eval(), record
