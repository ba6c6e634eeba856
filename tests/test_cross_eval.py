"""The cross-evaluation runner and the evaluation runtime it shares with the other commands."""

import json

import numpy as np
import pytest
import torch

from ssp_detect.data.layouts import load_samples
from ssp_detect.data.preprocess import PatchOptions
from ssp_detect.engine.cross_eval import run_cross_eval
from ssp_detect.engine.scoring import EvalRuntime, check_unreadable
from ssp_detect.errors import UsageError
from ssp_detect.models.checkpoint import read_checkpoint_file, save_checkpoint
from ssp_detect.models.loading import load_model
from tests.helpers import make_checkpoint, make_genimage_tree


@pytest.fixture(scope="module")
def runtime():
    return EvalRuntime.resolve(device="cpu", workers=0, progress=False)


def test_runner_fills_the_matrix_with_each_checkpoints_per_subset_metric(tmp_path, runtime):
    root = make_genimage_tree(tmp_path / "g", subsets=("sdv4", "adm"), n=3, splits=("val",))
    samples = load_samples(root, split="val")
    # Random models score every smooth fake alike, just above the noisy reals: thresholds inside the
    # reals' scores (a) and above everything (b) give rows that differ.
    a = make_checkpoint(tmp_path / "a.pt", seed=1, threshold=0.34)
    raw = read_checkpoint_file(a)
    save_checkpoint(a, raw | {"train_config": {"subsets": ["sdv4"]}})  # named by what it was trained on
    b = make_checkpoint(tmp_path / "b.pt", seed=2, threshold=0.9)
    result = run_cross_eval([a, b], samples, runtime, out=tmp_path / "x", metric="real_acc")
    assert result.names == ["sdv4", "b"] and result.tests == ["adm", "sdv4"] and result.metric == "real_acc"
    assert result.matrix.shape == (2, 2)
    for row, weights in zip(result.matrix, (a, b), strict=False):
        summary, _ = runtime.evaluate(load_model(weights), samples)
        np.testing.assert_array_equal(row, [summary["subsets"][t]["real_acc"] for t in result.tests])
    assert result.matrix[1].tolist() == [1.0, 1.0] and result.matrix[0].min() < 1.0  # the rows are told apart
    written = json.loads((tmp_path / "x" / "per_checkpoint" / "01_b.json").read_text())
    assert written["subsets"]["adm"]["real_acc"] == result.matrix[1, 0]
    assert (tmp_path / "x" / "per_checkpoint" / "00_sdv4.md").is_file()
    named = run_cross_eval([a, b], samples, runtime, out=tmp_path / "y", names=["A", "B"])
    assert named.names == ["A", "B"] and named.metric == "acc"
    assert sorted(p.name for p in (tmp_path / "y" / "per_checkpoint").glob("*.json")) == ["00_A.json", "01_B.json"]


def test_runner_refuses_a_wrong_names_count_or_metric(tmp_path, runtime):
    with pytest.raises(UsageError, match="--names has 1 entries but --weights has 2; give one name per checkpoint"):
        run_cross_eval(["a.pt", "b.pt"], [], runtime, out=tmp_path, names=["A"])
    with pytest.raises(UsageError, match="Unknown cross-evaluation metric 'eer'"):
        run_cross_eval(["a.pt"], [], runtime, out=tmp_path, metric="eer")


def test_runtime_is_resolved_once_and_checked():
    rt = EvalRuntime.resolve(
        device="cpu", precision="auto", batch_size=8, workers=None, patch=PatchOptions("exhaustive")
    )
    assert rt.device == torch.device("cpu") and rt.precision == "auto" and rt.workers >= 0
    assert rt.keywords() == {
        "device": rt.device,
        "precision": "auto",  # resolved per model by evaluate_model: official weights keep fp32
        "batch_size": 8,
        "workers": rt.workers,
        "patch": PatchOptions("exhaustive"),
        "progress": True,
        "allow_truncated": False,
        "backend": "auto",
        "max_pixels": 100_000_000,
    }
    for bad in ({"batch_size": 0}, {"workers": -1}, {"decode": "gpu"}, {"precision": "fp16"}, {"max_pixels": 0}):
        with pytest.raises(UsageError):
            EvalRuntime.resolve(device="cpu", **bad)


def test_unreadable_images_are_skipped_unless_strict():
    clean = {"n_images": 5, "n_unreadable": 0, "unreadable": []}
    check_unreadable(clean, strict=True)
    unreadable = [{"path": "x.jpg", "error": "cut"}, {"path": "y.jpg", "error": "?"}]
    broken = {"n_images": 5, "n_unreadable": 2, "unreadable": unreadable}
    check_unreadable(broken, strict=False)
    from ssp_detect.data.decode import ImageDecodeError
    from ssp_detect.data.layouts import DatasetError

    with pytest.raises(ImageDecodeError, match="2 image\\(s\\) could not be read, e.g. x.jpg; drop --strict"):
        check_unreadable(broken, strict=True)
    for strict in (False, True):  # nothing to report on: an error either way
        with pytest.raises(DatasetError, match="None of the 2 image\\(s\\) could be read \\(the first: x.jpg\\)"):
            check_unreadable(broken | {"n_images": 2}, strict=strict)
