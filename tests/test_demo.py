"""``ssp demo`` end to end on the tiny benchmark: every report file, every model, both splits."""

import json

import pytest

from ssp_detect.demo import DEMO_SUBSETS
from ssp_detect.demo.pipeline import DemoPlan, DemoRun, plan_for, run_demo
from tests.helpers import needs_generators


@pytest.mark.slow
@needs_generators
def test_demo_writes_a_complete_report(tmp_path):
    import torch

    torch.set_num_threads(1)  # the generators are much faster single-threaded on a busy machine
    plan = DemoPlan(
        size="tiny",
        runs=(
            DemoRun("ssp-strata", 1, 1e-2, delivery_prob=0.5, crossfit_folds=2),
            DemoRun("ssp-cooc", 1, 1e-2),
            DemoRun("baseline-lite", 1, 1e-3),
        ),
        epochs=1,
        batch_size=8,
        val_fraction=0.5,
    )
    models = [run.model for run in plan.runs]
    report = run_demo(tmp_path / "run", tmp_path / "data", device="cpu", progress=False, plan=plan)
    names = {p.name for p in report.iterdir()}
    assert {
        "README.md",
        "demo.json",
        "contact_sheet.png",
        "cross_generator_acc.png",
        "cross_generator_auc.png",
        "cross_generator_auc.md",
        "tables",
    } <= names
    tables = {p.name for p in (report / "tables").iterdir()}
    for model in models:
        for split in ("val", "val_matched"):
            assert f"{model}_{split}.md" in tables
    data = json.loads((report / "demo.json").read_text())
    assert set(data["results"]) == {f"{m} / {k}" for m in models for k in ("plain", "format-matched")}
    assert set(data["results"]["ssp-cooc / plain"]["subsets"]) == set(DEMO_SUBSETS)
    auc = json.loads((report / "cross_generator_auc.json").read_text())
    assert len(auc["matrix"]) == 3 and len(auc["test"]) == 2 * len(DEMO_SUBSETS)
    readme = (report / "README.md").read_text()
    assert "format-matched" in readme
    assert "## Validated on" in readme and "leave-one-source-out" in readme
    assert "random deliveries (JPEG, WebP, resizing, PNG, both classes alike) for ssp-strata 50%." in readme
    config = (tmp_path / "run" / "ssp-strata" / "config.yaml").read_text()
    assert "delivery_prob: 0.5" in config and "crossfit_folds: 2" in config
    assert "cross-fitting:" in (tmp_path / "run" / "ssp-strata" / "train.log").read_text()  # tiny: folds too small
    assert (
        "## Examples: `ssp-cooc` on validation images, simple patch boxed" in readme
    )  # the first model fed a simple patch draws them


def test_the_gpu_plan_uses_more_data_and_epochs_and_every_planned_model_exists():
    import torch

    from ssp_detect.demo import SIZE_PRESETS
    from ssp_detect.models import get_spec

    cpu, gpu = plan_for(torch.device("cpu")), plan_for(torch.device("cuda"))
    assert SIZE_PRESETS[gpu.size].pairs > SIZE_PRESETS[cpu.size].pairs and gpu.epochs > cpu.epochs
    for plan in (cpu, gpu):
        specs = [get_spec(run.model) for run in plan.runs]  # raises for an unknown name
        # the protocol's best recipe
        assert plan.runs[0] == DemoRun("ssp-strata", 8, 1e-1, delivery_prob=0.5, crossfit_folds=5)
        assert plan.runs[0].model == "ssp-strata" and any(
            spec.input == "patch" for spec in specs
        )  # a patch model draws the contact sheet
        assert any(spec.input == "image" for spec in specs)  # and a whole-image baseline beside them
