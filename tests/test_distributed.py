"""torchrun with 2 CPU processes (gloo) gives the same results as 1 process, without duplicates."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import make_checkpoint, make_genimage_tree

pytestmark = pytest.mark.slow


def _failure(r: subprocess.CompletedProcess) -> str:
    """What a failed torchrun printed: the ranks' own errors (the start of stderr) and torchrun's summary."""
    return r.stderr if len(r.stderr) <= 6000 else f"{r.stderr[:4000]}\n...\n{r.stderr[-2000:]}"


def _torchrun(*args, nproc=2, cwd=None):
    exe = shutil.which("torchrun")
    cmd = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*cmd, "--standalone", "--nproc-per-node", str(nproc), "-m", "ssp_detect", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


def test_two_process_test_equals_one_process(tmp_path):
    # 7 + 7 images per subset: an odd total per split, so the sampler must pad one rank.
    root = make_genimage_tree(tmp_path / "g", subsets=("sdv4", "adm"), n=7, splits=("val",))
    (root / "imagenet_ai_0508_adm" / "val" / "ai" / "extra.png").write_bytes(
        (root / "imagenet_ai_0508_adm" / "val" / "ai" / "f0.png").read_bytes()
    )
    ckpt = make_checkpoint(tmp_path / "m.pt")
    common = ["--weights", str(ckpt), "--data", str(root), "--workers", "0", "--no-progress", "--batch-size", "4"]
    from ssp_detect.cli import main

    assert main(["test", *common, "--out", str(tmp_path / "one")]) == 0
    r = _torchrun("test", *common, "--out", str(tmp_path / "two"))
    assert r.returncode == 0, _failure(r)
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
    r = _torchrun(
        "train",
        "--data",
        str(root),
        "--model",
        "ssp-lite",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--steps-per-epoch",
        "2",
        "--workers",
        "0",
        "--train-eval-samples",
        "4",
        "--no-progress",
        "--out",
        str(out),
    )
    assert r.returncode == 0, _failure(r)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if x["type"] == "epoch"] == [1]  # one record, from rank 0 only
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()


def test_two_process_predict_writes_every_image_once_in_order(tmp_path):
    import numpy as np

    from tests.helpers import noisy_image, write_image

    rng = np.random.default_rng(0)
    paths = [write_image(tmp_path / "imgs" / f"{i:02d}.png", noisy_image(rng)) for i in range(7)]
    (tmp_path / "imgs" / "08_bad.png").write_bytes(b"oops")
    ckpt = make_checkpoint(tmp_path / "m.pt")
    from ssp_detect.cli import main

    args = ["predict", str(tmp_path / "imgs"), "--weights", str(ckpt), "--format", "jsonl", "--batch-size", "2"]
    assert main([*args, "--output", str(tmp_path / "one.jsonl")]) == 0
    r = _torchrun(*args, "--output", str(tmp_path / "two.jsonl"))
    assert r.returncode == 0, _failure(r)
    one = [json.loads(x) for x in (tmp_path / "one.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert (
        [x["path"] for x in two]
        == [x["path"] for x in one]
        == sorted(str(p) for p in [*paths, tmp_path / "imgs" / "08_bad.png"])
    )
    for a, b in zip(one, two, strict=True):
        assert (a["error"] is None) == (b["error"] is None)
        if a["p_fake"] is not None:
            assert b["p_fake"] == pytest.approx(a["p_fake"], abs=1e-6)
