"""``ssp explain`` draws the input the detector actually scored."""

from __future__ import annotations

import numpy as np

from ssp_detect import Detector
from ssp_detect.data.preprocess import PatchOptions
from ssp_detect.explain import explain_figure
from tests.helpers import make_checkpoint, noisy_image, write_image


def test_explain_decodes_and_selects_once_and_shows_the_scored_patch(tmp_path, monkeypatch):
    image = write_image(tmp_path / "photo.png", noisy_image(np.random.default_rng(0), (120, 160), noise=6.0))
    # random mode: a second selection would draw other candidates, so the figure could show another patch
    detector = Detector.from_checkpoint(make_checkpoint(tmp_path / "m.pt"), device="cpu", patch=PatchOptions("random"))
    reads, selections, scored = [], [], []
    read, score = detector.read, detector.score
    monkeypatch.setattr(detector, "read", lambda *a, **k: reads.append(1) or read(*a, **k))
    monkeypatch.setattr(detector, "score", lambda prepared: scored.extend(prepared) or score(prepared))
    select = type(detector.preprocessor).__call__
    monkeypatch.setattr(
        type(detector.preprocessor), "__call__", lambda self, *a, **k: selections.append(1) or select(self, *a, **k)
    )
    result = explain_figure(detector, image, tmp_path / "fig.png")
    assert len(reads) == 1 and len(selections) == 1 and len(scored) == 1
    assert result["box"] == list(scored[0].box) and (tmp_path / "fig.png").stat().st_size > 0
