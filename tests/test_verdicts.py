"""Verdicts users can trust: uncertain with reasons, the stability check, refused numbers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from ssp_detect import Detector
from ssp_detect.data.degradations import jpeg_compress
from ssp_detect.data.preprocess import NO_TEXTURE_LEVEL, texture_level
from ssp_detect.models import CheckpointError, get_spec, load_model
from ssp_detect.stability import DELIVERIES
from ssp_detect.verdict import ScoreError, check_threshold, decide
from tests.helpers import make_checkpoint, noisy_image


class NoiseLevelNet(nn.Module):
    """A toy detector fed pixel values 0-255: its logit is ``gain * (level - texture level)``, so
    smoother inputs look faker; the level is chosen by the test."""

    def __init__(self, level: float, gain: float = 4.0) -> None:
        super().__init__()
        self.level, self.gain = level, gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = torch.tensor([texture_level(p.round().clamp(0, 255).to(torch.uint8).numpy()) for p in x.cpu()])
        return self.gain * (self.level - levels)


def toy_detector(tmp_path, level: float, **options) -> Detector:
    loaded = load_model(make_checkpoint(tmp_path / "cooc.pt", "ssp-cooc"))  # fed pixel values 0-255
    return Detector(dataclasses.replace(loaded, model=NoiseLevelNet(level)), device="cpu", backend="torch", **options)


def test_decide_labels_and_orders_reasons():
    assert decide(0.9, 0.5) == ("fake", ())
    assert decide(0.1, 0.5) == ("real", ())
    assert decide(0.5, 0.5) == ("fake", ())
    assert decide(0.53, 0.5, band=0.05) == ("uncertain", ("near-threshold",))
    assert decide(0.9, 0.5, band=0.05, reasons=["unstable", "no-texture"]) == ("uncertain", ("no-texture", "unstable"))


def test_a_flat_grey_image_is_uncertain_for_lack_of_texture(tmp_path):
    detector = toy_detector(tmp_path, level=1.0, uncertain_band=0.0)
    d = detector.predict(np.full((300, 300, 3), 128, np.uint8))
    assert d.label == "uncertain" and d.reasons == ("no-texture",) and d.p_fake > 0.5
    noisy = detector.predict(noisy_image(np.random.default_rng(0), (300, 300), noise=6.0))
    assert noisy.reasons == () and noisy.label in ("real", "fake")
    saturated = detector.predict(np.full((300, 300, 3), 255, np.uint8))
    assert "no-texture" in saturated.reasons


def test_crop_and_whole_image_models_read_their_own_region(tmp_path):
    flat = np.full((300, 300, 3), 40, np.uint8)
    for model in ("ssp-strata", "baseline-lite"):
        detector = Detector.from_checkpoint(make_checkpoint(tmp_path / f"{model}.pt", model), device="cpu")
        assert "no-texture" in detector.predict(flat).reasons
        assert "no-texture" not in detector.predict(noisy_image(np.random.default_rng(1), (300, 300), 6.0)).reasons


def test_a_small_image_is_uncertain_because_it_was_upscaled(tmp_path):
    detector = toy_detector(tmp_path, level=1.0, uncertain_band=0.0)
    d = detector.predict(noisy_image(np.random.default_rng(2), (20, 20), noise=10.0))
    assert d.label == "uncertain" and "upscaled" in d.reasons and d.searched_size == (256, 256)


def test_p_fake_near_the_threshold_is_uncertain(tmp_path):
    img = noisy_image(np.random.default_rng(3), (128, 128), noise=6.0)
    probe = toy_detector(tmp_path, level=0.0).predict(img)
    level = -np.log(1 / probe.p_fake - 1) / -4.0  # the texture level of the chosen patch
    at_threshold = toy_detector(tmp_path, level=float(level) + 0.01, uncertain_band=0.05).predict(img)
    assert at_threshold.label == "uncertain" and at_threshold.reasons == ("near-threshold",)
    assert toy_detector(tmp_path, level=float(level) + 0.01, uncertain_band=0.0).predict(img).reasons == ()


def test_a_verdict_that_flips_under_jpeg_is_unstable(tmp_path):
    rng = np.random.default_rng(4)
    img = noisy_image(rng, (256, 256), noise=3.0)
    detector = toy_detector(tmp_path, level=0.0)
    original = detector.prepare_inputs(img)[0].texture
    after_jpeg = detector.preprocessor(jpeg_compress(img, 75, "pil", "4:2:0")).texture
    assert after_jpeg < original  # JPEG smooths the noise the toy model reads
    flips = toy_detector(tmp_path, level=(original + after_jpeg) / 2, uncertain_band=0.0)
    d = flips.predict(img, stability=True)
    assert d.stability is not None and not d.stability.holds
    assert d.label == "uncertain" and d.reasons == ("unstable",)
    assert set(d.stability.p_fake) == set(DELIVERIES)
    assert d.stability.p_min <= d.p_fake <= d.stability.p_max
    assert d.stability.p_fake["png"] == pytest.approx(d.p_fake)  # lossless: the same pixels
    steady = toy_detector(tmp_path, level=original + 5.0, uncertain_band=0.0).predict(img, stability=True)
    assert steady.stability.holds and steady.label == "fake" and steady.reasons == ()
    assert "stability" in d.to_dict() and d.to_row()["most_moved"] == d.stability.most_moved


def test_stability_costs_one_batch_per_image(tmp_path, monkeypatch):
    detector = toy_detector(tmp_path, level=1.0)
    sizes = []
    score = detector.score
    monkeypatch.setattr(detector, "score", lambda prepared: sizes.append(len(prepared)) or score(prepared))
    detector.predict([noisy_image(np.random.default_rng(i), (64, 64)) for i in range(3)], stability=True)
    assert sizes == [3 * (1 + len(DELIVERIES))] and 1 + len(DELIVERIES) == 8


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1, 1.5, "high"])
def test_thresholds_outside_0_1_are_refused(tmp_path, bad):
    with pytest.raises(ScoreError, match="threshold"):
        check_threshold(bad)
    with pytest.raises(ScoreError):
        Detector.from_checkpoint(make_checkpoint(tmp_path / "m.pt"), device="cpu", threshold=bad)
    path = make_checkpoint(tmp_path / "stored.pt", threshold=bad)
    with pytest.raises(CheckpointError, match="stored.pt"):
        load_model(path)


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path):
    path = make_checkpoint(tmp_path / "nan.pt", "ssp-cooc")
    raw = torch.load(path, weights_only=True)
    raw["state_dict"]["head.weight"][0, 0] = float("nan")
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="non-finite weights"):
        load_model(path)
    for bad in (float("inf"), float("-inf")):
        raw["state_dict"]["head.weight"][0, 0] = bad
        torch.save(raw, path)
        with pytest.raises(CheckpointError, match="non-finite weights"):
            load_model(path)
    # large finite weights whose sum overflows float32 are not broken
    raw["state_dict"]["head.weight"][0, :2] = 3e38
    torch.save(raw, path)
    assert float(load_model(path).model.head.weight[0, 0]) == pytest.approx(3e38)


def test_a_model_that_outputs_nan_gives_an_error_not_a_label(tmp_path):
    class NaNNet(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0],), float("nan"))

    loaded = load_model(make_checkpoint(tmp_path / "m.pt", "ssp-cooc"))
    detector = Detector(dataclasses.replace(loaded, model=NaNNet()), device="cpu", backend="torch")
    with pytest.raises(ScoreError, match="non-finite"):
        detector.predict(noisy_image(np.random.default_rng(5)))


def test_a_checkpoint_with_patch_size_0_is_refused(tmp_path):
    path = make_checkpoint(tmp_path / "p0.pt")
    raw = torch.load(path, weights_only=True)
    raw["preprocess"]["patch_size"] = 0
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="patch size"):
        load_model(path)


def test_no_texture_level_separates_flat_from_camera_noise():
    rng = np.random.default_rng(6)
    flat = np.full((3, 32, 32), 200, np.uint8)
    faint = np.clip(128 + rng.normal(0, 0.6, (3, 32, 32)), 0, 255).astype(np.uint8)
    assert texture_level(flat) == 0 < NO_TEXTURE_LEVEL < texture_level(faint)
    assert get_spec("ssp").input == "patch"


def test_training_calibrates_best_pt_for_the_target_fpr(tmp_path):
    from ssp_detect.config import build_config
    from ssp_detect.engine.train import train
    from ssp_detect.models.checkpoint import read_checkpoint_file
    from tests.helpers import make_genimage_tree

    root = make_genimage_tree(tmp_path / "data", subsets=("sdv4",), n=20)
    cfg = build_config(
        None,
        {
            "data": str(root),
            "model": "ssp-cooc",
            "epochs": 2,
            "batch_size": 8,
            "lr": 0.05,
            "workers": 0,
            "out": str(tmp_path / "run"),
            "progress": False,
            "val_fraction": 0.3,
            "target_fpr": 0.1,
        },
    )
    result = train(cfg)
    stored = read_checkpoint_file(result["best"])
    calibration = stored["calibration"]
    assert calibration["method"] == "target-fpr" and calibration["target_fpr"] == 0.1
    assert stored["threshold"] == calibration["threshold"] and calibration["fpr"] <= 0.1
    assert calibration["n_real"] > 0 and calibration["fpr_low"] <= calibration["fpr"] <= calibration["fpr_high"]
    assert "holdout" in calibration["data"]
    loaded = load_model(result["best"])
    assert loaded.threshold == stored["threshold"] and loaded.temperature == stored["temperature"] > 0


def test_the_temperature_divides_the_logit(tmp_path):
    path = make_checkpoint(tmp_path / "t.pt", "ssp-cooc")
    raw = torch.load(path, weights_only=True)
    img = noisy_image(np.random.default_rng(7), (96, 96), noise=5.0)
    plain = Detector.from_checkpoint(path, device="cpu").predict(img).p_fake
    raw["temperature"] = 4.0
    torch.save(raw, path)
    softened = Detector.from_checkpoint(path, device="cpu").predict(img).p_fake
    logit = np.log(plain / (1 - plain))
    assert softened == pytest.approx(1 / (1 + np.exp(-logit / 4.0)), rel=1e-5)


def test_evaluation_counts_uncertain_images_apart(tmp_path):
    from ssp_detect.data.layouts import Sample
    from ssp_detect.engine.evaluate import evaluate_model
    from ssp_detect.engine.report import markdown_table
    from tests.helpers import write_image

    rng = np.random.default_rng(8)
    paths = [write_image(tmp_path / f"r{i}.png", noisy_image(rng, (96, 96), 10.0)) for i in range(4)]
    paths += [
        write_image(tmp_path / "flat.png", np.full((96, 96, 3), 90, np.uint8)),
        write_image(tmp_path / "tiny.png", noisy_image(rng, (16, 16), 10.0)),
    ]
    samples = [Sample(str(p), int(i >= 2), "set") for i, p in enumerate(paths)]
    loaded = load_model(make_checkpoint(tmp_path / "m.pt", "ssp-cooc"))
    summary, preds = evaluate_model(
        loaded,
        samples,
        device=torch.device("cpu"),
        precision="fp32",
        batch_size=4,
        workers=0,
        progress=False,
        uncertain_band=0.0,
    )
    pooled = summary["pooled"]
    assert pooled["n_uncertain"] == 2 and pooled["coverage"] == pytest.approx(4 / 6)
    decided = ~np.isin(preds.index, [4, 5])
    calls = preds.p_fake[decided] >= summary["threshold"]
    assert pooled["decided_acc"] == pytest.approx(float(np.mean(calls == preds.label[decided].astype(bool))))
    assert "decided %" in markdown_table(summary) and "66.7" in markdown_table(summary)
    wide, _ = evaluate_model(
        loaded,
        samples,
        device=torch.device("cpu"),
        precision="fp32",
        batch_size=4,
        workers=0,
        progress=False,
        uncertain_band=0.5,
    )
    assert wide["pooled"]["coverage"] == 0.0 and wide["pooled"]["auc"] == pooled["auc"]  # AUC stays on every image


def test_predict_cli_shows_reasons_and_stability_in_every_format(tmp_path, capsys):
    import csv
    import json

    from ssp_detect.cli import main
    from tests.helpers import write_image

    tiny = write_image(tmp_path / "tiny.png", noisy_image(np.random.default_rng(9), (20, 20), 8.0))
    odd = write_image(tmp_path / "two\nlines.png", noisy_image(np.random.default_rng(10), (64, 64), 8.0))
    weights = str(make_checkpoint(tmp_path / "m.pt", "ssp-cooc"))
    assert main(["predict", str(tiny), str(odd), "--weights", weights, "--stability", "--uncertain-band", "0"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 3 and table[1].startswith("uncertain") and "[upscaled]" in table[1]
    assert "over deliveries, most moved by" in table[1] and "two\\nlines.png" in table[2]
    assert main(["predict", str(tiny), "--weights", weights, "--format", "json", "--stability"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (
        row["label"] == "uncertain" and "upscaled" in row["reasons"] and row["p_min"] <= row["p_fake"] <= row["p_max"]
    )
    assert main(["predict", str(tiny), "--weights", weights, "--format", "csv"]) == 0
    (row,) = csv.DictReader(capsys.readouterr().out.splitlines())
    assert "upscaled" in row["reasons"].split(";") and row["p_min"] == ""
    for flag, bad in (
        ("--threshold", "nan"),
        ("--threshold", "1.5"),
        ("--threshold", "-0.1"),
        ("--uncertain-band", "0.7"),
    ):
        with pytest.raises(SystemExit) as stop:  # argparse: one line on stderr, exit status 2
            main(["predict", str(tiny), "--weights", weights, flag, bad])
        assert stop.value.code == 2 and f"{flag}: The" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_refused_and_scored_only_when_allowed(tmp_path, capsys, fmt):
    import io
    import json

    from PIL import Image

    from ssp_detect.cli import main

    buf = io.BytesIO()
    Image.fromarray(noisy_image(np.random.default_rng(11), (160, 160), 8.0)).save(buf, fmt)
    data = buf.getvalue()
    weights = str(make_checkpoint(tmp_path / "m.pt", "ssp-cooc"))
    for share in (0.3, 0.6, 0.9):
        cut = data[: int(share * len(data))] + (b"\xff\xd9" if fmt == "JPEG" else b"")
        path = tmp_path / f"cut{int(share * 100)}.{fmt.lower()}"
        path.write_bytes(cut)
        assert main(["predict", str(path), "--weights", weights, "--format", "json"]) == 1  # nothing scored
        (row,) = json.loads(capsys.readouterr().out)
        assert row["p_fake"] is None and "truncated or corrupt" in row["error"]
        assert main(["predict", str(path), "--weights", weights, "--format", "json", "--allow-truncated"]) == 0
        (row,) = json.loads(capsys.readouterr().out)
        assert row["label"] == "uncertain" and "truncated" in row["reasons"] and 0 <= row["p_fake"] <= 1
    whole = tmp_path / f"whole.{fmt.lower()}"
    whole.write_bytes(data)
    assert main(["predict", str(whole), "--weights", weights, "--format", "json"]) == 0
    assert "truncated" not in json.loads(capsys.readouterr().out)[0]["reasons"]
