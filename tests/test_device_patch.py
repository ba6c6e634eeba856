"""Patch selection and JPEG decoding on the model's device give what the CPU path gives."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ssp_detect.cli import main
from ssp_detect.data import device_decode
from ssp_detect.data.decode import (
    ImageDecodeError,
    TruncatedImageError,
    apply_orientation,
    load_rgb,
    read_device_jpeg,
)
from ssp_detect.data.device_decode import EncodedImageDataset, collate_encoded, decode_jpegs, orient_chw
from ssp_detect.data.device_patch import select_patches_on_device
from ssp_detect.data.layouts import GENIMAGE_SUBSETS, Sample, load_samples
from ssp_detect.data.patch import select_simplest_patch
from ssp_detect.data.preprocess import PatchOptions
from ssp_detect.engine.evaluate import evaluate_model
from ssp_detect.models.loading import load_model
from tests.helpers import make_genimage_tree, noisy_image, write_image

# torchvision 0.29 deprecates its image decoders in favour of TorchCodec; they still work.
pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning"
)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _images(rng):
    """Random images of several sizes: a calmer region, one below the patch size, one made of ties."""
    imgs = []
    for h, w in [(90, 120), (33, 70), (64, 64), (200, 150), (41, 257)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img[5 : h // 2, 3 : w // 2] //= 16
        imgs.append(img)
    imgs.append(rng.integers(0, 256, (20, 300, 3), dtype=np.uint8))  # shorter side below 32: resized to 256x256
    imgs.append(np.full((64, 80, 3), 7, np.uint8))  # every candidate scores 0: the first one wins
    return imgs


def _assert_same_choices(imgs, device, patch_size, mode, **kwargs):
    rngs = [np.random.default_rng(k) for k in range(len(imgs))]
    got = select_patches_on_device(
        [torch.from_numpy(im).permute(2, 0, 1).to(device) for im in imgs], patch_size, mode, rngs=rngs, **kwargs
    )
    assert got.patches.device.type == torch.device(device).type and got.patches.shape == (
        len(imgs),
        3,
        patch_size,
        patch_size,
    )
    for k, img in enumerate(imgs):
        want = select_simplest_patch(img, patch_size, mode, rng=np.random.default_rng(k), **kwargs)
        assert (
            tuple(got.boxes[k].tolist()) == want.box
            and int(got.scores[k]) == want.score
            and got.resized[k] == want.resized
        )
        np.testing.assert_array_equal(got.patches[k].permute(1, 2, 0).cpu().numpy(), want.patch)


@pytest.mark.parametrize("mode", ["seeded", "random", "exhaustive"])
@pytest.mark.parametrize("patch_size,num_candidates", [(32, None), (8, 5)])
def test_device_selection_equals_the_cpu_selection(rng, mode, patch_size, num_candidates):
    _assert_same_choices(_images(rng), "cpu", patch_size, mode, num_candidates=num_candidates, seed=3)


def test_device_selection_stays_exact_in_float64(rng):
    # 128x128 patches can score beyond float32's exact integers, so scoring switches to float64.
    imgs = [
        rng.integers(0, 256, (300, 260, 3), dtype=np.uint8),
        (np.indices((200, 140)).sum(axis=0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, 2),
    ]
    _assert_same_choices(imgs, "cpu", 128, "seeded", num_candidates=6)
    assert int(select_patches_on_device([torch.from_numpy(imgs[1]).permute(2, 0, 1)], 128, "seeded").scores[0]) > 2**24


def test_device_selection_rejects_bad_input():
    img = torch.zeros(3, 40, 40, dtype=torch.uint8)
    with pytest.raises(ValueError, match="Unknown patch mode"):
        select_patches_on_device([img], mode="best")
    with pytest.raises(ValueError, match="one generator per image"):
        select_patches_on_device([img, img], mode="random", rngs=[np.random.default_rng(0)])


def _jpeg_bytes(path):
    return torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)


def test_jpeg_batch_failure_falls_back_to_one_error_per_file(tmp_path, rng, monkeypatch):
    good = write_image(tmp_path / "good.jpg", noisy_image(rng))
    full = write_image(tmp_path / "cut.jpg", noisy_image(rng)).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full[: len(full) // 2])  # a valid header, truncated pixel data
    out = decode_jpegs([_jpeg_bytes(good), _jpeg_bytes(cut)], [str(good), str(cut)], torch.device("cpu"))
    np.testing.assert_array_equal(out[0].permute(1, 2, 0).numpy(), load_rgb(good))  # libjpeg-turbo in both
    with pytest.raises(ImageDecodeError) as pil_error:
        load_rgb(cut)
    assert isinstance(out[1], ImageDecodeError) and str(out[1]) == str(pil_error.value) and "truncated" in str(out[1])
    # A file only torchvision refuses (as nvJPEG may) is decoded by PIL, not dropped.
    real_decode = device_decode.decode_jpeg

    def refuse_good(data, **kwargs):
        if isinstance(data, list) or data.numel() == good.stat().st_size:
            raise RuntimeError("refused")
        return real_decode(data, **kwargs)

    monkeypatch.setattr(device_decode, "decode_jpeg", refuse_good)
    other = write_image(tmp_path / "other.jpg", noisy_image(rng, (50, 60)))
    out = decode_jpegs([_jpeg_bytes(good), _jpeg_bytes(other)], [str(good), str(other)], torch.device("cpu"))
    np.testing.assert_array_equal(out[0].permute(1, 2, 0).numpy(), load_rgb(good))
    np.testing.assert_array_equal(out[1].permute(1, 2, 0).numpy(), load_rgb(other))


def test_workers_ship_jpeg_bytes_other_formats_as_pixels_and_refuse_what_load_rgb_refuses(tmp_path, rng):
    img = noisy_image(rng, (40, 50))
    files = [
        write_image(tmp_path / "a.jpg", img),
        write_image(tmp_path / "b.png", img),
        tmp_path / "c.jpg",
        tmp_path / "d.jpg",
        tmp_path / "e.jpg",
    ]
    Image.fromarray(img).convert("CMYK").save(files[2])  # CMYK JPEGs are decoded by PIL in the worker
    files[3].write_bytes(files[0].read_bytes() + b"trailer")  # no end marker at the end: PIL decodes it
    files[4].write_bytes(files[0].read_bytes()[:-300])  # truncated: refused in the worker, as PIL refuses it
    ds = EncodedImageDataset([Sample(str(p), 1, "s") for p in files])
    assert [ds[i]["image"].shape for i in range(4)] == [
        (files[0].stat().st_size,),
        (3, 40, 50),
        (3, 40, 50),
        (3, 40, 50),
    ]
    for i in (2, 3):
        np.testing.assert_array_equal(ds[i]["image"].permute(1, 2, 0).numpy(), load_rgb(files[i]))
    with pytest.raises(ImageDecodeError) as truncated:
        load_rgb(files[4])
    assert ds[4] == {"index": 4, "error": str(truncated.value)} and "truncated" in ds[4]["error"]
    small = EncodedImageDataset(ds.samples, max_pixels=1000)
    with pytest.raises(ImageDecodeError) as refused:
        load_rgb(files[0], max_pixels=1000)
    assert small[0] == {"index": 0, "error": str(refused.value)} and "over the limit of 1,000" in small[0]["error"]


def _mixed_tree(root, rng):
    """A GenImage tree of PNGs, plus JPEGs (one small, one greyscale), a truncated JPEG, a JPEG that
    is not an image at all, and one whose header is fine but whose Huffman table is broken (the
    worker's check of the data refuses it before any device decoder sees it)."""
    make_genimage_tree(root, subsets=("sdv4",), n=3, splits=("val",))
    folder = root / GENIMAGE_SUBSETS["sdv4"] / "val"
    for i in range(3):
        write_image(folder / "nature" / f"rj{i}.jpg", noisy_image(rng, (60 + 7 * i, 90), noise=12.0))
        write_image(folder / "ai" / f"fj{i}.jpg", noisy_image(rng, (70, 50 + 9 * i), noise=0.0))
    write_image(folder / "ai" / "small.jpg", noisy_image(rng, (24, 40)))
    write_image(folder / "nature" / "grey.jpg", noisy_image(rng)[..., 0])
    full = write_image(folder / "ai" / "cut.jpg", noisy_image(rng)).read_bytes()
    (folder / "ai" / "cut.jpg").write_bytes(full[: len(full) // 2])
    (folder / "nature" / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    data = bytearray(write_image(folder / "ai" / "huff.jpg", noisy_image(rng)).read_bytes())
    table = data.index(b"\xff\xc4")
    data[table + 5 : table + 21] = b"\xff" * 16  # code counts far above 256: "Bogus Huffman table"
    (folder / "ai" / "huff.jpg").write_bytes(data)
    return root


def _compare_decoders(tmp_path, checkpoint_path, device, mode):
    root = _mixed_tree(tmp_path / "g", np.random.default_rng(0))
    loaded, samples = load_model(checkpoint_path), load_samples(root, split="val")
    huff = next(s.path for s in samples if s.path.endswith("huff.jpg"))
    with pytest.raises(ImageDecodeError) as refused:
        load_rgb(huff)
    assert EncodedImageDataset([Sample(huff, 1, "s")])[0] == {"index": 0, "error": str(refused.value)}
    run = {
        d: evaluate_model(
            loaded,
            samples,
            device=torch.device(device),
            precision="fp32",
            batch_size=4,
            patch=PatchOptions(mode),
            progress=False,
            decode=d,
        )
        for d in ("workers", "device")
    }
    (s_w, p_w), (s_d, p_d) = run["workers"], run["device"]
    names = [samples[i].path.rsplit("/", 1)[-1] for i in p_d.index]
    assert sorted(samples[i].path.rsplit("/", 1)[-1] for i, _ in p_d.errors) == ["cut.jpg", "huff.jpg", "junk.jpg"]
    assert p_d.errors == p_w.errors and np.array_equal(p_d.index, p_w.index) and np.array_equal(p_d.label, p_w.label)
    return names, (s_w, p_w), (s_d, p_d)


@pytest.mark.parametrize("mode", ["seeded", "random"])
def test_device_decoding_scores_like_the_workers_on_cpu(tmp_path, checkpoint_path, mode):
    _, (s_w, p_w), (s_d, p_d) = _compare_decoders(tmp_path, checkpoint_path, "cpu", mode)
    # torchvision's CPU decoder and PIL both use libjpeg-turbo: the same pixels, so the same patches and scores.
    np.testing.assert_array_equal(p_d.box, p_w.box)
    np.testing.assert_array_equal(p_d.score, p_w.score)
    np.testing.assert_array_equal(p_d.p_fake, p_w.p_fake)  # the same patches in the same batches
    assert s_d["pooled"] == s_w["pooled"]


def test_cli_decode_device_lists_unreadable_files_and_matches_workers(tmp_path, checkpoint_path):
    root = _mixed_tree(tmp_path / "g", np.random.default_rng(0))
    results = {}
    for d in ("workers", "device"):
        args = [
            "test",
            "--weights",
            str(checkpoint_path),
            "--data",
            str(root),
            "--workers",
            "1",
            "--batch-size",
            "5",
            "--no-progress",
            "--out",
            str(tmp_path / d),
            "--decode",
            d,
        ]
        assert main(args) == 0
        results[d] = json.loads((tmp_path / d / "results.json").read_text())
    assert sorted(u["path"].rsplit("/", 1)[-1] for u in results["device"]["unreadable"]) == [
        "cut.jpg",
        "huff.jpg",
        "junk.jpg",
    ]
    assert results["device"]["unreadable"] == results["workers"]["unreadable"]
    assert (
        results["device"]["pooled"] == results["workers"]["pooled"]
        and results["device"]["subsets"] == results["workers"]["subsets"]
    )
    assert "decoding: on cpu" in (tmp_path / "device" / "results.md").read_text()


def test_device_decoding_refuses_whole_image_models_and_degradations(tmp_path, checkpoint_path):
    from ssp_detect.data.degradations import Degradation

    loaded, samples = (
        load_model(checkpoint_path),
        [Sample(str(write_image(tmp_path / "a.png", noisy_image(np.random.default_rng(0)))), 0, "s")],
    )
    whole = dataclasses.replace(loaded, feed=dataclasses.replace(loaded.feed, input="image"))
    with pytest.raises(ValueError, match="Device decoding is for patch models"):
        evaluate_model(whole, samples, device=torch.device("cpu"), precision="fp32", progress=False, decode="device")
    with pytest.raises(ValueError, match="cannot be combined with device decoding"):
        evaluate_model(
            loaded,
            samples,
            device=torch.device("cpu"),
            precision="fp32",
            progress=False,
            decode="device",
            degradation=Degradation("jpeg", 75),
        )
    with pytest.raises(ValueError, match="Unknown decoding 'gpu'"):
        evaluate_model(loaded, samples, device=torch.device("cpu"), precision="fp32", progress=False, decode="gpu")


@cuda
@pytest.mark.gpu
def test_device_selection_on_cuda_equals_the_cpu_selection(rng):
    for mode in ("seeded", "random", "exhaustive"):
        _assert_same_choices(_images(rng), "cuda", 32, mode, seed=3)


@cuda
@pytest.mark.gpu
def test_device_decoding_on_cuda(tmp_path, checkpoint_path):
    names, (_, p_w), (_, p_d) = _compare_decoders(tmp_path, checkpoint_path, "cuda", "seeded")
    png = np.array([n.endswith(".png") for n in names])
    # PNGs are decoded by PIL either way: the same patches; nvJPEG's pixels may differ from PIL's by a grey level.
    np.testing.assert_array_equal(p_d.box[png], p_w.box[png])
    np.testing.assert_allclose(p_d.p_fake[png], p_w.p_fake[png], rtol=0, atol=1e-5)
    jpegs = sorted((tmp_path / "g").rglob("?j*.jpg"))
    on_gpu = decode_jpegs([_jpeg_bytes(p) for p in jpegs], [str(p) for p in jpegs], torch.device("cuda"))
    for path, pixels in zip(jpegs, on_gpu, strict=True):
        # torchvision's own test of nvJPEG against libjpeg-turbo: a mean difference below 2 grey levels.
        assert (
            pixels.is_cuda
            and (pixels.cpu().permute(1, 2, 0).float() - torch.from_numpy(load_rgb(path)).float()).abs().mean() < 2
        )


def test_device_orientation_is_the_cpu_orientation(rng):
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for orientation in range(0, 10):  # 0 and 9: not EXIF values, left as they are
        want = apply_orientation(img, orientation)
        turned = orient_chw(torch.from_numpy(img).permute(2, 0, 1), orientation)
        np.testing.assert_array_equal(turned.permute(1, 2, 0).numpy(), want)


def test_rotated_and_cut_jpegs_on_the_device_path(tmp_path, rng):
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = tmp_path / "turned.jpg"
    Image.fromarray(noisy_image(rng, (48, 80))).save(turned, exif=exif.tobytes())
    ds = EncodedImageDataset([Sample(str(turned), 1, "s")])
    assert ds[0]["orientation"] == 6 and ds[0]["image"].dim() == 1
    batch = collate_encoded([ds[0]])
    out = decode_jpegs(batch["image"], [str(turned)], torch.device("cpu"), orientations=batch["orientation"])
    np.testing.assert_array_equal(out[0].permute(1, 2, 0).numpy(), load_rgb(turned))  # displayed upright, as on the CPU
    # Cut at any point of its scan, with or without an end marker: refused in the worker with load_rgb's message.
    full = write_image(tmp_path / "full.jpg", noisy_image(rng, (240, 320), noise=20.0)).read_bytes()
    for k, pct in enumerate((10, 30, 50, 70, 90, 99)):
        for tail in (b"", b"\xff\xd9"):
            cut = tmp_path / f"cut{k}{len(tail)}.jpg"
            cut.write_bytes(full[: len(full) * pct // 100] + tail)
            with pytest.raises(TruncatedImageError) as refused:
                load_rgb(cut)
            assert EncodedImageDataset([Sample(str(cut), 1, "s")])[0] == {"index": 0, "error": str(refused.value)}


@pytest.mark.filterwarnings("error")
def test_device_decoding_prints_no_warnings(tmp_path, checkpoint_path, capfd):
    """No Python warning from torchvision's decoders, and no libjpeg message on the standard error: a
    JPEG with a harmless libjpeg warning (junk before its end marker) is decoded on the CPU instead,
    to the pixels the workers decode."""
    rng = np.random.default_rng(3)
    root = make_genimage_tree(tmp_path / "g", subsets=("sdv4",), n=2, splits=("val",))
    folder = root / GENIMAGE_SUBSETS["sdv4"] / "val"
    for i in range(2):
        write_image(folder / "nature" / f"rj{i}.jpg", noisy_image(rng, noise=12.0))
    good = write_image(folder / "ai" / "fj.jpg", noisy_image(rng))
    padded = folder / "ai" / "padded.jpg"
    padded.write_bytes(good.read_bytes()[:-2] + bytes(64) + b"\xff\xd9")
    assert read_device_jpeg(good) is not None and read_device_jpeg(padded) is None
    results = {}
    for d in ("workers", "device"):
        argv = ["test", "--weights", str(checkpoint_path), "--data", str(root), "--device", "cpu", "--workers", "0"]
        assert main([*argv, "--no-progress", "--out", str(tmp_path / d), "--decode", d]) == 0
        results[d] = json.loads((tmp_path / d / "results.json").read_text())
    err = capfd.readouterr().err
    assert "Corrupt JPEG" not in err and "Warning" not in err, err
    assert results["device"]["pooled"] == results["workers"]["pooled"] and not results["device"]["unreadable"]
    assert results["device"]["pooled"]["n_fake"] == 4
