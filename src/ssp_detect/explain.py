"""``ssp explain``: a figure showing how a detector decided on one image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ssp_detect.data.preprocess import normalize
from ssp_detect.detector import Detector
from ssp_detect.errors import UsageError

STRATUM_COLOURS = ("red", "orange", "gold", "limegreen", "deepskyblue", "violet", "white", "black")


def explain_figure(detector: Detector, image_path: str | Path, out_path: str | Path) -> dict:
    """Draw how the detector decided on one image and save it to ``out_path`` (PNG).

    Patch models: the image with every candidate patch and the chosen one boxed, the patch
    enlarged, its three SRM residual maps (what the backbone sees) and p_fake. ``ssp-strata``: the
    image with its centre crop boxed, the crop with the tiles each texture stratum reads, and each
    stratum's share of the logit.

    Returns:
        The detection as a dict (see :class:`ssp_detect.Detection`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pre = detector.preprocessor
    if pre.input == "crop" and hasattr(detector.model, "stratum_contributions"):
        fig, detection = _strata_figure(detector, image_path, plt)
    elif pre.input == "patch":
        fig, detection = _patch_figure(detector, image_path, plt)
    else:
        raise UsageError(
            f"Model {detector.loaded.name!r} is fed its input as {pre.input!r}; explain draws simple-patch "
            "models and ssp-strata only."
        )
    fig.tight_layout()
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return detection.to_dict()


def _patch_figure(detector: Detector, image_path: str | Path, plt):
    """The figure of a simple-patch model (see :func:`explain_figure`) and the detection."""
    from matplotlib.patches import Rectangle

    pre = detector.preprocessor
    img = detector.decode(str(image_path))
    prepared, detection = detector.detect_decoded(img, str(image_path))
    patch = prepared.pixels.transpose(1, 2, 0)
    pixels = torch.from_numpy(prepared.pixels)[None].to(detector.device)
    x = normalize(pixels, detector.loaded.feed.mean, detector.loaded.feed.std)
    with torch.inference_mode():
        residual = detector.model.residual(x)[0].float().cpu().numpy() if hasattr(detector.model, "residual") else None

    n_res = 0 if residual is None else 3
    fig, axes = plt.subplots(
        1, 2 + n_res, figsize=(4 * (2 + n_res), 4.4), gridspec_kw={"width_ratios": [2, 1] + [1] * n_res}
    )
    ax = axes[0]
    ax.imshow(pre.searched(img))
    for y, x0 in prepared.candidates:
        ax.add_patch(Rectangle((x0, y), pre.patch_size, pre.patch_size, fill=False, lw=0.6, ec="yellow", alpha=0.6))
    bx, by, bw, bh = prepared.box
    ax.add_patch(Rectangle((bx, by), bw, bh, fill=False, lw=2.5, ec="red"))
    ax.set_title(f"{Path(image_path).name}: {detection.label} (p_fake {detection.p_fake:.3f})")
    ax.axis("off")
    axes[1].imshow(patch, interpolation="nearest")
    axes[1].set_title(f"simple patch at ({bx},{by})\ntexture score {prepared.score}")
    axes[1].axis("off")
    for k in range(n_res):
        r = residual[k]
        lim = float(np.abs(r).max()) or 1.0
        axes[2 + k].imshow(r, cmap="coolwarm", vmin=-lim, vmax=lim, interpolation="nearest")
        axes[2 + k].set_title(f"SRM residual {k + 1}\n(max |r| {lim:.3g})")
        axes[2 + k].axis("off")
    fig.suptitle(
        f"{detector.loaded.name}, {pre.mode} patch mode, {len(prepared.candidates) or 'all'} candidates, "
        f"threshold {detector.threshold:.3f}"
    )
    return fig, detection


def _strata_figure(detector: Detector, image_path: str | Path, plt):
    """The figure of ``ssp-strata`` (see :func:`explain_figure`) and the detection."""
    from matplotlib.patches import Rectangle

    model = detector.model
    img = detector.decode(str(image_path))
    searched = detector.preprocessor.searched(img)
    prepared, detection = detector.detect_decoded(img, str(image_path))
    pixels = torch.from_numpy(prepared.pixels)[None].to(detector.device)
    x = normalize(pixels, detector.loaded.feed.mean, detector.loaded.feed.std)
    with torch.inference_mode():
        kept = model.kept_tiles(x)[0].cpu().numpy()
        contributions = model.stratum_contributions(x)[0].float().cpu().numpy()
    bias = float(model.head.bias.detach().float().cpu())
    side, tile = prepared.pixels.shape[-1], model.tile
    per_row = side // tile
    cx, cy, _, _ = prepared.box

    fig, axes = plt.subplots(1, 3, figsize=(15, 5), gridspec_kw={"width_ratios": [1.4, 1.4, 1]})
    axes[0].imshow(searched)
    axes[0].add_patch(Rectangle((cx, cy), side, side, fill=False, lw=2, ec="cyan"))
    axes[0].set_title(
        f"{Path(image_path).name}: {detection.label} (p_fake {detection.p_fake:.3f})\ncentre {side}x{side} crop boxed"
    )
    axes[1].imshow(prepared.pixels.transpose(1, 2, 0), interpolation="nearest")
    for stratum, indices in enumerate(kept):
        colour = STRATUM_COLOURS[stratum % len(STRATUM_COLOURS)]
        for k in indices:
            row, col = divmod(int(k), per_row)
            axes[1].add_patch(
                Rectangle((col * tile + 0.5, row * tile + 0.5), tile - 1, tile - 1, fill=False, lw=1.8, ec=colour)
            )
    axes[1].set_title(
        f"the {kept.size} simplest of {per_row * per_row} tiles, by stratum\n("
        + ", ".join(f"{STRATUM_COLOURS[i % len(STRATUM_COLOURS)]}: stratum {i + 1}" for i in range(len(kept)))
        + ")"
    )
    for ax in axes[:2]:
        ax.axis("off")
    names = [f"stratum {i + 1}" for i in range(len(contributions))] + ["bias"]
    values = [*contributions.tolist(), bias]
    axes[2].barh(
        names[::-1],
        values[::-1],
        color=[*(STRATUM_COLOURS[i % len(STRATUM_COLOURS)] for i in range(len(contributions))), "grey"][::-1],
    )
    axes[2].axvline(0, color="black", lw=0.8)
    axes[2].set_xlabel("share of the logit (> 0: towards fake)")
    axes[2].set_title(f"logit {sum(values):+.3f} = sum of the bars")
    fig.suptitle(
        f"{detector.loaded.name}: tiles ranked by SSP's texture score, noise counts per stratum, threshold "
        f"{detector.threshold:.3f}"
    )
    return fig, detection
