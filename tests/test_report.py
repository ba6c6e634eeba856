"""The results tables: operating-point and calibration columns, their order, and the reliability diagram."""

import csv
import json
import math

import numpy as np
import pytest

from ssp_detect.data.layouts import Sample
from ssp_detect.engine.evaluate import Predictions, summarize
from ssp_detect.engine.metrics import expected_calibration_error, tpr_at_fpr
from ssp_detect.engine.report import (
    COLUMNS,
    TRUST_COLUMNS,
    markdown_table,
    plot_reliability,
    write_summary,
)


def scored(rng, subsets=("adm", "sdv4"), n=200):
    """Samples of two subsets (n reals, n fakes each) and their predictions, fakes scoring higher."""
    samples, labels, p_fake = [], [], []
    for shift, subset in zip((0.3, 0.6), subsets, strict=False):
        for label in (0, 1):
            samples += [Sample(f"{subset}/{label}/{i}.png", label, subset) for i in range(n)]
            labels += [label] * n
            p_fake += list(np.clip(rng.random(n) * 0.7 + shift * label, 0, 1))
    k = len(samples)
    preds = Predictions(
        index=np.arange(k),
        label=np.array(labels),
        p_fake=np.array(p_fake),
        box=np.zeros((k, 4), dtype=np.int64),
        score=np.zeros(k, dtype=np.int64),
    )
    return samples, preds


def test_summary_blocks_hold_tpr_at_fpr_and_ece(rng):
    samples, preds = scored(rng)
    summary = summarize(samples, preds, 0.6)
    first = preds.index < 400  # the adm images
    adm = summary["subsets"]["adm"]
    assert adm["tpr@fpr5"] == tpr_at_fpr(preds.label[first], preds.p_fake[first], 0.05)
    assert adm["ece"] == expected_calibration_error(preds.label[first], preds.p_fake[first], 15)
    assert adm["tpr@fpr1"] <= adm["tpr@fpr5"] <= adm["tpr@fpr10"]
    assert adm["real_acc"] == (preds.p_fake[first & (preds.label == 0)] < 0.6).mean()  # at the summary's threshold
    assert adm["fake_acc"] == (preds.p_fake[first & (preds.label == 1)] >= 0.6).mean()
    assert summary["subsets"]["sdv4"]["tpr@fpr5"] > adm["tpr@fpr5"]  # sdv4's fakes are shifted further
    for key in TRUST_COLUMNS:
        per_subset = [summary["subsets"][s][key] for s in ("adm", "sdv4")]
        assert summary["mean_over_subsets"][key] == pytest.approx(np.mean(per_subset))
    assert summary["pooled"]["tpr@fpr10"] == tpr_at_fpr(preds.label, preds.p_fake, 0.10)
    reals = Predictions(preds.index[:200], preds.label[:200], preds.p_fake[:200], preds.box[:200], preds.score[:200])
    one_class = summarize(samples[:200], reals)
    assert math.isnan(one_class["pooled"]["tpr@fpr5"]) and one_class["pooled"]["ece"] >= 0


def test_markdown_leads_with_what_a_user_meets(rng):
    samples, preds = scored(rng)
    md = markdown_table(summarize(samples, preds, 0.6)).splitlines()
    assert md[0].startswith("| subset | real acc % | fake acc % | AUC % | TPR@FPR5 % | acc@t % |")
    assert md[0].endswith("| ECE % | best acc % | best t | real | fake |")
    assert len(md[1].split("|")) == len(md[0].split("|"))
    rows = [line.split("|")[1].strip() for line in md[2:]]
    assert rows == ["adm", "sdv4", "mean over subsets", "pooled (all images)"]
    summary = summarize(samples, preds, 0.6, bootstrap=50)
    with_interval = markdown_table(summary).splitlines()
    assert "| AUC % | AUC 95% interval | TPR@FPR5 % |" in with_interval[0]
    pooled = summary["pooled"]
    interval = f"{100 * pooled['auc_low']:.1f}-{100 * pooled['auc_high']:.1f}"
    leading = [f"{100 * pooled[k]:.1f}" for k in ("real_acc", "fake_acc", "auc")]
    leading += [interval, f"{100 * pooled['tpr@fpr5']:.1f}"]
    assert with_interval[-1].startswith("| pooled (all images) | " + " | ".join(leading) + " |")
    old = markdown_table({"subsets": {"x": {"real_acc": 0.5}}, "mean_over_subsets": {}, "pooled": {"real_acc": 0.5}})
    assert "| pooled (all images) | 50.0 | - |" in old  # a summary without the new metrics still renders


def test_write_summary_columns_and_reliability_diagram(rng, tmp_path):
    samples, preds = scored(rng)
    summary = summarize(samples, preds, 0.6, bootstrap=50)
    paths = write_summary(summary, tmp_path, title="Test", reliability=(preds.label, preds.p_fake))
    assert [p.name for p in paths] == ["results.md", "results.csv", "results.json", "reliability.png"]
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert list(rows[0]) == ["subset", *COLUMNS, "tpr@fpr1", "tpr@fpr5", "tpr@fpr10", "ece", "auc_low", "auc_high"]
    assert float(rows[-1]["tpr@fpr5"]) == summary["pooled"]["tpr@fpr5"]
    assert float(rows[-1]["ece"]) == summary["pooled"]["ece"]
    assert json.loads((tmp_path / "results.json").read_text())["pooled"]["tpr@fpr1"] == summary["pooled"]["tpr@fpr1"]
    md = (tmp_path / "results.md").read_text()
    assert "`reliability.png`" in md and "real acc: share of real images called real at t" in md
    png = (tmp_path / "reliability.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    # Another stem, as cross-eval writes several summaries into one folder: the diagram is named after it.
    again = write_summary(summary, tmp_path, stem="00_adm", reliability=(preds.label, preds.p_fake))
    assert again[-1].name == "00_adm_reliability.png" and "`00_adm_reliability.png`" in again[0].read_text()
    without = write_summary(summary, tmp_path / "plain")
    assert len(without) == 3 and "reliability" not in without[0].read_text()
    assert not (tmp_path / "plain" / "reliability.png").exists()


def test_plot_reliability_leaves_the_pyplot_backend_alone(rng, tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    p = rng.random(500)
    labels = (rng.random(500) < p).astype(int)
    path = plot_reliability(labels, p, tmp_path / "sub" / "r.png", title="calibrated", bins=10)
    assert path == tmp_path / "sub" / "r.png" and path.read_bytes().startswith(b"\x89PNG")
    assert matplotlib.get_backend() == before
    with pytest.raises(ValueError, match="not logits"):
        plot_reliability(np.array([0, 1]), np.array([-2.0, 3.0]), tmp_path / "bad.png")
