from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, features

from ssp_detect.data.dataset import DetectionDataset, collate, make_loader
from ssp_detect.data.decode import load_rgb
from ssp_detect.data.layouts import DatasetError, list_image_files, load_samples
from ssp_detect.data.preprocess import Preprocessor
from tests.helpers import make_genimage_tree, noisy_image, write_image


def test_genimage_short_and_folder_names(tmp_path):
    root = make_genimage_tree(tmp_path / "g", subsets=("sdv4", "adm"), n=2)
    by_short = load_samples(root, split="val", subsets=["sdv4"])
    by_folder = load_samples(root, split="val", subsets=["imagenet_ai_0419_sdv4"])
    assert by_short == by_folder and {s.subset for s in by_short} == {"sdv4"}
    assert sorted(s.label for s in by_short) == [0, 0, 1, 1]
    assert {s.subset for s in load_samples(root, split="train")} == {"sdv4", "adm"}
    with pytest.raises(DatasetError, match="not found.*available: adm, sdv4"):
        load_samples(root, subsets=["midjourney"])
    with pytest.raises(DatasetError, match="no 'test' split"):
        load_samples(root, split="test")


def test_forensynths_with_and_without_class_folders(tmp_path, rng):
    root = tmp_path / "fs"
    for i in range(2):
        write_image(root / "progan" / "car" / "0_real" / f"{i}.png", noisy_image(rng))
        write_image(root / "progan" / "cat" / "1_fake" / f"{i}.png", noisy_image(rng))
        write_image(root / "stylegan" / "0_real" / f"{i}.png", noisy_image(rng))
        write_image(root / "stylegan" / "1_fake" / f"{i}.jpg", noisy_image(rng))
    samples = load_samples(root)
    assert {(s.subset, s.label) for s in samples} == {("progan", 0), ("progan", 1), ("stylegan", 0), ("stylegan", 1)}
    assert len(samples) == 8
    assert len(load_samples(root / "stylegan", layout="forensynths")) == 4
    assert {s.subset for s in load_samples(root, subsets=["stylegan"])} == {"stylegan"}


def test_folder_pair_and_csv(tmp_path, rng):
    for i in range(3):
        write_image(tmp_path / "r" / f"{i}.png", noisy_image(rng))
        write_image(tmp_path / "f" / "deep" / f"{i}.webp", noisy_image(rng))
    (tmp_path / "f" / "notes.txt").write_text("not an image")
    pair = load_samples(real=tmp_path / "r", fake=tmp_path / "f")
    assert sorted(s.label for s in pair) == [0, 0, 0, 1, 1, 1]
    (tmp_path / "m.csv").write_text(
        "path,label,generator\nr/0.png,real,\nf/deep/1.webp,ai,gan\n" + f"{tmp_path / 'r' / '1.png'},0,\n"
    )
    rows = load_samples(tmp_path / "m.csv")
    assert [(s.label, s.subset) for s in rows] == [(0, "custom"), (1, "gan"), (0, "custom")]
    assert rows[0].path == str(tmp_path / "r" / "0.png")
    (tmp_path / "bad.csv").write_text("path,label\nx.png,maybe\n")
    with pytest.raises(DatasetError, match="line 2: label 'maybe'"):
        load_samples(tmp_path / "bad.csv")
    with pytest.raises(DatasetError, match="Cannot tell the layout"):
        load_samples(tmp_path / "r")


def test_unreadable_images_are_skipped_and_reported_never_replaced(tmp_path, rng):
    root = make_genimage_tree(tmp_path / "g", subsets=("sdv4",), n=3, splits=("val",))
    bad = root / "imagenet_ai_0419_sdv4" / "val" / "ai" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    samples = load_samples(root, split="val")
    ds = DetectionDataset(samples, Preprocessor())
    batches = list(make_loader(ds, batch_size=4, workers=0))
    seen = torch.cat([b["index"] for b in batches]).tolist()
    errors = [e for b in batches for e in b["errors"]]
    broken = next(i for i, s in enumerate(samples) if s.path == str(bad))
    assert broken not in seen and len(seen) == len(samples) - 1
    assert errors and errors[0][0] == broken and "broken.png" in errors[0][1]


def test_seeded_patches_do_not_depend_on_workers_or_order(tmp_path):
    root = make_genimage_tree(tmp_path / "g", subsets=("sdv4",), n=6, splits=("val",))
    samples = load_samples(root, split="val")
    ds = DetectionDataset(samples, Preprocessor(mode="seeded", seed=3))

    def boxes(loader):
        out = {}
        for b in loader:
            out.update({int(i): tuple(bx.tolist()) for i, bx in zip(b["index"], b["box"], strict=True)})
        return out

    ref = boxes(make_loader(ds, batch_size=5, workers=0))
    shuffled = boxes(make_loader(ds, batch_size=3, workers=2, shuffle=True, generator=torch.Generator().manual_seed(9)))
    assert ref == shuffled and len(ref) == len(samples)
    # The patch depends on the image, not its path: a copy under another name gets the same patch.
    img = noisy_image(np.random.default_rng(0), noise=5)
    copies = [write_image(tmp_path / "a.png", img), write_image(tmp_path / "x" / "b.png", img)]
    from ssp_detect.data.layouts import Sample

    items = DetectionDataset([Sample(str(p), 0, "c") for p in copies], Preprocessor(mode="seeded"))
    assert items[0]["box"] == items[1]["box"]


def test_collate_of_only_failures():
    out = collate([{"index": 3, "error": "x.png is empty (0 bytes)."}])
    assert out["pixels"] is None and out["errors"] == [(3, "x.png is empty (0 bytes).")]


def _linked_tree(root, rng):
    """root/a/x.jpg, root/a/up -> root (a loop), root/linked -> other (y.png, z.heic, w.avif),
    root/dangling.jpg -> nowhere, root/self.jpg -> itself, root/gone -> a missing folder,
    root/notes.txt and root/old.txt -> nowhere (not images)."""
    write_image(root / "a" / "x.jpg", noisy_image(rng))
    other = root.parent / "other"
    for name in ("y.png", "z.heic", "w.avif"):
        (other / name).parent.mkdir(parents=True, exist_ok=True)
        (other / name).write_bytes(b"")  # names only: listing does not decode
    (root / "a" / "up").symlink_to(root)
    (root / "linked").symlink_to(other)
    (root / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    (root / "self.jpg").symlink_to(root / "self.jpg")
    (root / "gone").symlink_to(root / "missing-folder")
    (root / "notes.txt").write_text("not an image")
    (root / "old.txt").symlink_to(root / "nowhere.txt")
    return root


def test_listing_follows_linked_folders_once_and_lists_broken_links(tmp_path, rng):
    root = _linked_tree(tmp_path / "root", rng)
    got = [p[len(str(root)) + 1 :] for p in list_image_files(root)]
    assert got == ["a/x.jpg", "dangling.jpg", "gone", "linked/w.avif", "linked/y.png", "linked/z.heic", "self.jpg"]
    top = [p[len(str(root)) + 1 :] for p in list_image_files(root, recursive=False)]
    assert top == ["dangling.jpg", "gone", "self.jpg"]
    # Two links to one folder: it is listed once, under the name that comes first.
    (root / "b").symlink_to(root / "a")
    assert [p for p in list_image_files(root) if p.endswith("x.jpg")] == [str(root / "a" / "x.jpg")]


def test_layouts_see_linked_folders_and_phone_formats(tmp_path, rng):
    pixels = noisy_image(rng)
    real, fake = tmp_path / "real", tmp_path / "fake"
    write_image(real / "a.png", pixels)
    (tmp_path / "store").mkdir()
    Image.fromarray(pixels).save(tmp_path / "store" / "b.heic")
    (real / "phone").symlink_to(tmp_path / "store")
    write_image(fake / "c.jpg", pixels)
    if features.check("avif"):
        Image.fromarray(pixels).save(fake / "d.avif")
    samples = load_samples(real=real, fake=fake)
    names = sorted(Path(s.path).name for s in samples)
    assert names == sorted(["a.png", "b.heic", "c.jpg"] + (["d.avif"] if features.check("avif") else []))
    for s in samples:
        assert load_rgb(s.path).shape == (64, 80, 3)


def test_a_build_manifest_gives_each_sample_its_photo_history_and_collection(tmp_path):
    import json

    root = make_genimage_tree(tmp_path / "data", subsets=("sdv4",), n=2)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    manifest = [
        {
            "path": files[0],
            "photo_id": "pkg-a/photo1",
            "source": {"package": "pkg-a", "file": "x.jpg"},
            "jpeg_quality": 90,
            "jpeg_subsampling": "4:2:0",
        },
        {"path": files[1], "photo_id": "loose/photo2", "source": None},
    ]
    (root / "manifest.json").write_text(json.dumps({"images": manifest}))
    samples = load_samples(root, layout="genimage", split="train")
    by_path = {Path(s.path).relative_to(root).as_posix(): s for s in samples}
    first, second = by_path[files[0]], by_path[files[1]]
    assert (first.source, first.collection, first.jpeg_quality, first.jpeg_subsampling) == (
        "pkg-a/photo1",
        "pkg-a",
        90,
        "4:2:0",
    )
    assert (second.source, second.collection, second.jpeg_quality) == ("loose/photo2", None, None)
