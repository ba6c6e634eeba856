"""``ssp-strata``: tiles ranked by texture, co-occurrences per stratum, the crop it is fed, and a head that learns."""

import numpy as np
import pytest
import torch

from ssp_detect.data.patch import texture_diversity
from ssp_detect.data.preprocess import Preprocessor, normalize
from ssp_detect.models import create_model, get_spec
from ssp_detect.models.cooccurrence import NUM_FEATURES
from ssp_detect.models.strata import ranked_tiles, strata_features, tiles_of
from tests.helpers import fit_full_batch
from tests.test_cooccurrence import reference_features


def reference_strata(crop: np.ndarray, tile: int = 32, share: float = 0.5, strata: int = 2) -> np.ndarray:
    """The features by their definition, for one (H, W, 3) uint8 crop: tiles in row-major order,
    sorted by the official per-crop texture score (Python's sort is stable), the simplest share kept,
    histograms averaged per group."""
    h, w = crop.shape[:2]
    tiles = [crop[y : y + tile, x : x + tile] for y in range(0, h, tile) for x in range(0, w, tile)]
    ranked = sorted(tiles, key=texture_diversity)[: round(len(tiles) * share)]
    per_group = len(ranked) // strata
    groups = [ranked[g * per_group : (g + 1) * per_group] for g in range(strata)]
    return np.concatenate([np.sqrt(np.mean([reference_features(t) ** 2 for t in group], axis=0)) for group in groups])


def _as_input(crops: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> the model's input, through the registry's own normalisation."""
    spec = get_spec("ssp-strata")
    return normalize(torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous(), spec.mean, spec.std)


def _textured_crop(rng: np.random.Generator, side: int = 128) -> np.ndarray:
    """A crop whose 32x32 tiles carry noise of different strengths (flat, faint and strong), plus ties."""
    sigmas = rng.choice([0.0, 0.0, 0.8, 2.0, 6.0, 20.0], size=(side // 32, side // 32))
    noise = np.kron(sigmas, np.ones((32, 32)))[..., None] * rng.normal(0, 1, (side, side, 3))
    return np.clip(np.rint(110 + noise + np.arange(side)[None, :, None] * 0.2), 0, 255).astype(np.uint8)


def test_features_are_the_cooccurrences_of_tiles_ranked_by_texture(rng):
    crops = np.stack([_textured_crop(rng) for _ in range(2)])
    got = strata_features(_as_input(crops)).numpy()
    assert got.shape == (2, 2 * NUM_FEATURES)
    np.testing.assert_allclose(got, np.stack([reference_strata(c) for c in crops]), atol=1e-6)
    every_tile_in_four = strata_features(_as_input(crops), share=1.0, strata=4).numpy()
    np.testing.assert_allclose(
        every_tile_in_four, np.stack([reference_strata(c, share=1.0, strata=4) for c in crops]), atol=1e-6
    )


def test_moving_tiles_around_changes_nothing_and_the_simplest_group_is_the_flattest_tiles(rng):
    sigmas = rng.permutation(np.linspace(0.5, 20, 16)).reshape(4, 4)  # one noise level per tile: no ties
    crop = np.clip(
        np.rint(110 + np.kron(sigmas, np.ones((32, 32)))[..., None] * rng.normal(0, 1, (128, 128, 3))), 0, 255
    ).astype(np.uint8)
    tiles = [crop[y : y + 32, x : x + 32] for y in range(0, 128, 32) for x in range(0, 128, 32)]
    assert len({texture_diversity(t) for t in tiles}) == 16
    order = rng.permutation(16)
    shuffled = np.concatenate(
        [np.concatenate([tiles[order[4 * r + c]] for c in range(4)], axis=1) for r in range(4)], axis=0
    )
    features = strata_features(_as_input(crop[None]))
    torch.testing.assert_close(features, strata_features(_as_input(shuffled[None])), atol=0, rtol=0)
    flattest = sorted(tiles, key=texture_diversity)[:4]
    np.testing.assert_allclose(
        features[0, :NUM_FEATURES].numpy(),
        np.sqrt(np.mean([reference_features(t) ** 2 for t in flattest], axis=0)),
        atol=1e-6,
    )
    assert not np.allclose(features[0, :NUM_FEATURES].numpy(), features[0, -NUM_FEATURES:].numpy())


def test_crops_that_do_not_tile_into_equal_groups_are_refused():
    with pytest.raises(ValueError, match="does not give 0.5 of its 32x32 tiles in 2 equal groups"):
        strata_features(torch.zeros(1, 3, 100, 128))
    with pytest.raises(ValueError, match="does not give"):
        strata_features(torch.zeros(1, 3, 32, 32))  # 1 tile: none kept
    with pytest.raises(ValueError, match="does not give"):
        strata_features(torch.zeros(1, 3, 32, 96), strata=3)  # 3 tiles: 2 kept, 3 groups asked
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        strata_features(torch.zeros(1, 1, 128, 128))


def test_it_is_fed_the_centre_crop_at_native_resolution(rng):
    pre = Preprocessor.for_model(get_spec("ssp-strata").feed)
    img = rng.integers(0, 256, (300, 517, 3), dtype=np.uint8)
    prepared = pre(img)
    x, y, w, h = prepared.box
    assert (x, y, w, h) == ((517 - 256) // 2, (300 - 256) // 2, 256, 256) and prepared.score == -1
    np.testing.assert_array_equal(prepared.pixels, img[y : y + 256, x : x + 256].transpose(2, 0, 1))  # no resampling
    assert prepared.searched_size == (517, 300)
    np.testing.assert_array_equal(pre.same_region(img, prepared), prepared.pixels)
    small = pre(rng.integers(0, 256, (120, 400, 3), dtype=np.uint8))  # shorter side below the crop: resized to 256x256
    assert small.box == (0, 0, 256, 256) and small.searched_size == (256, 256) and small.pixels.shape == (3, 256, 256)


def test_the_head_learns_noisy_tiles_against_smooth_ones(rng):
    torch.manual_seed(0)
    model = create_model("ssp-strata")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2 * NUM_FEATURES + 1

    def batch(n):
        labels = np.arange(n) % 2
        crops = np.stack(
            [
                _textured_crop(rng)
                if label == 0
                else np.clip(_textured_crop(rng).astype(int) // 4 * 4 + 2, 0, 255).astype(np.uint8)
                for label in labels
            ]
        )
        return _as_input(crops), torch.from_numpy(labels).float()

    x, y = batch(32)
    fit_full_batch(model, x, y, steps=40)
    test_x, test_y = batch(32)
    with torch.no_grad():
        predicted = (model(test_x) > 0).numpy()
    assert (predicted == test_y.numpy().astype(bool)).mean() >= 0.95


def test_trained_from_the_cli_it_tests_and_predicts_with_the_crop_box(tmp_path):
    from tests.helpers import train_test_predict

    res, report, rows = train_test_predict(tmp_path, "ssp-strata", "1e-2")
    assert res["pooled"]["auc"] > 0.9  # noisy reals against smooth fakes
    assert "centre 256x256 crop at native resolution" in report
    # The tree's 64x80 images are below the crop: resized to 256x256 and cropped whole.
    assert len(rows) == 48 and all(
        0.0 <= r["p_fake"] <= 1.0 and (r["x"], r["y"], r["w"], r["h"]) == (0, 0, 256, 256) for r in rows
    )
    real, fake = ([r["p_fake"] for r in rows if f"/{c}/" in r["path"]] for c in ("nature", "ai"))
    assert max(real) < min(fake)


def test_stratum_contributions_add_up_to_the_logit_and_name_the_tiles_read(rng):
    model = create_model("ssp-strata").eval()
    torch.manual_seed(0)
    torch.nn.init.normal_(model.head.weight)
    torch.nn.init.normal_(model.head.bias)
    x = _as_input(np.stack([_textured_crop(rng) for _ in range(3)]))
    with torch.no_grad():
        contributions = model.stratum_contributions(x)
        torch.testing.assert_close(contributions.sum(1) + model.head.bias, model(x))
        kept = model.kept_tiles(x)
    assert contributions.shape == (3, 2) and kept.shape == (
        3,
        2,
        4,
    )  # 16 tiles of a 128x128 crop, the simplest 8 in 2 strata
    tiles = tiles_of(x, 32)
    read = tiles[torch.arange(3)[:, None], kept.reshape(3, -1)]
    torch.testing.assert_close(read, ranked_tiles(x, 32)[:, :8], atol=0, rtol=0)


def test_explain_draws_the_strata_and_refuses_whole_image_models(tmp_path, capsys):
    from PIL import Image

    from ssp_detect.cli import main
    from tests.helpers import make_checkpoint, noisy_image, write_image

    image = write_image(tmp_path / "photo.png", noisy_image(np.random.default_rng(0), size=(300, 320)))
    out = tmp_path / "strata.png"
    assert (
        main(
            [
                "explain",
                str(image),
                "--weights",
                str(make_checkpoint(tmp_path / "s.pt", "ssp-strata")),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert Image.open(out).size[0] > 1000
    assert (
        main(
            [
                "explain",
                str(image),
                "--weights",
                str(make_checkpoint(tmp_path / "b.pt", "baseline-lite")),
                "--out",
                str(tmp_path / "b.png"),
            ]
        )
        == 2
    )
    assert "explain draws simple-patch models and ssp-strata only" in capsys.readouterr().err
