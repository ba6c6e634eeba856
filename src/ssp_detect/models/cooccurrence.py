"""SSP with steganalysis co-occurrence features: the simple patch's noise, counted instead of convolved.

Forward, on a simple patch given as pixel values 0-255 (B, 3, S, S):

1. residuals of orders 1, 2 and 3 along rows and along columns, per colour channel (the
   derivative filters of the spatial rich models that SSP's SRM bank comes from);
2. each residual rounded and clipped to {-2, ..., 2} (5 levels);
3. histograms of co-occurrences: three neighbouring residuals along the filter's direction
   (per order, rows and columns pooled, channels pooled: 3 x 125 bins) and the three colour
   channels' residuals at the same pixel (orders 1 and 2, rows and columns apart: 4 x 125 bins);
4. the square root of each normalised histogram (875 features), then one linear layer.

Only the linear layer learns (876 parameters): the features are fixed counts, so there are no
batch statistics to exploit and nothing to overfit but the weights. It exists because on the demo
benchmark a trained ResNet generalises poorly from a few dozen photos, while these features,
which describe the patch's noise directly (its amplitude, spatial dependence and the correlation
across colour channels that camera demosaicing leaves), separate unseen photos' fakes far better
(docs/models.md has the measurements).
"""

from __future__ import annotations

import torch
from torch import nn

from ssp_detect.data.preprocess import InputSpec
from ssp_detect.models.registry import ModelSpec, register_model

LEVELS = 2  # residuals are clipped to [-LEVELS, LEVELS]
BINS = (2 * LEVELS + 1) ** 3  # one histogram of three quantised residuals
ORDERS = (1, 2, 3)
COLOUR_ORDERS = (1, 2)
NUM_FEATURES = BINS * (len(ORDERS) + 2 * len(COLOUR_ORDERS))


def _difference(x: torch.Tensor, order: int, dim: int) -> torch.Tensor:
    """``order``-th finite difference of ``x`` along ``dim`` (valid part only)."""
    for _ in range(order):
        x = x.narrow(dim, 1, x.shape[dim] - 1) - x.narrow(dim, 0, x.shape[dim] - 1)
    return x


def _codes(residual: torch.Tensor) -> torch.Tensor:
    """Residuals rounded, clipped to +-LEVELS and shifted to 0..2*LEVELS, as uint8 (a triplet's
    index, at most BINS - 1 = 124, is then computed in uint8 too: a quarter of int64's memory traffic)."""
    return (torch.round(residual).clamp_(-LEVELS, LEVELS) + LEVELS).to(torch.uint8)


def _histogram(index: torch.Tensor) -> torch.Tensor:
    """Normalised histogram over BINS of each sample's indices: (B, ...) -> (B, BINS), by one
    ``scatter_add`` of ones per row (exact: every count is an integer below 2^24; unlike ``bincount``,
    it exports to ONNX, as ScatterElements with an add reduction)."""
    flat = index.reshape(index.shape[0], -1).to(torch.int64)
    ones = torch.ones(flat.shape, dtype=torch.float32, device=flat.device)
    counts = torch.zeros(flat.shape[0], BINS, dtype=torch.float32, device=flat.device).scatter_add(1, flat, ones)
    return counts / flat.shape[1]


def _triplets(codes: torch.Tensor, dim: int) -> torch.Tensor:
    """Index of three consecutive codes along ``dim``."""
    n = codes.shape[dim] - 2
    base = 2 * LEVELS + 1
    return (codes.narrow(dim, 0, n) * base + codes.narrow(dim, 1, n)) * base + codes.narrow(dim, 2, n)


def cooccurrence_histograms(pixels: torch.Tensor) -> torch.Tensor:
    """The normalised co-occurrence histograms of each patch, concatenated (before the square root).

    Args:
        pixels: (B, 3, S, S) pixel values 0-255 (rounded to integers here), S at least 5.

    Returns:
        (B, NUM_FEATURES) float32; each of the seven histograms sums to 1.
    """
    if pixels.ndim != 4 or pixels.shape[1] != 3 or min(pixels.shape[-2:]) < 2 + max(ORDERS):
        raise ValueError(
            f"Expected patches of shape (B, 3, S, S) with S >= {2 + max(ORDERS)}; got {tuple(pixels.shape)}."
        )
    x = torch.round(pixels.float())
    base = 2 * LEVELS + 1
    parts = []
    for order in ORDERS:
        along_rows = _histogram(_triplets(_codes(_difference(x, order, 3)), 3))
        along_columns = _histogram(_triplets(_codes(_difference(x, order, 2)), 2))
        parts.append((along_rows + along_columns) / 2)
    for order in COLOUR_ORDERS:
        for dim in (3, 2):
            c = _codes(_difference(x, order, dim))
            parts.append(_histogram((c[:, 0] * base + c[:, 1]) * base + c[:, 2]))
    return torch.cat(parts, dim=1)


def cooccurrence_features(pixels: torch.Tensor) -> torch.Tensor:
    """The 875 co-occurrence features of each patch: square roots of :func:`cooccurrence_histograms`.

    Args:
        pixels: (B, 3, S, S) pixel values 0-255 (rounded to integers here), S at least 5.

    Returns:
        (B, NUM_FEATURES) float32.
    """
    return torch.sqrt(cooccurrence_histograms(pixels))


class CooccurrenceSSP(nn.Module):
    """Linear classifier on the simple patch's residual co-occurrences (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(NUM_FEATURES, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of *fake*, shape (B,); ``x`` holds pixel values 0-255 (the registry's normalisation)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.head(cooccurrence_features(x)).squeeze(1)


register_model(
    ModelSpec(
        name="ssp-cooc",
        builder=CooccurrenceSSP,
        feed=InputSpec(mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255)),
        description="Simple patch -> order 1-3 residuals quantised to +-2 -> spatial and cross-colour "
        "co-occurrence histograms -> linear (876 parameters); trains in seconds.",
    )
)
