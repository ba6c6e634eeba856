"""benchmarks/gpu_check.sh in its CPU mode: every step runs and the one Markdown table reports each, so the
check is not broken the day a GPU is there. Also the table builder on made-up step results."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_check import make_tree, report

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("warmup", "cuda_tests", "speed", "tree", "train", "test_workers", "test_device")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_cpu_smoke_mode_runs_every_step_and_writes_the_table(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "SSP_GPU_CHECK_BUDGET": "1200"}
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-smoke"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
    )
    steps = tmp_path / "gpu_check_steps"
    failed = {
        s: (steps / f"{s}.log").read_text()[-1500:] for s in STEPS if (steps / f"{s}.status").read_text() != "0\n"
    }
    assert done.returncode == 0 and failed == {}, (done.stderr[-2000:], failed)
    table = (tmp_path / "gpu_check.md").read_text()
    assert table in done.stdout
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| check")]
    outcomes = {line.split(" | ")[0][2:]: line.split(" | ")[1] for line in rows}
    assert outcomes["CUDA tests (pytest -m gpu)"] == "ok"
    assert "skipped" in table  # without CUDA the GPU tests skip, and the table says so
    assert outcomes["training, 2 epochs, bf16, channels-last, torch.compile (ssp train)"] == "ok"
    assert outcomes["ssp test --decode device"] == "ok" and outcomes["ssp test --decode workers"] == "ok"
    # speed.py's numbers, each ratio against the stronger reference.
    speed = json.loads((steps / "speed.json").read_text())
    assert set(speed["results"]) == {"decode", "select", "eval", "train", "process"}
    assert "the stronger" in table and "whole process over 2 files" in table
    assert "2 epochs of 8 images" in table
    # What comes back from the GPU machine stays small: no checkpoints.
    assert not list(tmp_path.rglob("*.pt"))


def _write_step(steps: Path, name: str, status: str, seconds: str = "1.0", **files: str) -> None:
    (steps / f"{name}.status").write_text(status + "\n")
    (steps / f"{name}.seconds").write_text(seconds + "\n")
    for suffix, text in files.items():
        (steps / f"{name}.{suffix}").write_text(text)


def test_report_names_each_outcome_and_takes_ratios_against_the_stronger_reference(tmp_path):
    steps = tmp_path
    (steps / "env.json").write_text(json.dumps({"date": "D", "device": "NVIDIA H200", "cpus": 16, "mode": "gpu"}))
    _write_step(steps, "warmup", "0")
    _write_step(steps, "cuda_tests", "1", log="....F\n===== 1 failed, 4 passed in 12.30s =====\n")
    speed = {
        "meta": {"files": 100, "our_workers": 15},
        "results": {
            "decode": {"ours": 100.0},
            "eval": {
                "reference_w4": 50.0,
                "reference_w16": 200.0,
                "reference_single": 20.0,
                "ours": 800.0,
                "ours_device_decode": 1000.0,
                "ours_predict": 300.0,
                "model_alone": 5000.0,
            },
            "process": {"reference_w4": 10.0, "reference_w16": 4.0, "reference_single": 8.0, "ours": 2.0},
        },
    }
    (steps / "speed.json").write_text(json.dumps(speed))
    _write_step(steps, "speed", "0", "120.0")
    _write_step(steps, "train", "124", "150.0")
    _write_step(steps, "test_workers", "0", "10.0", images="500")
    (steps / "test_device.status").write_text("skipped\n")
    table = report(steps)
    assert "NVIDIA H200, 16 CPU cores" in table
    assert "| CUDA tests (pytest -m gpu) | failed (exit 1) | 1 failed, 4 passed |" in table
    assert "4.00x the stronger (official 16 workers)" in table  # 800 / 200, not 800 / 50
    assert "5.00x the stronger (official 16 workers)" in table  # device decode: 1000 / 200
    assert "ssp predict 2.0 s, official 4 workers 10.0 s, official 16 workers 4.0 s" in table
    assert "2.00x the stronger" in table  # whole process: the fastest reference's 4.0 s over 2.0 s
    assert "official 4 workers 50.0 (16.0x), official 16 workers 200.0 (4.0x)" in table  # the two targets
    assert "53% of 1500 img/s" in table  # 800 over the decode ceiling, 100 img/s x 15 workers
    assert "| training, 2 epochs, bf16, channels-last, torch.compile (ssp train) | timed out |" in table
    assert "500 images in 10.0 s, whole process: 50.0 img/s" in table
    assert "| ssp test --decode device | skipped (out of time) |" in table
    assert "| generated GenImage-like tree | not run |" in table


def test_generated_tree_has_the_genimage_layout_and_formats(tmp_path):
    assert make_tree(tmp_path, 2, 1, ("imagenet_ai_0419_sdv4",)) == 6
    from ssp_detect.data.layouts import load_samples

    samples = load_samples(str(tmp_path), layout="genimage", split="train")
    assert sorted((Path(s.path).suffix, s.label) for s in samples) == [
        (".JPEG", 0),
        (".JPEG", 0),
        (".png", 1),
        (".png", 1),
    ]
