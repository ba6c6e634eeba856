import json
from pathlib import Path

import pytest
import torch

from ssp_detect.cli import main
from ssp_detect.data.layouts import Sample
from ssp_detect.engine.train import TrainError, collection_of, group_folds, holdout_split, poly_lr
from ssp_detect.models.checkpoint import read_checkpoint_file
from tests.helpers import make_genimage_tree


def test_poly_schedule_is_the_official_one():
    assert poly_lr(1e-4, 1, 30, 0.9) == pytest.approx(1e-4 * (29 / 30) ** 0.9)
    assert poly_lr(1e-4, 30, 30, 0.9) == 0.0


def test_holdout_keeps_every_crop_of_a_photo_and_each_real_fake_pair_on_one_side():
    # three crops of each of 20 photos (source recorded), each crop with its fake of the same name
    samples = [
        Sample(f"{cls}/p{photo}_{crop}.png", int(cls == "ai"), "x", source=f"pkg/p{photo}")
        for photo in range(20)
        for crop in range(3)
        for cls in ("nature", "ai")
    ]
    train, held = holdout_split(samples, 0.25, seed=0)
    assert len(held) == 5 * 6 and len(train) + len(held) == len(samples)
    assert not {s.source for s in train} & {s.source for s in held}
    assert holdout_split(samples[::-1], 0.25, seed=0)[1] == held[::-1]  # the order of files does not matter
    assert holdout_split(samples, 0.25, seed=1)[1] != held
    # without a recorded source, files of the same name (a pair) stay together
    unnamed = [Sample(f"{cls}/img{i}.png", int(cls == "ai"), "x") for i in range(10) for cls in ("nature", "ai")]
    train, held = holdout_split(unnamed, 0.3, seed=0)
    assert len(held) == 6 and not {Path(s.path).name for s in train} & {Path(s.path).name for s in held}


def test_crossfitting_folds_hold_whole_photos_or_whole_collections():
    samples = [
        Sample(f"{cls}/{pkg}-p{photo}_{crop}.png", int(cls == "ai"), "x", source=f"{pkg}/p{photo}", collection=pkg)
        for pkg in ("a", "b", "c", "d")
        for photo in range(5)
        for crop in range(2)
        for cls in ("nature", "ai")
    ]
    by_photo = group_folds(samples, 5, seed=0)
    assert sorted(len(f) for f in by_photo) == [16] * 5  # 20 photos dealt 4 per fold, 4 images each
    assert sum(map(len, by_photo)) == len(samples)
    for i, fold in enumerate(by_photo):
        others = {s.source for j, f in enumerate(by_photo) if j != i for s in f}
        assert not {s.source for s in fold} & others
    by_collection = group_folds(samples, 5, seed=0, group=collection_of)
    assert sorted(len(f) for f in by_collection) == [0, 20, 20, 20, 20]  # 4 collections, one fold left empty
    assert all(len({s.collection for s in f}) <= 1 for f in by_collection)
    with pytest.raises(TrainError, match="no recorded collection"):
        group_folds([Sample("x.png", 0, "x")], 2, seed=0, group=collection_of)


def _train_args(root, out, *extra):
    return [
        "train",
        "--data",
        str(root),
        "--subsets",
        "sdv4",
        "--model",
        "ssp-lite",
        "--batch-size",
        "6",
        "--steps-per-epoch",
        "3",
        "--workers",
        "0",
        "--train-eval-samples",
        "8",
        "--val-fraction",
        "0.2",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_genimage_tree(tmp_path_factory.mktemp("data"), subsets=("sdv4", "adm"), n=12)


def test_cli_training_learns_and_its_checkpoint_tests(tree, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(_train_args(tree, out, "--epochs", "4", "--lr", "3e-4", "--patch-size", "24", "--num-candidates", "16"))
        == 0
    )
    epochs = [
        json.loads(line)
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if '"epoch"' in line and '"type": "epoch"' in line
    ]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert {"val", "train_eval"} <= set(epochs[0])
    for name in ("best.pt", "last.pt", "config.yaml", "train.log"):
        assert (out / name).is_file()
    assert "holdout of the training images" in (out / "train.log").read_text()
    ckpt = read_checkpoint_file(out / "best.pt")
    assert ckpt["model"] == "ssp-lite" and ckpt["train_config"]["subsets"] == ["sdv4"] and "optimizer" not in ckpt
    assert ckpt["preprocess"]["patch_size"] == 24 and ckpt["preprocess"]["num_candidates"] == 16
    # The checkpoint alone is enough to test: noisy reals vs smooth fakes are easy to tell apart.
    assert (
        main(
            [
                "test",
                "--weights",
                str(out / "best.pt"),
                "--data",
                str(tree),
                "--workers",
                "0",
                "--no-progress",
                "--out",
                str(tmp_path / "t"),
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "t" / "results.json").read_text())
    assert set(res["subsets"]) == {"sdv4", "adm"} and res["pooled"]["n_real"] == 24
    assert res["pooled"]["auc"] > 0.9
    assert "24x24, seeded mode (seed 0), lowest of 16 candidates" in (tmp_path / "t" / "results.md").read_text()
    for ext in ("md", "csv"):
        assert "pooled (all images)" in (tmp_path / "t" / f"results.{ext}").read_text()


def test_crossfitting_scores_every_training_image_once_with_a_model_that_never_saw_it(tree, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(tree, out, "--epochs", "2", "--patch-size", "24", "--crossfit-folds", "3")) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    folds = [r for r in records if r["type"] == "crossfit"]
    assert [r["fold"] for r in folds] == [1, 2, 3]
    # the 24 sdv4 images less the 20 % holdout (5 images): each scored once, by the model not trained on it
    assert sum(r["scored"] for r in folds) == 19 and all(r["scored"] + r["trained_on"] == 19 for r in folds)
    calibration = read_checkpoint_file(out / "best.pt")["calibration"]
    assert calibration["n_real"] + calibration["n_fake"] == 19 + 5
    assert "cross-fitted" in calibration["data"]
    # without it, the threshold is chosen on the holdout alone
    plain = tmp_path / "plain"
    assert main(_train_args(tree, plain, "--epochs", "2", "--patch-size", "24")) == 0
    plain_calibration = read_checkpoint_file(plain / "best.pt")["calibration"]
    assert plain_calibration["n_real"] + plain_calibration["n_fake"] == 5
    assert not [line for line in (plain / "metrics.jsonl").read_text().splitlines() if '"crossfit"' in line]
    assert main(_train_args(tree, tmp_path / "bad", "--crossfit-folds", "1")) != 0
    assert "--crossfit-folds must be 0 (off) or at least 2, not 1" in capsys.readouterr().err
    by_collection = ("--crossfit-folds", "2", "--crossfit-by", "collection")
    assert main(_train_args(tree, tmp_path / "bad2", *by_collection)) != 0  # no manifest: no collections
    assert "no recorded collection" in capsys.readouterr().err
    assert not (tmp_path / "bad2" / "best.pt").exists()  # refused before any training


def test_resume_continues_exactly(tree, tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    assert main(_train_args(tree, full, "--epochs", "2")) == 0
    assert main(_train_args(tree, split, "--epochs", "2", "--stop-after", "1")) == 0
    assert read_checkpoint_file(split / "last.pt")["epoch"] == 1
    assert main(["train", "--resume", str(split / "last.pt"), "--no-progress"]) == 0
    a, b = read_checkpoint_file(full / "last.pt"), read_checkpoint_file(split / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0, msg=k)


def test_config_preset_and_flags_order(tmp_path):
    from ssp_detect.config import ConfigError, build_config

    (tmp_path / "p.yaml").write_text("model: ssp-gn\nepochs: 5\n")
    cfg = build_config(str(tmp_path / "p.yaml"), {"epochs": 7, "lr": None})
    assert (cfg.model, cfg.epochs, cfg.lr, cfg.batch_size) == ("ssp-gn", 7, 1e-4, 64)
    assert (
        build_config("from-scratch").format_match == "auto" == build_config().format_match
    )  # format matching by default
    assert build_config("official").format_match == "off"  # the paper's recipe trains on the data as stored
    (tmp_path / "off.yaml").write_text("format_match: off\n")  # unquoted, YAML's boolean false
    assert build_config(str(tmp_path / "off.yaml")).format_match == "off"
    (tmp_path / "bad.yaml").write_text("epoks: 5\n")
    with pytest.raises(ConfigError, match="Unknown option.*epoks"):
        build_config(str(tmp_path / "bad.yaml"))


def test_format_matching_takes_whole_jpeg_histories_from_the_manifest_or_the_files(tmp_path, rng):
    from ssp_detect.config import build_config
    from ssp_detect.data.layouts import load_samples
    from ssp_detect.engine.train import make_augment
    from tests.helpers import noisy_image, write_image

    root = tmp_path / "data"
    records = []
    for i, (quality, subsampling) in enumerate([(95, "4:4:4"), (80, "4:2:2"), (None, None), (60, "4:2:0")]):
        for label, folder in ((0, "nature"), (1, "ai")):
            relative = f"demo/train/{folder}/{i}.png"
            write_image(root / relative, noisy_image(rng))
            records.append(
                {
                    "path": relative,
                    "jpeg_quality": quality if label == 0 else None,
                    "jpeg_subsampling": subsampling if label == 0 else None,
                    "photo_id": f"photo{i}",
                }
            )
    (root / "manifest.json").write_text(json.dumps({"images": records}))
    cfg = build_config(overrides={"format_match": "auto"})
    aug = make_augment(cfg, load_samples(root, layout="genimage", split="train"))
    assert sorted(aug.format_match_histories) == [(60, "4:2:0"), (80, "4:2:2"), (95, "4:4:4")]
    assert aug.format_match_probs == (0.0, 0.75)  # fakes compressed as often as reals carry a JPEG history

    from PIL import Image

    files = tmp_path / "files"
    for i, (quality, subsampling) in enumerate([(90, "4:4:4"), (70, "4:2:0")]):
        (files / "demo" / "train" / "nature").mkdir(parents=True, exist_ok=True)
        Image.fromarray(noisy_image(rng)).save(
            files / "demo" / "train" / "nature" / f"{i}.jpg", quality=quality, subsampling=subsampling
        )
        write_image(files / "demo" / "train" / "ai" / f"{i}.png", noisy_image(rng))
    aug = make_augment(cfg, load_samples(files, layout="genimage", split="train"))
    assert sorted(aug.format_match_histories) == [(70, "4:2:0"), (90, "4:4:4")] and aug.format_match_probs == (0.0, 1.0)
    given = make_augment(
        build_config(overrides={"format_match": "auto", "format_match_qualities": [85]}),
        load_samples(files, layout="genimage", split="train"),
    )
    assert given.format_match_histories == ((85, "4:2:0"),)


def test_validation_is_format_matched_like_training_without_the_degradations(tmp_path, rng):
    from PIL import Image

    from ssp_detect.config import build_config
    from ssp_detect.data.layouts import load_samples
    from ssp_detect.engine.train import format_matching_of, make_augment
    from tests.helpers import noisy_image, write_image

    root = tmp_path / "data"
    for i in range(8):
        (root / "demo" / "train" / "nature").mkdir(parents=True, exist_ok=True)
        Image.fromarray(noisy_image(rng, noise=12.0)).save(
            root / "demo" / "train" / "nature" / f"{i}.jpg", quality=90, subsampling="4:4:4"
        )
        write_image(root / "demo" / "train" / "ai" / f"{i}.png", noisy_image(rng, noise=0.0))
    robust = make_augment(
        build_config(overrides={"format_match": "auto", "blur_prob": 0.5, "jpg_prob": 0.5}),
        load_samples(root, layout="genimage", split="train"),
    )
    only = format_matching_of(robust)
    assert (
        (only.format_match_probs, only.format_match_histories)
        == (robust.format_match_probs, robust.format_match_histories)
        == ((0.0, 1.0), ((90, "4:4:4"),) * 8)
    )
    assert only.blur_prob == 0 and only.jpg_prob == 0 and only.active
    assert not format_matching_of(
        make_augment(build_config("official"), load_samples(root, layout="genimage", split="train"))
    ).active  # off: validation untouched

    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(root),
                "--model",
                "ssp-cooc",
                "--format-match",
                "auto",
                "--batch-size",
                "4",
                "--epochs",
                "1",
                "--workers",
                "0",
                "--train-eval-samples",
                "4",
                "--val-fraction",
                "0.25",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (
        "validation and the training probe are format-matched like the training data" in (out / "train.log").read_text()
    )
