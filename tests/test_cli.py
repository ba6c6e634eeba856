import csv
import json

import numpy as np
import pytest

from ssp_detect import Detector
from ssp_detect.cli import main
from ssp_detect.data.layouts import load_samples
from ssp_detect.models.checkpoint import read_checkpoint_file
from tests.helpers import make_checkpoint, make_genimage_tree, noisy_image, write_image


@pytest.fixture
def folder(tmp_path, rng):
    d = tmp_path / "imgs"
    for i in range(3):
        write_image(d / f"ok{i}.png", noisy_image(rng, (40 + 10 * i, 50)))
    write_image(d / "sub" / "deep.jpg", noisy_image(rng))
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (d / "empty.png").write_bytes(b"")
    return d


def test_predict_folder_csv_and_json(folder, checkpoint_path, tmp_path):
    out_csv = tmp_path / "r.csv"
    assert (
        main(["predict", str(folder), "--weights", str(checkpoint_path), "--format", "csv", "--output", str(out_csv)])
        == 0
    )
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 5  # not recursive: sub/deep.jpg is left out
    bad = {r["path"].split("/")[-1]: r for r in rows if r["error"]}
    assert set(bad) == {"broken.jpg", "empty.png"} and bad["empty.png"]["p_fake"] == ""
    good = [r for r in rows if not r["error"]]
    assert all(
        0 <= float(r["p_fake"]) <= 1 and r["label"] in ("real", "fake", "uncertain") and r["w"] == "32" for r in good
    )
    out_json = tmp_path / "r.json"
    assert (
        main(
            [
                "predict",
                str(folder),
                "--recursive",
                "--weights",
                str(checkpoint_path),
                "--format",
                "json",
                "--output",
                str(out_json),
            ]
        )
        == 0
    )
    data = json.loads(out_json.read_text())
    assert len(data) == 6 and any(d["path"].endswith("deep.jpg") for d in data)
    # Same numbers as the Python API (the CLI uses the same Detector).
    det = Detector.from_checkpoint(checkpoint_path)
    api = det.predict(str(folder / "ok1.png"))
    row = next(d for d in data if d["path"].endswith("ok1.png"))
    assert row["p_fake"] == pytest.approx(api.p_fake) and [row["x"], row["y"]] == list(api.box[:2])


def test_predict_exit_status(folder, checkpoint_path, tmp_path, capsys):
    assert main(["predict", str(folder / "broken.jpg"), "--weights", str(checkpoint_path), "--format", "jsonl"]) == 1
    assert "could not be decoded" in capsys.readouterr().out
    assert main(["predict", str(folder), "--weights", str(checkpoint_path), "--strict", "--format", "jsonl"]) == 1
    assert (
        main(["predict", str(folder / "ok0.png"), "--weights", str(checkpoint_path), "--strict", "--format", "jsonl"])
        == 0
    )
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["path"].endswith("ok0.png") and line["error"] is None


def test_predict_threshold_defaults_to_the_checkpoint(tmp_path, rng):
    ckpt = make_checkpoint(tmp_path / "t.pt", threshold=0.0)
    det = Detector.from_checkpoint(ckpt)
    assert det.threshold == 0.0 and det.predict(noisy_image(rng)).label == "fake"
    assert Detector.from_checkpoint(ckpt, threshold=1.0).predict(noisy_image(rng)).label == "real"


def test_python_api_accepts_paths_bytes_arrays_and_pil(folder, checkpoint_path):
    from PIL import Image

    det = Detector.from_checkpoint(checkpoint_path)
    path = folder / "ok0.png"
    results = det.predict([str(path), path.read_bytes(), np.asarray(Image.open(path)), Image.open(path)])
    assert len({round(r.p_fake, 6) for r in results}) == 1  # same image, same patch, same score
    assert det.predict(b"").error.endswith("is empty (0 bytes).")


def test_calibrate_finds_the_known_threshold(tmp_path, rng, checkpoint_path):
    # Score images first, then label the higher-scoring half fake: the right threshold lies
    # between the two halves, and for a 0 false-positive target it is just above the top real.
    paths = [write_image(tmp_path / "d" / f"{i}.png", noisy_image(rng, noise=2.0 + 3 * i)) for i in range(8)]
    det = Detector.from_checkpoint(checkpoint_path)
    p = np.array([det.predict(str(x)).p_fake for x in paths])
    assert len(set(p.round(9))) == 8, "the random model must give distinct scores"
    order = np.argsort(p)
    labels = np.zeros(8, int)
    labels[order[4:]] = 1
    (tmp_path / "m.csv").write_text("path,label\n" + "".join(f"{x},{y}\n" for x, y in zip(paths, labels, strict=True)))
    out = tmp_path / "cal.pt"
    args = [
        "calibrate",
        "--weights",
        str(checkpoint_path),
        "--data",
        str(tmp_path / "m.csv"),
        "--output",
        str(out),
        "--workers",
        "0",
        "--no-progress",
    ]
    assert main(args) == 0
    t = read_checkpoint_file(out)["threshold"]
    calibrated = Detector.from_checkpoint(out)  # the threshold applies to p_fake after the refitted temperature
    p = np.array([calibrated.predict(str(x)).p_fake for x in paths])
    assert p[order[3]] < t <= p[order[4]]
    assert calibrated.threshold == t
    assert main([*args, "--target-fpr", "0"]) == 0
    t0 = read_checkpoint_file(out)["threshold"]
    p = np.array([Detector.from_checkpoint(out).predict(str(x)).p_fake for x in paths])
    assert t0 == pytest.approx(
        p[order[3]], abs=1e-6
    )  # just above the highest real score (batching moves scores by ~1e-7)


def test_explain_writes_a_figure(folder, checkpoint_path, tmp_path):
    out = tmp_path / "fig.png"
    assert main(["explain", str(folder / "ok2.png"), "--weights", str(checkpoint_path), "--out", str(out)]) == 0
    from PIL import Image

    assert Image.open(out).size[0] > 600


def test_user_errors_are_one_sentence_not_a_traceback(tmp_path, capsys, checkpoint_path):
    assert main(["test", "--weights", str(tmp_path / "nope.pt"), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "does not exist" in err and "Traceback" not in err
    assert main(["test", "--weights", str(checkpoint_path), "--data", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--model", "resnet9000"]) == 2
    assert "Unknown model" in capsys.readouterr().err


def test_patch_size_and_candidate_count_come_from_the_checkpoint_and_the_flags(tmp_path, rng, capsys):
    from ssp_detect.data.preprocess import PatchOptions
    from ssp_detect.models.checkpoint import save_checkpoint
    from tests.helpers import numpy_seeded_corners

    img = noisy_image(rng, (96, 120))
    default = Detector.from_checkpoint(make_checkpoint(tmp_path / "d.pt"))
    assert (
        default.info["patch_size"] == 32
        and default.info["num_candidates"] == 64
        and default.predict(img).box[2:] == (32, 32)
    )
    # A checkpoint trained with other patch settings is fed the way it was trained.
    raw = read_checkpoint_file(tmp_path / "d.pt")
    raw["preprocess"] |= {"patch_size": 24, "num_candidates": 4}
    save_checkpoint(tmp_path / "p24.pt", raw)
    stored = Detector.from_checkpoint(tmp_path / "p24.pt")
    assert (
        stored.info["patch_size"] == 24
        and stored.info["num_candidates"] == 4
        and stored.predict(img).box[2:] == (24, 24)
    )
    # Flags override it; one candidate is the first seeded draw, more candidates never score worse.
    one = Detector.from_checkpoint(tmp_path / "p24.pt", patch=PatchOptions(num_candidates=1, patch_size=16)).predict(
        img
    )
    y, x = numpy_seeded_corners(img, 0, 16, 1)[0]
    assert one.box == (x, y, 16, 16)
    many = Detector.from_checkpoint(tmp_path / "p24.pt", patch=PatchOptions(num_candidates=500, patch_size=16)).predict(
        img
    )
    best = Detector.from_checkpoint(tmp_path / "p24.pt", patch=PatchOptions("exhaustive", patch_size=16)).predict(img)
    assert best.texture_score <= many.texture_score <= one.texture_score
    path = write_image(tmp_path / "i.png", img)
    assert (
        main(
            [
                "predict",
                str(path),
                "--weights",
                str(tmp_path / "p24.pt"),
                "--patch-size",
                "16",
                "--num-candidates",
                "1",
                "--format",
                "jsonl",
            ]
        )
        == 0
    )
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (row["x"], row["y"], row["w"]) == (x, y, 16) and row["p_fake"] == pytest.approx(one.p_fake)
    # Test reports say which settings were used; nonsense values are one sentence.
    root = make_genimage_tree(tmp_path / "g", subsets=("sdv4",), n=2, splits=("val",))
    assert (
        main(
            [
                "test",
                "--weights",
                str(tmp_path / "p24.pt"),
                "--data",
                str(root),
                "--workers",
                "0",
                "--no-progress",
                "--out",
                str(tmp_path / "t"),
            ]
        )
        == 0
    )
    assert "24x24, seeded mode (seed 0), lowest of 4 candidates" in (tmp_path / "t" / "results.md").read_text()
    assert main(["predict", str(path), "--weights", str(tmp_path / "p24.pt"), "--patch-size", "4"]) == 2
    assert "patch size must be between 8 and 256" in capsys.readouterr().err
    assert main(["predict", str(path), "--weights", str(tmp_path / "p24.pt"), "--num-candidates", "0"]) == 2
    assert "candidate count must be at least 1" in capsys.readouterr().err


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "ssp " in out and "[paper]" in out and "resnet50-baseline" in out


def test_cross_eval_writes_matrix_and_heatmap(tmp_path):
    root = make_genimage_tree(tmp_path / "g", subsets=("sdv4", "adm"), n=3, splits=("val",))
    a, b = make_checkpoint(tmp_path / "a.pt", seed=1), make_checkpoint(tmp_path / "b.pt", seed=2)
    out = tmp_path / "x"
    assert (
        main(
            [
                "cross-eval",
                "--weights",
                str(a),
                str(b),
                "--names",
                "A",
                "B",
                "--data",
                str(root),
                "--workers",
                "0",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    m = json.loads((out / "cross_eval.json").read_text())
    assert m["train"] == ["A", "B"] and m["test"] == ["adm", "sdv4"] and np.array(m["matrix"]).shape == (2, 2)
    assert (out / "cross_eval.png").stat().st_size > 1000 and "| A |" in (out / "cross_eval.md").read_text()


def test_test_reports_auc_intervals_over_the_manifests_source_photos(tmp_path, checkpoint_path):
    tree = make_genimage_tree(tmp_path / "data", subsets=("sdv4",), n=6, splits=("val",))
    folder = tree / "imagenet_ai_0419_sdv4" / "val"
    # Six photos; the real crop r{i} and the fake f{i} were both made from photo i // 2.
    images = [
        {"path": p.relative_to(tree).as_posix(), "photo_id": f"photo{int(p.stem[1:]) // 2}"}
        for p in sorted(folder.rglob("*.png"))
    ]
    (tree / "manifest.json").write_text(json.dumps({"images": images}))
    samples = load_samples(tree, split="val")
    assert {s.source for s in samples} == {"photo0", "photo1", "photo2"}
    out = tmp_path / "t"
    assert (
        main(
            [
                "test",
                "--weights",
                str(checkpoint_path),
                "--data",
                str(tree),
                "--workers",
                "0",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads((out / "results.json").read_text())
    assert res["auc_interval"] == {"resamples": 1000, "level": 0.95, "resampled": "source photos"}
    pooled = res["pooled"]
    assert pooled["auc_low"] <= pooled["auc"] <= pooled["auc_high"]
    md = (out / "results.md").read_text()
    assert "| AUC 95% interval |" in md and "1000 resamples of the source photos" in md
    assert f"{100 * pooled['auc_low']:.1f}-{100 * pooled['auc_high']:.1f} |" in md
    assert "auc_low,auc_high" in (out / "results.csv").read_text().splitlines()[0]
    assert (
        main(
            [
                "test",
                "--weights",
                str(checkpoint_path),
                "--data",
                str(tree),
                "--workers",
                "0",
                "--no-progress",
                "--bootstrap",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "AUC 95% interval" not in (out / "results.md").read_text() and "auc_interval" not in json.loads(
        (out / "results.json").read_text()
    )
