"""The leave-one-source-out / leave-one-family-out protocol on a tiny benchmark."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import protocol
from tests.helpers import noisy_image, write_image


def tiny_benchmark(root):
    rng = np.random.default_rng(0)
    images = []
    for subset in ("gen_a", "gen_b"):
        for split in ("train", "val", "val_matched"):
            for package in ("pkg_one", "pkg_two"):
                for i in range(6 if split == "train" else 2):
                    for label, noise in (("nature", 12.0), ("ai", 0.0)):
                        rel = f"{subset}/{split}/{label}/{package}-{i}.png"
                        write_image(root / rel, noisy_image(rng, (48, 48), noise=noise))
                        images.append(
                            {
                                "path": rel,
                                "subset": subset,
                                "split": split,
                                "label": label,
                                "photo_id": f"{package}/{i}",
                                "source": {"package": package},
                            }
                        )
    (root / "manifest.json").write_text(json.dumps({"images": images}))
    return root


def test_protocol_never_trains_on_the_held_out_source_and_reports_every_fold(tmp_path):
    root = tiny_benchmark(tmp_path / "bench")
    out = tmp_path / "out"
    args = [
        "--data",
        str(root),
        "--train-subsets",
        "gen_a",
        "--family",
        "a=gen_a",
        "--out",
        str(out),
        "--set",
        "model=ssp-cooc",
        "epochs=2",
        "batch_size=8",
        "lr=0.05",
        "workers=0",
        "val_fraction=0.25",
    ]
    assert protocol.main(args) == 0
    for held, other in (("pkg_one", "pkg_two"), ("pkg_two", "pkg_one")):
        trained = {p.name for p in (out / "folds" / f"loso-{held}").rglob("*.png")}
        assert trained and all(name.startswith(other) for name in trained)
    report = json.loads((out / "protocol.json").read_text())
    assert [r["held_out"] for r in report["loso"]] == ["pkg_one", "pkg_two"]
    for row in report["loso"]:
        assert row["n_real"] == 8 and 0 <= row["reals_called_fake"] <= 1 and 0 <= row["auc_stored"] <= 1
        assert row["format_real_mean"] >= 0 and row["format_real_p95"] >= row["format_real_mean"] - 1e-12
        # the generator never trained on, against the same held-out reals
        assert 0 <= row["auc_gen_b_stored"] <= 1 and 0 <= row["caught_gen_b"] <= 1
    pooled = report["pooled"]
    assert pooled["reals"]["n"] == 16 and 0 <= pooled["reals"]["called_fake"] <= 1
    assert pooled["gen_a"]["trained"] == 1 and pooled["gen_b"]["trained"] == 0
    assert 0 <= pooled["gen_b"]["auc_stored"] <= 1 and 0 <= pooled["gen_b"]["auc_jpeg_histories"] <= 1
    # every image is scored by the fold that held its package out, and no image twice in a fold
    for s in report["scored"]:
        assert s["path"].split("/")[-1].startswith(s["fold"])
    assert len({(s["fold"], s["path"]) for s in report["scored"]}) == len(report["scored"])
    assert set(report["lofo"]["a"]) == {"gen_a/val", "gen_a/val_matched", "gen_b/val", "gen_b/val_matched"}
    text = (out / "protocol.md").read_text()
    assert "Leave one photo source out" in text and "All folds pooled" in text and "| gen_b | no |" in text
    # an ensemble of a run with itself is that run: same AUCs, same decisions
    assert protocol.main(["--combine", str(out), str(out), "--out", str(tmp_path / "ens")]) == 0
    combined = json.loads((tmp_path / "ens" / "protocol.json").read_text())["pooled"]
    for subset in ("gen_a", "gen_b"):
        assert combined[subset]["auc_stored"] == pytest.approx(pooled[subset]["auc_stored"])
    assert combined["reals"] == pooled["reals"]


def test_ensemble_calls_fake_only_when_every_member_does():
    one = [{"fold": "f", "path": "a.png", "label": 0, "p_fake": 0.9, "called_fake": True}]
    two = [{"fold": "f", "path": "a.png", "label": 0, "p_fake": 0.2, "called_fake": False}]
    (joined,) = protocol.ensemble([one, two])
    assert not joined["called_fake"] and joined["p_fake"] == pytest.approx(0.6, abs=1e-6)  # mean logit: 0.6
