"""``ssp-cooc``: co-occurrence features against a direct numpy count, and a head that learns."""

import numpy as np
import pytest
import torch

from ssp_detect.data.preprocess import normalize
from ssp_detect.models import create_model, get_spec
from ssp_detect.models.cooccurrence import BINS, NUM_FEATURES, cooccurrence_features
from tests.helpers import fit_full_batch


def _codes(residual: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(residual), -2, 2).astype(np.int64) + 2


def _histogram(*codes: np.ndarray) -> np.ndarray:
    counts = np.zeros(BINS)
    np.add.at(counts, np.ravel_multi_index(tuple(c.ravel() for c in codes), (5, 5, 5)), 1)
    return counts / codes[0].size


def reference_features(patch: np.ndarray) -> np.ndarray:
    """The features by their definition, for one (S, S, 3) uint8 patch, with numpy's diff."""
    x = patch.astype(np.int64)
    parts = []
    for order in (1, 2, 3):
        rows = [_codes(np.diff(x[..., c], n=order, axis=1)) for c in range(3)]
        cols = [_codes(np.diff(x[..., c], n=order, axis=0)) for c in range(3)]
        h = _histogram(*(np.concatenate([r[:, k : r.shape[1] - 2 + k].ravel() for r in rows]) for k in range(3)))
        v = _histogram(*(np.concatenate([r[k : r.shape[0] - 2 + k].ravel() for r in cols]) for k in range(3)))
        parts.append((h + v) / 2)
    for order in (1, 2):
        for axis in (1, 0):
            r, g, b = (_codes(np.diff(x[..., c], n=order, axis=axis)) for c in range(3))
            parts.append(_histogram(r, g, b))
    return np.sqrt(np.concatenate(parts))


def _batch(patches: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> the model's input, through the registry's own normalisation."""
    spec = get_spec("ssp-cooc")
    return normalize(torch.from_numpy(patches).permute(0, 3, 1, 2).contiguous(), spec.mean, spec.std)


@pytest.mark.parametrize("noise", [1.0, 3.0, 40.0])
def test_features_are_the_counted_cooccurrences(rng, noise):
    patches = np.clip(rng.normal(120, noise, (3, 32, 32, 3)) + np.arange(32)[None, :, None, None], 0, 255).astype(
        np.uint8
    )
    got = cooccurrence_features(_batch(patches)).numpy()
    assert got.shape == (3, NUM_FEATURES) == (3, 875)
    np.testing.assert_allclose(got, np.stack([reference_features(p) for p in patches]), atol=1e-6)


def test_a_flat_patch_puts_every_count_in_the_all_zero_bin():
    features = cooccurrence_features(_batch(np.full((1, 32, 32, 3), 77, np.uint8)))[0]
    expected = np.zeros((7, BINS))
    expected[:, 2 * 25 + 2 * 5 + 2] = 1.0  # three residuals of 0, each code 2
    np.testing.assert_allclose(features.numpy(), expected.ravel(), atol=1e-6)


def test_input_is_rounded_to_pixel_values_and_autocast_does_not_touch_it(rng):
    patches = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    exact = torch.from_numpy(patches).permute(0, 3, 1, 2).float()
    normalised = _batch(patches)
    assert (normalised - exact).abs().max() > 0  # the registry's normalisation is not bit-exact
    torch.testing.assert_close(cooccurrence_features(normalised), cooccurrence_features(exact), atol=0, rtol=0)
    model = create_model("ssp-cooc").eval()
    torch.nn.init.normal_(model.head.weight)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(normalised)
    with torch.no_grad():
        full = model(normalised)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, full, atol=0, rtol=0)


def test_patches_too_small_or_not_rgb_are_refused():
    with pytest.raises(ValueError, match="S >= 5"):
        cooccurrence_features(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 3, S, S\)"):
        cooccurrence_features(torch.zeros(1, 1, 32, 32))


def _smooth_or_noisy(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gradients with random slopes; half get sensor-like noise of sigma 1.5 (label 0), half none (label 1)."""
    ramp = np.arange(32, dtype=float)
    base = (
        100
        + rng.uniform(-3, 3, (n, 1, 1, 1)) * ramp[None, None, :, None]
        + rng.uniform(-3, 3, (n, 1, 1, 1)) * ramp[None, :, None, None]
        + rng.uniform(-40, 40, (n, 1, 1, 3))
    )
    labels = np.arange(n) % 2
    noise = rng.normal(0, 1.5, base.shape) * (labels == 0)[:, None, None, None]
    return np.clip(np.rint(base + noise), 0, 255).astype(np.uint8), labels


def test_the_head_learns_noise_against_no_noise(rng):
    torch.manual_seed(0)
    model = create_model("ssp-cooc")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == NUM_FEATURES + 1
    patches, labels = _smooth_or_noisy(rng, 64)
    x, y = _batch(patches), torch.from_numpy(labels).float()
    loss = fit_full_batch(model, x, y, steps=60)
    test_patches, test_labels = _smooth_or_noisy(rng, 64)
    with torch.no_grad():
        predicted = (model(_batch(test_patches)) > 0).numpy()
    assert loss < 0.1
    assert (predicted == test_labels.astype(bool)).mean() >= 0.95


def test_trained_from_the_cli_it_tests_and_predicts(tmp_path):
    from tests.helpers import train_test_predict

    res, _, rows = train_test_predict(tmp_path, "ssp-cooc", "1e-2")
    assert res["pooled"]["auc"] > 0.9  # noisy reals against smooth fakes
    assert len(rows) == 48 and all(0.0 <= r["p_fake"] <= 1.0 and r["w"] == 32 for r in rows)
    real, fake = ([r["p_fake"] for r in rows if f"/{c}/" in r["path"]] for c in ("nature", "ai"))
    assert max(real) < min(fake)
