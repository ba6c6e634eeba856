"""What ``ssp predict`` is given -> the image paths it reports on: nothing dropped silently."""

import pytest

from ssp_detect.data.decode import ImageDecodeError, load_rgb
from ssp_detect.predict_io import iter_image_paths
from tests.helpers import noisy_image, write_image


def test_folders_follow_links_and_report_broken_ones(tmp_path, rng):
    root = tmp_path / "photos"
    write_image(root / "2024" / "a.jpg", noisy_image(rng))
    write_image(tmp_path / "elsewhere" / "b.png", noisy_image(rng))
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    (root / "2024" / "loop").symlink_to(root)  # a link back up: each real folder is listed once
    (root / "dangling.jpg").symlink_to(tmp_path / "deleted.jpg")
    (root / "self.jpg").symlink_to(root / "self.jpg")
    got = list(iter_image_paths([str(root)], recursive=True))
    assert got == [str(root / p) for p in ("2024/a.jpg", "dangling.jpg", "linked/b.png", "self.jpg")]
    assert list(iter_image_paths([str(root)])) == [str(root / "dangling.jpg"), str(root / "self.jpg")]
    assert load_rgb(got[2]).shape == (64, 80, 3)
    with pytest.raises(ImageDecodeError, match=r"dangling\.jpg is a link to .*deleted\.jpg, which does not exist\."):
        load_rgb(got[1])
    with pytest.raises(ImageDecodeError, match=r"self\.jpg is a link that loops back on itself\."):
        load_rgb(got[3])


def test_globs_and_names(tmp_path, rng):
    for name in ("b.jpg", "a.jpg", "c.png"):
        write_image(tmp_path / name, noisy_image(rng))
    assert list(iter_image_paths([str(tmp_path / "*.jpg")])) == [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]
    pattern = str(tmp_path / "*.webp")
    missing = str(tmp_path / "gone.png")
    assert list(iter_image_paths([pattern, missing])) == [pattern, missing]  # reported, not dropped
    with pytest.raises(ImageDecodeError, match=r"\*\.webp matches no file\.$"):
        load_rgb(pattern)
    with pytest.raises(ImageDecodeError, match=r"gone\.png does not exist\.$"):
        load_rgb(missing)
