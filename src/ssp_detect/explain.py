"""``ssp explain``: a figure showing how SSP decided on one image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ssp_detect.data.patch import resize_if_small, select_simplest_patch
from ssp_detect.data.preprocess import normalize
from ssp_detect.detector import Detector


def explain_figure(detector: Detector, image_path: str | Path, out_path: str | Path) -> dict:
    """Draw the image with every candidate patch and the chosen one boxed, the patch enlarged, its
    three SRM residual maps (what the backbone sees) and p_fake; save to ``out_path`` (PNG).

    Returns:
        The detection as a dict (see :class:`ssp_detect.Detection`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    pre = detector.preprocessor
    if pre.input != "patch":
        raise ValueError(f"Model {detector.loaded.name!r} is not fed one simple patch; explain shows the simple patch of patch models only.")
    img = detector.decode(str(image_path))
    searched, _ = resize_if_small(img, pre.patch_size)
    choice = select_simplest_patch(img, pre.patch_size, pre.mode, num_candidates=pre.num_candidates, seed=pre.seed)
    detection = detector.predict(str(image_path))
    pixels = torch.from_numpy(np.ascontiguousarray(choice.patch.transpose(2, 0, 1)))[None].to(detector.device)
    x = normalize(pixels, detector.loaded.spec.mean, detector.loaded.spec.std)
    with torch.inference_mode():
        residual = detector.model.residual(x)[0].float().cpu().numpy() if hasattr(detector.model, "residual") else None

    n_res = 0 if residual is None else 3
    fig, axes = plt.subplots(1, 2 + n_res, figsize=(4 * (2 + n_res), 4.4), gridspec_kw={"width_ratios": [2, 1] + [1] * n_res})
    ax = axes[0]
    ax.imshow(searched)
    for y, x0 in choice.candidates:
        ax.add_patch(Rectangle((x0, y), pre.patch_size, pre.patch_size, fill=False, lw=0.6, ec="yellow", alpha=0.6))
    bx, by, bw, bh = choice.box
    ax.add_patch(Rectangle((bx, by), bw, bh, fill=False, lw=2.5, ec="red"))
    ax.set_title(f"{Path(image_path).name}: {detection.label} (p_fake {detection.p_fake:.3f})")
    ax.axis("off")
    axes[1].imshow(choice.patch, interpolation="nearest")
    axes[1].set_title(f"simple patch at ({bx},{by})\ntexture score {choice.score}")
    axes[1].axis("off")
    for k in range(n_res):
        r = residual[k]
        lim = float(np.abs(r).max()) or 1.0
        axes[2 + k].imshow(r, cmap="coolwarm", vmin=-lim, vmax=lim, interpolation="nearest")
        axes[2 + k].set_title(f"SRM residual {k + 1}\n(max |r| {lim:.3g})")
        axes[2 + k].axis("off")
    fig.suptitle(f"{detector.loaded.name}, {pre.mode} patch mode, {len(choice.candidates) or 'all'} candidates, threshold {detector.threshold:.3f}")
    fig.tight_layout()
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return detection.to_dict()
