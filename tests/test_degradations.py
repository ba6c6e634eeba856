"""Each degradation against an independent computation, and determinism for a seed."""

import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from ssp_detect.data.dataset import DetectionDataset, collate
from ssp_detect.data.degradations import (
    Degradation,
    TrainAugment,
    center_crop,
    gaussian_blur,
    gaussian_noise,
    jpeg_compress,
    random_crop,
    rescale,
    webp_compress,
)
from ssp_detect.data.jpeg_quality import jpeg_subsampling
from ssp_detect.data.layouts import Sample
from ssp_detect.data.preprocess import Preprocessor
from tests.helpers import noisy_image, write_image


@pytest.fixture
def img(rng):
    return noisy_image(rng, size=(72, 90), noise=20.0)


def _pil_roundtrip(img, fmt, quality):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


@pytest.mark.parametrize("quality", [95, 75, 30])
def test_jpeg_pil_is_pils_own_codec_and_loses_more_at_low_quality(img, quality):
    out = jpeg_compress(img, quality, "pil")
    np.testing.assert_array_equal(out, _pil_roundtrip(img, "JPEG", quality))
    assert out.shape == img.shape and out.dtype == np.uint8


def test_jpeg_cv2_keeps_channel_order_and_matches_opencv(img):
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    expected = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(jpeg_compress(img, 60, "cv2"), expected)
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 200
    assert jpeg_compress(red, 90, "cv2")[..., 0].mean() > 190 and jpeg_compress(red, 90, "cv2")[..., 2].mean() < 10
    with pytest.raises(ValueError, match="Unknown JPEG method"):
        jpeg_compress(img, 90, "libjpeg")  # type: ignore[arg-type]


def test_webp_is_pils_own_codec_and_quality_matters(img):
    for quality in (90, 50):
        np.testing.assert_array_equal(webp_compress(img, quality), _pil_roundtrip(img, "WEBP", quality))
    err = {q: np.abs(webp_compress(img, q).astype(int) - img).mean() for q in (90, 50)}
    assert 0 < err[90] < err[50]


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
def test_blur_matches_scipy(img, sigma):
    out = gaussian_blur(img, sigma)
    # scipy filters a uint8 array in two 1-D passes, truncating to uint8 after each.
    passes = [gaussian_filter1d(img[..., c].astype(np.float64), sigma, axis=0).astype(np.uint8) for c in range(3)]
    expected = np.stack(
        [gaussian_filter1d(p.astype(np.float64), sigma, axis=1).astype(np.uint8) for p in passes], axis=-1
    )
    np.testing.assert_array_equal(out, expected)
    exact = gaussian_filter(img.astype(np.float64), sigma=(sigma, sigma, 0))
    assert np.abs(out - exact).max() < 2 and -1.5 < (out - exact).mean() < 0
    assert gaussian_blur(img, 0) is img


@pytest.mark.parametrize(
    "interpolation,pil_filter",
    [("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC), ("nearest", Image.NEAREST), ("lanczos", Image.LANCZOS)],
)
@pytest.mark.parametrize("factor", [0.5, 0.75, 1.5])
def test_rescale_matches_pil(img, interpolation, pil_filter, factor):
    h, w = img.shape[:2]
    size = (round(w * factor), round(h * factor))
    expected = np.asarray(Image.fromarray(img).resize(size, pil_filter))
    out = rescale(img, factor, interpolation)
    assert out.shape == (size[1], size[0], 3)
    np.testing.assert_array_equal(out, expected)


def test_rescale_rejects_bad_arguments(img):
    assert rescale(img, 1.0) is img
    with pytest.raises(ValueError, match="positive"):
        rescale(img, 0)
    with pytest.raises(ValueError, match="Unknown interpolation"):
        rescale(img, 0.5, "cubic")  # type: ignore[arg-type]


def test_noise_is_numpy_noise_from_the_same_generator(img):
    out = gaussian_noise(img, 5.0, np.random.default_rng(7))
    expected = np.clip(np.rint(img + np.random.default_rng(7).normal(0, 5.0, img.shape)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert not np.array_equal(out, gaussian_noise(img, 5.0, np.random.default_rng(8)))
    assert gaussian_noise(img, 0, np.random.default_rng(7)) is img


def test_crops(img):
    np.testing.assert_array_equal(center_crop(img, 32), img[20:52, 29:61])
    assert center_crop(img, 500).shape == img.shape
    a, b = random_crop(img, 32, np.random.default_rng(3)), random_crop(img, 32, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    windows = np.lib.stride_tricks.sliding_window_view(img, (32, 32, 3))[..., 0, :, :, :]
    assert (windows == a).all(axis=(2, 3, 4)).sum() >= 1  # a crop of the image


def test_degradation_dispatches_and_knows_identities(img):
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(Degradation("jpeg", 75)(img, rng), jpeg_compress(img, 75, "pil"))
    np.testing.assert_array_equal(Degradation("jpeg", 75, jpeg_method="cv2")(img, rng), jpeg_compress(img, 75, "cv2"))
    np.testing.assert_array_equal(Degradation("webp", 50)(img, rng), webp_compress(img, 50))
    np.testing.assert_array_equal(Degradation("blur", 2)(img, rng), gaussian_blur(img, 2))
    np.testing.assert_array_equal(
        Degradation("scale", 0.5, interpolation="bicubic")(img, rng), rescale(img, 0.5, "bicubic")
    )
    np.testing.assert_array_equal(Degradation("center_crop", 40)(img, rng), center_crop(img, 40))
    np.testing.assert_array_equal(
        Degradation("noise", 3)(img, np.random.default_rng(5)), gaussian_noise(img, 3, np.random.default_rng(5))
    )
    assert all(
        d.is_identity
        for d in (Degradation(), Degradation("blur", 0), Degradation("scale", 1.0), Degradation("noise", 0))
    )
    assert not any(
        d.is_identity for d in (Degradation("jpeg", 100), Degradation("blur", 0.5), Degradation("scale", 0.5))
    )
    with pytest.raises(ValueError, match="Unknown degradation 'gamma'"):
        Degradation("gamma", 2)  # type: ignore[arg-type]


def test_train_augment_reports_what_it_applied_and_replays_for_a_seed(img):
    aug = TrainAugment(blur_prob=0.5, blur_sig=(0.0, 3.0), jpg_prob=0.5, jpg_qual=(30, 100))
    seen = set()
    for seed in range(24):
        a = aug.apply(img, np.random.default_rng(seed), label=0, stored_as_jpeg=False)
        b = aug.apply(img, np.random.default_rng(seed), label=0, stored_as_jpeg=False)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(aug(img, np.random.default_rng(seed), label=0, stored_as_jpeg=False), a.image)
        assert a.source is img and (a.blurred or a.jpeg) == (not np.array_equal(a.image, img))
        seen.add((a.blurred, a.jpeg))
    assert seen == {(False, False), (True, False), (False, True), (True, True)}
    only_blur = TrainAugment(blur_prob=1.0, blur_sig=(2.0, 2.0)).apply(
        img, np.random.default_rng(0), label=1, stored_as_jpeg=False
    )
    assert only_blur.blurred and not only_blur.jpeg
    np.testing.assert_array_equal(only_blur.image, gaussian_blur(img, 2.0))


def test_format_matching_is_part_of_the_source_not_a_degradation(img):
    aug = TrainAugment(
        format_match_probs=(0.0, 1.0),
        format_match_histories=((80, "4:4:4"),),
        jpg_prob=1.0,
        jpg_qual=(40, 40),
        jpg_method=("pil",),
    )
    a = aug.apply(img, np.random.default_rng(0), label=1, stored_as_jpeg=False)
    np.testing.assert_array_equal(a.source, jpeg_compress(img, 80, "pil", "4:4:4"))
    assert not np.array_equal(
        a.source, jpeg_compress(img, 80)
    )  # the subsampling of the history is kept, not the default 4:2:0
    np.testing.assert_array_equal(a.image, jpeg_compress(jpeg_compress(img, 80, "pil", "4:4:4"), 40))
    assert a.jpeg and not a.blurred


def test_format_matching_draws_whole_histories_from_its_list(img):
    histories = ((95, "4:4:4"), (70, "4:2:2"), (50, "4:2:0"))
    aug = TrainAugment(format_match_probs=(0.0, 1.0), format_match_histories=histories)
    outputs = {aug(img, np.random.default_rng(seed), label=1, stored_as_jpeg=False).tobytes() for seed in range(30)}
    assert outputs == {jpeg_compress(img, q, "pil", ss).tobytes() for q, ss in histories}
    np.testing.assert_array_equal(
        aug(img, np.random.default_rng(0), label=0, stored_as_jpeg=False), img
    )  # reals: p = 0


@pytest.mark.parametrize("method", ["pil", "cv2"])
@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0"])
def test_jpeg_subsampling_is_what_the_encoder_writes(img, method, subsampling):
    if method == "pil":
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=85, subsampling=subsampling)
        written = Image.open(io.BytesIO(buf.getvalue()))
    else:
        factor = {
            "4:4:4": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
            "4:2:2": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
            "4:2:0": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
        }[subsampling]
        ok, buf = cv2.imencode(
            ".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor]
        )
        written = Image.open(io.BytesIO(buf.tobytes()))
    assert jpeg_subsampling(written) == subsampling  # the encoder really wrote that sampling
    np.testing.assert_array_equal(jpeg_compress(img, 85, method, subsampling), np.asarray(written.convert("RGB")))
    with pytest.raises(ValueError, match="Unknown chroma subsampling '4:1:1'"):
        jpeg_compress(img, 85, method, "4:1:1")


def test_dataset_restoration_targets_are_the_clean_patch_at_the_same_box(tmp_path, rng):
    paths = [write_image(tmp_path / f"{i}.png", noisy_image(rng, size=(64, 72), noise=15.0)) for i in range(4)]
    samples = [Sample(str(p), i % 2, "x") for i, p in enumerate(paths)]
    aug = TrainAugment(blur_prob=1.0, blur_sig=(1.5, 1.5))
    pre = Preprocessor(mode="seeded")
    ds = DetectionDataset(samples, pre, augment=aug, restoration_targets=True)
    batch = collate([ds[i] for i in range(4)])
    assert (
        batch["clean_pixels"].shape == batch["pixels"].shape == (4, 3, 32, 32)
        and batch["clean_pixels"].dtype == torch.uint8
    )
    torch.testing.assert_close(batch["degradation"], torch.tensor([[1.0, 0.0]] * 4))
    for i, p in enumerate(paths):
        x, y, w, h = batch["box"][i].tolist()
        original = np.asarray(Image.open(p).convert("RGB"))
        np.testing.assert_array_equal(
            batch["clean_pixels"][i].numpy(), original[y : y + h, x : x + w].transpose(2, 0, 1)
        )
        np.testing.assert_array_equal(
            batch["pixels"][i].numpy(), gaussian_blur(original, 1.5)[y : y + h, x : x + w].transpose(2, 0, 1)
        )
    plain = collate([DetectionDataset(samples, pre)[i] for i in range(2)])
    assert "clean_pixels" not in plain and "degradation" not in plain
    with pytest.raises(ValueError, match="do not combine"):
        DetectionDataset(samples, pre, degradation=Degradation("jpeg", 50), restoration_targets=True)


def test_dataset_applies_an_evaluation_degradation_before_patch_selection(tmp_path, rng):
    path = write_image(tmp_path / "a.png", noisy_image(rng, size=(64, 72), noise=15.0))
    pre = Preprocessor(mode="seeded")
    item = DetectionDataset([Sample(str(path), 0, "x")], pre, degradation=Degradation("jpeg", 30))[0]
    expected = pre(jpeg_compress(np.asarray(Image.open(path).convert("RGB")), 30))
    np.testing.assert_array_equal(item["pixels"].numpy(), expected.pixels)
    assert tuple(item["box"]) == expected.box


def test_persistent_workers_see_each_new_epoch(tmp_path, rng):
    from ssp_detect.data.dataset import make_loader

    paths = [write_image(tmp_path / f"{i}.png", noisy_image(rng, size=(96, 96), noise=15.0)) for i in range(4)]
    ds = DetectionDataset(
        [Sample(str(p), 0, "x") for p in paths], Preprocessor(mode="random"), augment=TrainAugment(blur_prob=0.5)
    )
    loader = make_loader(ds, batch_size=4, workers=1)  # persistent workers keep their own copy of ds
    boxes = []
    for epoch in (1, 2, 1):
        ds.set_epoch(epoch)
        boxes.append(next(iter(loader))["box"].tolist())
    assert boxes[0] != boxes[1] and boxes[0] == boxes[2]
    ds.set_epoch(2)
    assert collate([ds[i] for i in range(4)])["box"].tolist() == boxes[1]


def test_random_delivery_is_drawn_the_same_for_both_classes(monkeypatch):
    from ssp_detect.data.degradations import DELIVERY_KINDS, Delivery

    img = noisy_image(np.random.default_rng(0), (64, 64))
    seen: dict[int, list[Delivery]] = {0: [], 1: []}
    original = Delivery.__call__
    augment = TrainAugment(delivery_prob=0.8, format_match_probs=(0.0, 1.0))  # fakes are format-matched first
    for label in (0, 1):
        monkeypatch.setattr(
            Delivery, "__call__", lambda self, x, label=label: seen[label].append(self) or original(self, x)
        )
        for i in range(300):
            augment.apply(img, np.random.default_rng([7, i]), label=label, stored_as_jpeg=False)
    assert seen[0] == seen[1] and 200 < len(seen[0]) < 280  # the same deliveries whatever the label
    kinds = [d.kind for d in seen[0]]
    assert set(kinds) == set(DELIVERY_KINDS) and min(kinds.count(k) for k in DELIVERY_KINDS) > 30


def test_each_delivery_kind_does_what_it_says():
    from ssp_detect.data.degradations import Delivery, jpeg_compress, rescale, webp_compress

    img = noisy_image(np.random.default_rng(1), (64, 80))
    np.testing.assert_array_equal(Delivery("png")(img), img)
    np.testing.assert_array_equal(Delivery("jpeg", 70, "4:4:4")(img), jpeg_compress(img, 70, "pil", "4:4:4"))
    np.testing.assert_array_equal(Delivery("webp", 80)(img), webp_compress(img, 80))
    assert Delivery("resize", scale=0.5)(img).shape == rescale(img, 0.5).shape == (32, 40, 3)
