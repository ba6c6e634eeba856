"""``ssp-strata``: SSP's texture ranking applied to every tile of the image, with noise counts per texture level.

SSP keeps the one candidate patch of lowest texture diversity and reads its noise. This model ranks
every tile of a native-resolution crop by the same texture diversity and reads the noise of the
simplest half of them, level by level. Forward, on a crop given as pixel values 0-255
(B, 3, H, W), H and W multiples of the tile side (the registry feeds the centre 256x256 crop, 64
tiles of 32x32):

1. the crop is cut into non-overlapping ``tile x tile`` tiles;
2. each tile is scored by SSP's texture diversity (:func:`~ssp_detect.data.patch.texture_diversity_tensor`)
   and the tiles are sorted by it, simplest first (a stable sort: the first tile on ties);
3. the simplest ``share`` of them (half by default: 32 of 64) is kept and split into ``strata``
   equal groups (2 by default: the simplest quarter of the crop, then the next quarter);
4. per group, the co-occurrence histograms of ``ssp-cooc`` (:mod:`ssp_detect.models.cooccurrence`)
   are averaged over its tiles, and square-rooted;
5. one linear layer on the groups' features side by side (2 x 875 features by default).

Why it exists (``docs/models.md`` has the measurements): on the demo benchmark, once the fakes
carry the reals' JPEG histories, the simplest patch alone separates them at AUC 0.69-0.72 in a
linear probe, as JPEG quantisation wipes out the faint noise of the flattest region, while the same
counts over the simplest half of the tiles, in two texture levels, reach 0.86-0.89 on two builds
of the benchmark with different photo splits; the most textured tiles and finer strata did worse
on one of the two. Like ``ssp-cooc`` only the head learns: no batch statistics, no upsampling.
"""

from __future__ import annotations

import torch
from torch import nn

from ssp_detect.data.patch import SMALL_IMAGE_SIZE, texture_diversity_tensor
from ssp_detect.data.preprocess import InputSpec
from ssp_detect.models.cooccurrence import NUM_FEATURES, cooccurrence_histograms
from ssp_detect.models.registry import ModelSpec, register_model

TILE = 32
SHARE = 0.5
STRATA = 2
CROP = SMALL_IMAGE_SIZE  # 256: an image smaller than the crop is resized to it, as SSP does with small images


def tiles_of(pixels: torch.Tensor, tile: int) -> torch.Tensor:
    """Cut (B, 3, H, W) into non-overlapping tiles in row-major order: (B, T, 3, tile, tile)."""
    b, c, h, w = pixels.shape
    x = pixels.reshape(b, c, h // tile, tile, w // tile, tile).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // tile) * (w // tile), c, tile, tile)


def tile_order(tiles: torch.Tensor) -> torch.Tensor:
    """Row-major tile indices of each crop sorted by SSP's texture diversity, simplest first (a stable
    sort: row-major order on ties): tiles (B, T, 3, tile, tile) from :func:`tiles_of` -> (B, T).

    The sort key is ``score * T + index``, unique per tile, so any sort gives the stable order; it
    exports to ONNX (as TopK), which ``sort(stable=True)`` does not."""
    b, count = tiles.shape[:2]
    scores = texture_diversity_tensor(tiles.reshape(b * count, *tiles.shape[2:])).reshape(b, count)
    keys = scores * count + torch.arange(count, device=tiles.device)
    return torch.sort(keys, dim=1).indices


def ranked_tiles(pixels: torch.Tensor, tile: int) -> torch.Tensor:
    """The tiles of each crop sorted by SSP's texture diversity, simplest first (see :func:`tile_order`):
    (B, 3, H, W) -> (B, T, 3, tile, tile)."""
    tiles = tiles_of(pixels, tile)
    return tiles[torch.arange(tiles.shape[0], device=pixels.device).unsqueeze(1), tile_order(tiles)]


def strata_features(pixels: torch.Tensor, tile: int = TILE, share: float = SHARE, strata: int = STRATA) -> torch.Tensor:
    """The co-occurrence features of each texture stratum of the simplest tiles of each crop.

    Args:
        pixels: (B, 3, H, W) pixel values 0-255 (rounded to integers here); H and W multiples of
            ``tile``, and the number of kept tiles a multiple of ``strata``.
        tile: Tile side in pixels.
        share: Share of the tiles kept, the simplest first.
        strata: Number of texture groups the kept tiles are split into.

    Returns:
        (B, strata * NUM_FEATURES) float32, simplest group first.
    """
    if pixels.ndim != 4 or pixels.shape[1] != 3:
        raise ValueError(f"Expected crops of shape (B, 3, H, W); got {tuple(pixels.shape)}.")
    b, _, h, w = pixels.shape
    count = (int(h) // tile) * (int(w) // tile)  # int(): plain numbers when traced for ONNX export too
    kept = round(count * share)
    if h % tile or w % tile or kept < strata or kept % strata:
        raise ValueError(
            f"A {h}x{w} crop does not give {share:g} of its {tile}x{tile} tiles in {strata} equal groups; "
            f"pass sides that are multiples of {tile} with enough tiles."
        )
    simplest = ranked_tiles(torch.round(pixels.float()), tile)[:, :kept]
    histograms = cooccurrence_histograms(simplest.reshape(b * kept, 3, tile, tile))
    return torch.sqrt(histograms.reshape(b, strata, kept // strata, NUM_FEATURES).mean(2)).reshape(b, -1)


class TextureStrataSSP(nn.Module):
    """Linear classifier on co-occurrence features per texture stratum (see the module docstring)."""

    def __init__(self, tile: int = TILE, share: float = SHARE, strata: int = STRATA) -> None:
        super().__init__()
        self.tile = tile
        self.share = share
        self.strata = strata
        self.head = nn.Linear(strata * NUM_FEATURES, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of *fake*, shape (B,); ``x`` holds pixel values 0-255 (the registry's normalisation)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.head(strata_features(x, self.tile, self.share, self.strata)).squeeze(1)

    def stratum_contributions(self, x: torch.Tensor) -> torch.Tensor:
        """Each stratum's share of the logit, (B, strata), simplest stratum first: the logit is their
        sum plus ``head.bias`` (the head is linear), so they say which texture level decided."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            features = strata_features(x, self.tile, self.share, self.strata).reshape(
                x.shape[0], self.strata, NUM_FEATURES
            )
            return (features * self.head.weight.reshape(1, self.strata, NUM_FEATURES)).sum(2)

    def kept_tiles(self, x: torch.Tensor) -> torch.Tensor:
        """The row-major indices of the tiles each stratum reads, (B, strata, kept / strata), simplest first."""
        b, _, h, w = x.shape
        kept = round((h // self.tile) * (w // self.tile) * self.share)
        return tile_order(tiles_of(torch.round(x.float()), self.tile))[:, :kept].reshape(b, self.strata, -1)


register_model(
    ModelSpec(
        name="ssp-strata",
        builder=TextureStrataSSP,
        feed=InputSpec(input="crop", image_size=CROP, mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255)),
        description="Centre 256x256 crop at native resolution -> 64 tiles ranked by SSP's texture score -> the "
        "simplest 32, ssp-cooc histograms per 16 -> linear (1,751 parameters).",
        # PyTorch is faster for its tile ranking and histograms: model step 265 against 181 img/s on ONNX Runtime,
        # ssp predict over 192 PNGs 3.8-4.5 s against 4.9-5.0 s (2-core CPU, 2026-11-29)
        onnxruntime_when_auto=False,
    )
)
