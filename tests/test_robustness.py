"""The robustness sweep: its tables and plots, and degradations that really reach the model."""

import csv
import json

import numpy as np
import pytest
import torch

from ssp_detect.cli import main
from ssp_detect.data.degradations import Degradation
from ssp_detect.data.layouts import load_samples
from ssp_detect.engine.evaluate import evaluate_model
from ssp_detect.engine.robustness import DIFFERENCE_FIELDS, SWEEPS, run_robustness
from ssp_detect.models import load_model
from tests.helpers import make_checkpoint, make_genimage_tree

METRICS = ["n_real", "n_fake", "acc", "real_acc", "fake_acc", "ap", "auc", "tpr@fpr1", "tpr@fpr5", "tpr@fpr10", "ece"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_genimage_tree(tmp_path_factory.mktemp("data"), subsets=("sdv4",), n=4, splits=("val",))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpts")
    return make_checkpoint(d / "ssp.pt", "ssp-lite", seed=1), make_checkpoint(d / "essp.pt", "essp-lite", seed=2)


def test_sweep_command_writes_tables_and_plots(tree, checkpoints, tmp_path):
    out = tmp_path / "rob"
    assert (
        main(
            [
                "robustness",
                "--weights",
                *map(str, checkpoints),
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
    models = ["ssp-lite", "essp-lite"]
    for name, sweep in SWEEPS.items():
        rows = list(csv.DictReader((out / f"{name}.csv").open()))
        assert list(rows[0]) == [
            "model",
            "degradation",
            "setting",
            "value",
            "n_unreadable",
            *METRICS,
            "vs",
            *DIFFERENCE_FIELDS,
        ]
        for r in rows:  # the second model against the first, on the same images
            assert r["vs"] == "ssp-lite"
            if r["model"] == "ssp-lite":
                assert r["auc_diff"] == r["acc_diff"] == ""
            else:
                first = next(f for f in rows if f["model"] == "ssp-lite" and f["setting"] == r["setting"])
                assert float(r["auc_diff"]) == pytest.approx(float(r["auc"]) - float(first["auc"]), abs=1e-9)
                assert float(r["acc_diff"]) == pytest.approx(float(r["acc"]) - float(first["acc"]), abs=1e-9)
                assert float(r["auc_diff_low"]) <= float(r["auc_diff"]) <= float(r["auc_diff_high"])
        labels = ["none" if v is None else f"{v:g}" for v in sweep.values]
        assert [(r["model"], r["setting"]) for r in rows] == [(m, s) for m in models for s in labels]
        assert all(r["n_real"] == r["n_fake"] == "4" for r in rows)
        md = (out / f"{name}.md").read_text().splitlines()
        assert md[2].startswith(f"| {sweep.title} | acc@t % ssp-lite | acc@t % essp-lite | real acc % ssp-lite")
        assert [line.split("|")[1].strip() for line in md[4 : 4 + len(labels)]] == labels
        assert f"| {sweep.title} | acc@t essp-lite - ssp-lite | AUC essp-lite - ssp-lite |" in md
        png = (out / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
        assert json.loads((out / f"{name}.json").read_text())["rows"][0]["degradation"] == name
    everything = json.loads((out / "robustness.json").read_text())["rows"]
    assert len(everything) == 2 * sum(len(s.values) for s in SWEEPS.values())
    assert all(f"## {s.title}" in (out / "robustness.md").read_text() for s in SWEEPS.values())
    # Settings that leave images unchanged give the same numbers, whichever sweep they belong to.
    clean = {(r["model"], r["degradation"]): r["auc"] for r in everything if r["setting"] in ("none", "0", "1")}
    assert (
        clean[("ssp-lite", "jpeg")]
        == clean[("ssp-lite", "blur")]
        == clean[("ssp-lite", "scale")]
        == clean[("ssp-lite", "webp")]
    )


def test_degradations_reach_the_model_and_the_sweep_is_deterministic(tree, checkpoints):
    loaded = load_model(checkpoints[0])
    samples = load_samples(tree, split="val")
    common = {"device": torch.device("cpu"), "precision": "fp32", "workers": 0, "progress": False}
    _, clean = evaluate_model(loaded, samples, **common)
    _, identity = evaluate_model(loaded, samples, degradation=Degradation("blur", 0), **common)
    np.testing.assert_array_equal(clean.p_fake, identity.p_fake)
    for degradation in (
        Degradation("jpeg", 30),
        Degradation("blur", 2),
        Degradation("webp", 50),
        Degradation("scale", 0.5),
    ):
        _, degraded = evaluate_model(loaded, samples, degradation=degradation, **common)
        assert np.abs(degraded.p_fake - clean.p_fake).max() > 1e-4, degradation
    kwargs = {"sweeps": ["jpeg"], "device": torch.device("cpu"), "precision": "fp32", "progress": False}
    first = run_robustness([("m", loaded)], samples, **kwargs)
    assert first == run_robustness([("m", loaded)], samples, **kwargs)
    # A model against itself: no difference, and an interval of exactly zero.
    twice = run_robustness([("m", loaded), ("again", loaded)], samples, bootstrap=200, **kwargs)
    again = [r for r in twice if r["model"] == "again"]
    assert all(r["vs"] == "m" and r[k] == 0.0 for r in again for k in DIFFERENCE_FIELDS)
    assert [{k: r[k] for k in first[0]} for r in twice[: len(first)]] == first


def test_bad_arguments_give_one_sentence(tree, checkpoints, tmp_path, capsys):
    assert (
        main(
            [
                "robustness",
                "--weights",
                str(checkpoints[0]),
                "--names",
                "a",
                "b",
                "--data",
                str(tree),
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "give one name per checkpoint" in capsys.readouterr().err
    with pytest.raises(ValueError, match="Unknown sweep"):
        run_robustness([], [], sweeps=["gamma"], device=torch.device("cpu"), precision="fp32")


def test_report_names_the_input_of_each_model_when_they_differ(tree, checkpoints, tmp_path):
    strata = make_checkpoint(tmp_path / "strata.pt", "ssp-strata")
    out = tmp_path / "mixed"
    args = ["--data", str(tree), "--sweeps", "blur", "--bootstrap", "0", "--workers", "0", "--no-progress"]
    assert main(["robustness", "--weights", *map(str, checkpoints), str(strata), *args, "--out", str(out)]) == 0
    notes = (out / "robustness.md").read_text()
    assert (
        "simple patch: ssp-lite, essp-lite: 32x32, seeded mode (seed 0), lowest of 64 candidates; "
        "ssp-strata: none (centre 256x256 crop"
    ) in notes
    repeated = [
        "--weights",
        str(checkpoints[0]),
        "--weights",
        str(checkpoints[1]),
    ]  # the option repeated: both models kept
    assert main(["robustness", *repeated, *args, "--out", str(tmp_path / "same")]) == 0
    same = (tmp_path / "same" / "robustness.md").read_text()
    assert "| acc@t % ssp-lite | acc@t % essp-lite |" in same
    assert "simple patch: 32x32, seeded mode (seed 0), lowest of 64 candidates; JPEG by pil" in same
