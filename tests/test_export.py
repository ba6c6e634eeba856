"""Exports: every registered model as ONNX with p_fake within 1e-4 of PyTorch (official weights too),
the input contract in the graph, safetensors + JSON read back as the same detector, refusals in one
sentence, and the model card."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from ssp_detect.cli import main
from ssp_detect.data.preprocess import InputSpec, Preprocessor, normalize
from ssp_detect.detector import Detector
from ssp_detect.models import CheckpointError, list_models, load_model
from ssp_detect.models import registry as registry_module
from ssp_detect.models.card import model_card
from ssp_detect.models.export import ExportError, export_onnx, onnx_bytes
from ssp_detect.models.registry import ModelSpec
from ssp_detect.models.safetensors_io import config_path, save_safetensors
from tests.helpers import Counting, noisy_image, trained_like_checkpoint
from tests.reference.official import OfficialSSP

HEAVY = {"ssp", "ssp-gn", "ssp-native-gn", "resnet50-baseline", "essp"}  # ResNet-50s: seconds to export each


def image_batch(loaded, n: int = 12, seed: int = 3) -> torch.Tensor:
    """Model inputs made from images as the detector makes them: real patch selection on noisy gradients
    of several strengths (flat ones too: ties in the texture ranking) at several sizes."""
    rng = np.random.default_rng(seed)
    pre = Preprocessor.for_model(loaded.feed)
    pixels = [
        pre(noisy_image(rng, (int(rng.integers(40, 300)), int(rng.integers(40, 300))), noise=float(k % 4) * 6)).pixels
        for k in range(n)
    ]
    return normalize(torch.from_numpy(np.stack(pixels)), tuple(loaded.feed.mean), tuple(loaded.feed.std))


def p_fake_both_ways(loaded, graph: bytes, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ours = torch.sigmoid(loaded.model(x).float() / loaded.temperature).numpy()
    logit = session.run(["logit"], {"input": x.numpy()})[0]
    return ours, 1 / (1 + np.exp(-logit / loaded.temperature))


@pytest.mark.parametrize(
    "name", [n if n not in HEAVY else pytest.param(n, marks=pytest.mark.slow) for n in list_models()]
)
def test_every_registered_model_exports_with_p_fake_within_1e4(tmp_path, name):
    loaded = load_model(trained_like_checkpoint(tmp_path / "m.pt", name))
    x = image_batch(loaded, n=4 if name in HEAVY else 12)
    torch_p, onnx_p = p_fake_both_ways(loaded, onnx_bytes(loaded), x)
    assert np.abs(torch_p - onnx_p).max() <= 1e-4
    with torch.no_grad():
        logits = loaded.model(x).numpy()
    assert np.ptp(logits) > 0.05  # the weights make the output vary, so the comparison means something


@pytest.mark.slow
def test_official_weights_export_with_p_fake_within_1e4_and_the_official_decisions(tmp_path):
    torch.manual_seed(0)
    ref = OfficialSSP().eval()
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    torch.save(ref.state_dict(), tmp_path / "official.pth")  # plain state dict: srm.kernel, disc.*, real = 1
    loaded = load_model(tmp_path / "official.pth")
    assert loaded.source == "official" and loaded.name == "ssp"
    x = image_batch(loaded)
    torch_p, onnx_p = p_fake_both_ways(loaded, onnx_bytes(loaded), x)
    assert np.abs(torch_p - onnx_p).max() <= 1e-4
    with torch.no_grad():
        p_real = torch.sigmoid(ref(x).squeeze(1)).numpy()  # the official code's own output
    np.testing.assert_allclose(onnx_p, 1 - p_real, atol=1e-4)


def test_onnx_file_carries_the_input_contract(tmp_path):
    ckpt = trained_like_checkpoint(tmp_path / "m.pt", "ssp-cooc", threshold=0.7, temperature=1.5)
    loaded = load_model(ckpt)
    path = export_onnx(loaded, tmp_path / "out" / "model.onnx")
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["input"] == "patch" and meta["input_size"] == "32" and meta["model"] == "ssp-cooc"
    assert json.loads(meta["mean"]) == [0.0, 0.0, 0.0] and json.loads(meta["std"]) == pytest.approx([1 / 255] * 3)
    assert meta["label_convention"] == "real=0,fake=1"
    assert float(meta["threshold"]) == 0.7 and float(meta["temperature"]) == 1.5
    assert meta["checkpoint_sha256"] == loaded.sha256 and len(meta["checkpoint_sha256"]) == 64
    (inp,) = proto.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "input" and dims == ["batch", 3, 32, 32]
    assert not list(tmp_path.glob("out/*.tmp"))  # written atomically


def test_a_model_that_does_not_export_is_refused_in_one_sentence(tmp_path, monkeypatch):
    feed = InputSpec(mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))
    monkeypatch.setitem(registry_module._REGISTRY, "counting", ModelSpec("counting", Counting, feed))
    ckpt = trained_like_checkpoint(tmp_path / "c.pt", "counting")
    with pytest.raises(ExportError) as caught:
        export_onnx(load_model(ckpt), tmp_path / "c.onnx")
    message = str(caught.value)
    assert message.startswith("Model 'counting' does not export to ONNX") and "\n" not in message
    assert (
        message.endswith("score it with --backend torch, or export it with --format safetensors.")
        and not (tmp_path / "c.onnx").exists()
    )


def calibrated_checkpoint(tmp_path, name: str = "ssp-lite") -> str:
    calibration = {
        "temperature": 1.3,
        "threshold": 0.62,
        "target_fpr": 0.05,
        "n_real": 40,
        "n_fake": 38,
        "fpr": 0.05,
        "fpr_low": 0.014,
        "fpr_high": 0.169,
        "tpr": 0.71,
        "method": "target-fpr",
        "data": "data/holdout split val",
        "ece_before": 0.12,
        "ece_after": 0.05,
    }
    train_config = {
        "data": "data/demo",
        "layout": "genimage",
        "subsets": ["esrgan_x4plus"],
        "epochs": 12,
        "lr": 0.1,
        "jpeg_prob": 0.1,
        "jpeg_qual": [90, 100],
        "jpeg_method": ["pil"],
        "delivery_prob": 0.5,
    }
    metrics = {
        "val": {"n_real": 40, "n_fake": 38, "acc": 0.8, "auc": 0.9, "auc_low": 0.82, "auc_high": 0.96},
        "validation_data": "a fixed 20% holdout of the training images",
    }
    return trained_like_checkpoint(
        tmp_path / "cal.pt",
        name,
        threshold=0.62,
        temperature=1.3,
        calibration=calibration,
        train_config=train_config,
        metrics=metrics,
        epoch=7,
    )


def test_safetensors_round_trip_gives_the_same_detector(tmp_path, rng):
    original = load_model(calibrated_checkpoint(tmp_path))
    weights, config = save_safetensors(original, tmp_path / "export" / "model.safetensors")
    assert config == config_path(weights) and config.name == "model.safetensors.json"
    back = load_model(weights)
    assert (back.name, back.source, back.threshold, back.temperature, back.feed) == (
        original.name,
        original.source,
        original.threshold,
        original.temperature,
        original.feed,
    )
    for key in ("calibration", "train_config", "metrics", "epoch"):
        assert back.meta[key] == original.meta[key]
    assert back.meta["exported_from_sha256"] == original.sha256
    images = [noisy_image(rng, (90, 120), noise=n) for n in (0.0, 4.0, 12.0)]
    a = Detector(original, device="cpu", backend="torch").predict(images)
    b = Detector(load_model(weights), device="cpu", backend="torch").predict(images)
    assert [d.p_fake for d in a] == [d.p_fake for d in b] and [d.label for d in a] == [d.label for d in b]


def test_safetensors_of_official_weights_stay_official(tmp_path):
    torch.manual_seed(0)
    torch.save(OfficialSSP().state_dict(), tmp_path / "official.pth")
    original = load_model(tmp_path / "official.pth")
    weights, _ = save_safetensors(original, tmp_path / "official.safetensors")
    back = load_model(weights)
    assert back.source == "official" and back.name == "ssp" and back.temperature == 1.0
    state, ours = back.model.state_dict(), original.model.state_dict()
    assert all(torch.equal(state[k], ours[k]) for k in ours)  # the final layer stays negated once, not twice


def test_safetensors_without_its_config_is_refused_in_one_sentence(tmp_path):
    weights, config = save_safetensors(
        load_model(trained_like_checkpoint(tmp_path / "m.pt", "ssp-cooc")), tmp_path / "m.safetensors"
    )
    config.unlink()
    with pytest.raises(CheckpointError, match=r"has no config m\.safetensors\.json beside it") as caught:
        load_model(weights)
    assert "\n" not in str(caught.value)


def test_card_names_threshold_target_fpr_data_and_limits(tmp_path):
    card = model_card(load_model(calibrated_checkpoint(tmp_path)))
    assert "**0.6200**" in card and "target false-positive rate of **0.05**" in card
    assert "40 real" in card and "data/holdout split val" in card and "0.014-0.169" in card
    assert "`data/demo`" in card and "esrgan_x4plus" in card and "from epoch 7" in card
    assert "0.900 (95% interval 0.820-0.960)" in card
    assert "Temperature 1.3" in card and "not reliable yet" in card
    assert "JPEG p=0.1 quality [90, 100] (pil)" in card and "random deliveries" in card and "p=0.5" in card


def test_card_of_official_weights_says_what_is_not_recorded(tmp_path):
    torch.manual_seed(0)
    torch.save(OfficialSSP().state_dict(), tmp_path / "official.pth")
    card = model_card(load_model(tmp_path / "official.pth"))
    assert "official SSP release" in card and "Not recorded in the file" in card
    assert "Not calibrated: the default 0.5" in card and "Synthbuster" in card


def test_export_and_card_commands(tmp_path, capsys, rng):
    from tests.helpers import write_image

    ckpt = calibrated_checkpoint(tmp_path, "ssp-cooc")
    assert main(["export", ckpt, "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--card"]) == 0
    assert (tmp_path / "m.onnx").is_file() and "**0.6200**" in (tmp_path / "m.md").read_text()
    assert main(["export", ckpt, "--format", "safetensors", "--out", str(tmp_path / "m.safetensors")]) == 0
    image = write_image(tmp_path / "img.png", noisy_image(rng, (80, 90)))
    capsys.readouterr()
    assert main(["predict", str(image), "--weights", str(tmp_path / "m.safetensors"), "--format", "jsonl"]) == 0
    from_safetensors = json.loads(capsys.readouterr().out.splitlines()[0])["p_fake"]
    assert main(["predict", str(image), "--weights", ckpt, "--format", "jsonl", "--backend", "torch"]) == 0
    assert from_safetensors == pytest.approx(json.loads(capsys.readouterr().out.splitlines()[0])["p_fake"], abs=1e-4)
    assert main(["card", ckpt, "--out", str(tmp_path / "card.md")]) == 0
    assert "# Model card: cal.pt" in (tmp_path / "card.md").read_text()
    assert main(["export", ckpt, "--format", "onnx", "--out", str(tmp_path / "m.onnx" / "below-a-file.onnx")]) == 2
    assert "ssp export: error: Cannot write" in capsys.readouterr().err
