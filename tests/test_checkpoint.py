"""Checkpoint files: a calibrated copy of our checkpoints and of the official SSP format."""

import numpy as np
import pytest
import torch

from ssp_detect import Detector
from ssp_detect.models.checkpoint import (
    FORMAT,
    CheckpointError,
    infer_official_model,
    read_checkpoint_file,
    save_calibrated,
)
from ssp_detect.models.registry import create_model, get_spec
from tests.helpers import make_checkpoint, noisy_image

CALIBRATION = {"target_fpr": 0.05, "data": "d.csv", "split": "val", "metrics": {"acc": 0.9}}


def official_file(path, seed: int = 3):
    """An official-format SSP state dict of the ssp-lite architecture: labels real = 1 (the final
    layer of our convention negated), wrapped as ``{"model": {"module.<name>": tensor}}``."""
    torch.manual_seed(seed)
    state = create_model("ssp-lite").state_dict()
    state = {k: -v if k.startswith("disc.fc.") else v for k, v in state.items()}
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, path)
    return path


def test_calibrated_copy_of_an_official_checkpoint_makes_the_same_decisions(tmp_path, rng):
    source = official_file(tmp_path / "official.pth")
    out = tmp_path / "calibrated.pt"
    save_calibrated(out, source, threshold=0.37, calibration=CALIBRATION, model_name="ssp-lite")
    raw = read_checkpoint_file(out)
    assert raw["format"] == FORMAT and raw["model"] == "ssp-lite" and raw["threshold"] == 0.37
    assert raw["calibration"] == CALIBRATION and raw["preprocess"] == get_spec("ssp-lite").feed.to_dict()
    official = read_checkpoint_file(source)["model"]
    torch.testing.assert_close(raw["state_dict"]["disc.fc.weight"], -official["module.disc.fc.weight"], rtol=0, atol=0)
    images = [noisy_image(rng, (60 + 8 * i, 70), noise=3.0 * i) for i in range(6)]
    original = Detector.from_checkpoint(source, model_name="ssp-lite", threshold=0.37).predict(images)
    calibrated = Detector.from_checkpoint(out)
    assert calibrated.threshold == 0.37 and calibrated.loaded.source == "ssp-detect"
    copied = calibrated.predict(images)
    np.testing.assert_array_equal([d.p_fake for d in copied], [d.p_fake for d in original])
    assert [d.label for d in copied] == [d.label for d in original]
    assert len({round(d.p_fake, 6) for d in copied}) > 1  # distinct scores: the comparison can fail


def test_calibrated_copy_of_our_checkpoint_keeps_everything_else(tmp_path):
    source = make_checkpoint(tmp_path / "ours.pt", threshold=0.5)
    raw = read_checkpoint_file(source) | {"epoch": 4, "optimizer": {"state": {}, "param_groups": []}}
    torch.save(raw, source)
    out = tmp_path / "sub" / "calibrated.pt"
    save_calibrated(out, source, threshold=0.8, calibration=CALIBRATION, model_name="ignored-for-ours")
    copy = read_checkpoint_file(out)
    assert copy["threshold"] == 0.8 and copy["calibration"] == CALIBRATION
    assert {k: v for k, v in copy.items() if k not in ("threshold", "temperature", "calibration", "state_dict")} == {
        k: v for k, v in raw.items() if k not in ("threshold", "state_dict")
    }
    for k, v in raw["state_dict"].items():
        torch.testing.assert_close(copy["state_dict"][k], v, rtol=0, atol=0)
    assert Detector.from_checkpoint(out).threshold == 0.8


def test_official_architecture_is_inferred_or_refused():
    assert infer_official_model({"srm.kernel": torch.zeros(1)}) == "ssp"
    assert infer_official_model({"disc.fc.weight": torch.zeros(1)}) == "resnet50-baseline"
    with pytest.raises(CheckpointError, match="neither an ssp-detect checkpoint nor an official SSP state dict"):
        infer_official_model({"head.weight": torch.zeros(1)})
