"""torchrun with 2 CPU processes (gloo) gives the same results as 1 process, without duplicates."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import make_checkpoint, make_genimage_tree

pytestmark = pytest.mark.slow


def _torchrun(*args, nproc=2, cwd=None):
    exe = shutil.which("torchrun")
    cmd = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*cmd, "--standalone", "--nproc-per-node", str(nproc), "-m", "ssp_detect", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_two_process_test_equals_one_process(tmp_path):
    # 7 + 7 images per subset: an odd total per split, so the sampler must pad one rank.
    root = make_genimage_tree(tmp_path / "g", subsets=("sdv4", "adm"), n=7, splits=("val",))
    (root / "imagenet_ai_0508_adm" / "val" / "ai" / "extra.png").write_bytes((root / "imagenet_ai_0508_adm" / "val" / "ai" / "f0.png").read_bytes())
    ckpt = make_checkpoint(tmp_path / "m.pt")
    common = ["--weights", str(ckpt), "--data", str(root), "--workers", "0", "--no-progress", "--batch-size", "4"]
    from ssp_detect.cli import main

    assert main(["test", *common, "--out", str(tmp_path / "one")]) == 0
    r = _torchrun("test", *common, "--out", str(tmp_path / "two"))
    assert r.returncode == 0, r.stderr[-2000:]
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["pooled"]["n_real"] + two["pooled"]["n_fake"] == 29  # no padded duplicates
    for scope in ("pooled", "mean_over_subsets"):
        for k, v in one[scope].items():
            assert two[scope][k] == pytest.approx(v, abs=1e-6), (scope, k)
    assert set(two["subsets"]) == {"sdv4", "adm"}


def test_two_process_training_runs_and_only_rank0_writes(tmp_path):
    root = make_genimage_tree(tmp_path / "g", subsets=("sdv4",), n=8)
    out = tmp_path / "run"
    r = _torchrun("train", "--data", str(root), "--model", "ssp-lite", "--epochs", "1", "--batch-size", "4", "--steps-per-epoch", "2",
                  "--workers", "0", "--train-eval-samples", "4", "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if x["type"] == "epoch"] == [1]  # one record, from rank 0 only
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
