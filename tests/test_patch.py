import numpy as np
import pytest
import torch
from PIL import Image

from ssp_detect.data.patch import (
    candidate_scores,
    exhaustive_scores,
    image_corners,
    random_corners,
    select_simplest_patch,
    texture_diversity,
    texture_diversity_batch,
    texture_diversity_tensor,
)
from tests.helpers import numpy_seeded_corners
from tests.reference.official import official_select_patch, official_texture_score


def test_texture_diversity_hand_computed():
    p = np.zeros((2, 2, 3), dtype=np.uint8)
    p[:, :, 0] = [[0, 1], [2, 4]]
    # horizontal |0-1|+|2-4| = 3, vertical |0-2|+|1-4| = 5, diagonal |0-4| = 4, anti-diagonal |2-1| = 1
    assert texture_diversity(p) == 13
    p[:, :, 2] = [[0, 1], [2, 4]]
    assert texture_diversity(p) == 26
    assert texture_diversity(np.full((32, 32, 3), 200, np.uint8)) == 0


def test_texture_diversity_no_uint8_wraparound():
    p = np.zeros((2, 2, 3), dtype=np.uint8)
    p[0, 0, 0] = 255  # differences of 255, not (0 - 255) mod 256 = 1
    assert texture_diversity(p) == 255 * 3


def test_batch_scores_equal_official_per_crop_scores(rng):
    patches = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    got = texture_diversity_batch(patches)
    assert got.tolist() == [official_texture_score(p) for p in patches]
    assert texture_diversity_tensor(torch.from_numpy(patches.transpose(0, 3, 1, 2).copy())).tolist() == got.tolist()


@pytest.mark.parametrize("patch,channels", [(32, 3), (7, 3), (80, 3), (16, 1)])
def test_candidates_scored_in_place_equal_their_crops(rng, patch, channels):
    """The compiled loop reads crops from the image at their corners; uint16 accumulators up to
    64 pixels, int32 beyond (80)."""
    img = rng.integers(0, 256, (150, 170, channels), dtype=np.uint8)
    img[:60, :90] = 255 * (np.indices((60, 90)).sum(axis=0) % 2)[..., None]  # the largest differences
    corners = np.concatenate([random_corners(rng, 150, 170, patch, 40), [[0, 0], [150 - patch, 170 - patch]]])
    got = candidate_scores(img, corners, patch)
    assert got.tolist() == [official_texture_score(img[y : y + patch, x : x + patch]) for y, x in corners]
    transposed = np.asfortranarray(img)  # any memory layout
    assert candidate_scores(transposed, corners, patch).tolist() == got.tolist()


@pytest.mark.parametrize("corner", [(-1, 0), (0, -1), (150 - 31, 0), (0, 170 - 31)])
def test_candidates_outside_the_image_are_refused(rng, corner):
    img = rng.integers(0, 256, (150, 170, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="outside the image"):
        candidate_scores(img, np.array([[0, 0], corner]), 32)


def test_batch_scores_stay_exact_beyond_float32_integers():
    # A 0/255 checkerboard of 128x128 patches scores about 5e7, beyond float32's exact integers (2^24).
    board = (np.indices((128, 128)).sum(axis=0) % 2 * 255).astype(np.uint8)
    patches = np.stack([board, board, 255 - board], axis=-1)[None].repeat(2, axis=0)
    patches[1, 0, 0, :] = 3
    expected = [official_texture_score(p) for p in patches]
    assert texture_diversity_batch(patches).tolist() == expected and expected[0] > 2**24
    assert texture_diversity_tensor(torch.from_numpy(patches.transpose(0, 3, 1, 2).copy())).tolist() == expected


@pytest.mark.parametrize("mode", ["random", "seeded"])
def test_random_modes_pick_the_minimum_of_their_candidates(rng, mode):
    img = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    img[30:70, 40:100] //= 8  # a smoother region
    choice = select_simplest_patch(img, 32, mode, rng=np.random.default_rng(5), seed=3)
    assert len(choice.candidates) == 64
    scores = [official_texture_score(img[y : y + 32, x : x + 32]) for y, x in choice.candidates]
    assert choice.score == min(scores)
    first_min = int(np.argmin(scores))
    assert (choice.box[1], choice.box[0]) == tuple(choice.candidates[first_min])
    np.testing.assert_array_equal(
        choice.patch, img[choice.box[1] : choice.box[1] + 32, choice.box[0] : choice.box[0] + 32]
    )


def test_ties_keep_the_first_candidate():
    img = np.full((64, 64, 3), 7, np.uint8)  # every candidate scores 0
    choice = select_simplest_patch(img, 32, "random", rng=np.random.default_rng(0))
    assert (choice.box[1], choice.box[0]) == tuple(choice.candidates[0])


@pytest.mark.parametrize("shape,patch", [((40, 45, 3), 8), ((33, 70, 3), 32), ((50, 50, 3), 5)])
def test_exhaustive_equals_brute_force(rng, shape, patch):
    for _ in range(3):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        img[5:25, 3:30] = rng.integers(100, 110, (20, 27, 3))  # a calmer region somewhere
        brute = np.array(
            [
                [official_texture_score(img[y : y + patch, x : x + patch]) for x in range(shape[1] - patch + 1)]
                for y in range(shape[0] - patch + 1)
            ]
        )
        np.testing.assert_array_equal(exhaustive_scores(img, patch), brute)
        choice = select_simplest_patch(img, patch, "exhaustive")
        y, x = np.unravel_index(np.argmin(brute), brute.shape)  # first minimum in row-major order
        assert choice.box == (x, y, patch, patch) and choice.score == brute.min()


def test_seeded_mode_depends_on_image_not_call_order(rng):
    imgs = [rng.integers(0, 256, (100, 130, 3), dtype=np.uint8) for _ in range(5)]
    first = [select_simplest_patch(im, mode="seeded", seed=1).box for im in imgs]
    again = [select_simplest_patch(im, mode="seeded", seed=1).box for im in reversed(imgs)][::-1]
    assert first == again
    assert [select_simplest_patch(im, mode="seeded", seed=2).box for im in imgs] != first


def test_small_images_follow_the_official_resize_rule(rng):
    img = rng.integers(0, 256, (20, 300, 3), dtype=np.uint8)
    choice = select_simplest_patch(img, 32, "seeded")
    assert choice.resized and choice.patch.shape == (32, 32, 3)
    assert 0 <= choice.box[0] <= 256 - 32 and 0 <= choice.box[1] <= 256 - 32
    # Same as the reference's resize (PIL default resample) followed by a search on the result.
    resized = np.asarray(Image.fromarray(img).resize((256, 256)))
    x, y = choice.box[:2]
    np.testing.assert_array_equal(choice.patch, resized[y : y + 32, x : x + 32])


def test_vectorised_random_mode_equals_the_official_per_crop_path(rng):
    """Same corners in, same choice out: the official path (PIL crops, numpy score per crop,
    stable sort) against our gathered batch."""
    for k in range(5):
        img = rng.integers(0, 256, (70 + 9 * k, 90, 3), dtype=np.uint8)
        img[10:50, 10:60] = rng.integers(60, 66, (40, 50, 3))
        gen = torch.Generator().manual_seed(k)
        _, (top, left), score = official_select_patch(Image.fromarray(img), gen)
        gen = torch.Generator().manual_seed(k)
        from tests.reference.official import official_crop_boxes

        corners = np.array(official_crop_boxes(img.shape[1], img.shape[0], 64, gen))
        ours = candidate_scores(img, corners, 32)
        best = int(np.argmin(ours))
        assert (tuple(corners[best]), int(ours[best])) == ((top, left), score)


def test_seeded_corners_are_numpys_draws(rng):
    """The compiled draw reproduces numpy's SeedSequence -> PCG64 -> bounded integers exactly:
    many image sizes (ranges from 1 to thousands), patch sides and counts, and a Fortran-ordered
    image (same pixels, same fingerprint)."""
    for k in range(150):
        h, w = int(rng.integers(32, 3000)), int(rng.integers(32, 3000))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if k < 5 else np.full((h, w, 3), k, np.uint8)
        patch = int(rng.choice([1, 16, 32, min(h, w)]))
        seed, n = [0, 1, 2**31 + 7, 2**40 + 3, 2**64 - 1][k % 5], int(rng.choice([1, 64, 257]))
        np.testing.assert_array_equal(image_corners(img, seed, patch, n), numpy_seeded_corners(img, seed, patch, n))
    img = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        image_corners(np.asfortranarray(img), 3, 32, 64), numpy_seeded_corners(img, 3, 32, 64)
    )


def test_seeded_draw_refuses_bad_seeds_and_sizes(rng):
    img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="Seeds must be"):
        image_corners(img, -1, 32, 4)
    with pytest.raises(ValueError, match="No 48x48 patch fits"):
        image_corners(img, 0, 48, 4)


def test_random_corners_cover_every_valid_position():
    c = random_corners(np.random.default_rng(0), 34, 35, 32, 4000)
    assert set(map(tuple, c)) == {(y, x) for y in range(3) for x in range(4)}


def test_unknown_mode_is_rejected(rng):
    with pytest.raises(ValueError, match="Unknown patch mode"):
        select_simplest_patch(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), mode="best")
