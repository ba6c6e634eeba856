"""Evaluation keeps memory flat: what it holds per image is a few numbers, never the image."""

import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

from ssp_detect.data.layouts import Sample
from ssp_detect.engine.evaluate import evaluate_model
from ssp_detect.models.loading import load_model

pytestmark = pytest.mark.slow


def _tree(folder, n, rng):
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        p = folder / f"{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(p)
        samples.append(Sample(str(p), i % 2, "s"))
    return samples


def _peak(loaded, samples):
    tracemalloc.start()
    summary, _ = evaluate_model(
        loaded, samples, device=torch.device("cpu"), precision="fp32", batch_size=64, workers=0, progress=False
    )
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert summary["n_images"] == len(samples)
    return peak


def test_evaluation_memory_does_not_grow_with_the_number_of_images(tmp_path, checkpoint_path):
    rng = np.random.default_rng(0)
    many = _tree(tmp_path / "imgs", 1200, rng)
    loaded = load_model(checkpoint_path)
    # One untraced pass first: pathlib interns every file name, and when Python's table of interned
    # strings grows it reallocates in one block (7.5 MB in a full test session), which is not ours.
    evaluate_model(loaded, many, device=torch.device("cpu"), precision="fp32", batch_size=64, workers=0, progress=False)
    small, large = _peak(loaded, many[:200]), _peak(loaded, many)
    # 1,000 more images of 6.9 KB each would add 7 MB if images were kept; predictions add ~0.1 MB.
    assert large - small < 2_000_000, (small, large)
