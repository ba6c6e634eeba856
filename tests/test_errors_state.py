"""Errors that never lose work: output places checked before any work, write failures in one
sentence (exit 2) without temporary files left behind, resumed runs in their own folder with
metrics that do not repeat, and a test run that reads no image failing."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import pytest
import torch

from ssp_detect.cli import main
from ssp_detect.errors import SSPError
from ssp_detect.models.checkpoint import read_checkpoint_file, save_checkpoint
from ssp_detect.outputs import OutputError, ensure_writable_file, ensure_writable_folder
from tests.helpers import make_genimage_tree


def _writes_into_read_only_folders() -> bool:
    """True for a user whom a folder's mode does not stop (root with CAP_DAC_OVERRIDE)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o555)
        try:
            Path(tmp, "probe").write_bytes(b"")
        except PermissionError:
            return False
        finally:
            os.chmod(tmp, 0o755)
    return True


root_writes_anywhere = pytest.mark.skipif(
    _writes_into_read_only_folders(), reason="this user writes into read-only folders (root)"
)


def _one_sentence(err: str, command: str) -> str:
    """The error line of a command's stderr, checked to be the only ``error:`` line and a sentence."""
    lines = [line for line in err.splitlines() if line.startswith(f"ssp {command}: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    sentence = lines[0].split(": error: ", 1)[1]
    assert sentence.endswith(".") and ". " not in sentence, sentence
    return sentence


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_genimage_tree(tmp_path_factory.mktemp("data"), subsets=("sdv4",), n=12)


@pytest.fixture
def blocked(tmp_path) -> Path:
    """A folder that cannot be created, for any user: its parent is a regular file."""
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path / "afile" / "sub"


def _deny(*names):
    """Fail the test if one of the functions (module path, name) is called: the work that must not start."""

    def patch(monkeypatch):
        for module, name in names:

            def refuse(*args, _name=name, **kwargs):
                raise AssertionError(f"{_name} ran before the output place was checked")

            monkeypatch.setattr(f"{module}.{name}", refuse)

    return patch


def _train_args(tree, out, *extra):
    return [
        "train",
        "--data",
        str(tree),
        "--model",
        "ssp-cooc",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--train-eval-samples",
        "4",
        "--val-fraction",
        "0.25",
        "--log-every",
        "1",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


# -- output places ------------------------------------------------------------------------------


def test_output_checks_name_the_place_and_the_option(tmp_path, blocked):
    assert ensure_writable_folder(tmp_path / "a" / "b", "--out").is_dir()
    assert not list((tmp_path / "a" / "b").iterdir())  # the probe file is gone
    with pytest.raises(
        OutputError, match=re.escape(f"Cannot write into {blocked} (Not a directory); choose another --out.")
    ):
        ensure_writable_folder(blocked, "--out")
    target = ensure_writable_file(tmp_path / "new" / "results.csv", "--output")
    assert target.parent.is_dir() and not target.exists()  # the folder made, the file untouched
    with pytest.raises(OutputError, match=re.escape(f"{tmp_path} is a folder; give --output a file name.")):
        ensure_writable_file(tmp_path, "--output")
    err = OutputError("x")
    assert isinstance(err, SSPError) and isinstance(err, OSError) and str(err) == "x"


@root_writes_anywhere
def test_a_read_only_folder_is_refused_before_any_work(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match=r"Cannot write into .*ro \(Permission denied\); choose another --out\."):
            ensure_writable_folder(folder, "--out")
        with pytest.raises(OutputError, match=r"Cannot write into .*ro \(Permission denied\)"):
            ensure_writable_file(folder / "x.csv", "--output")
    finally:
        folder.chmod(0o755)


def _full_disk(monkeypatch, when=lambda obj, name: True):
    """torch.save writes part of the file, then finds the disk full, when ``when(obj, file name)``."""
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if hasattr(f, "write") and when(obj, Path(getattr(f, "name", "")).name):
            f.write(b"PK\x03\x04 part of a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_a_full_disk_keeps_the_previous_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})
    _full_disk(monkeypatch)
    with pytest.raises(OutputError) as failed:
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(3)})
    assert str(failed.value) == (
        f"Could not write the checkpoint {path} (No space left on device); the previous one is unchanged; "
        "free some space or choose another place."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert read_checkpoint_file(path)["epoch"] == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_a_really_full_device_is_an_output_error(tmp_path):
    """/dev/full fails every write with ENOSPC; the temporary file is a link to it."""
    (tmp_path / "m.pt.tmp").symlink_to("/dev/full")
    with pytest.raises(OutputError, match=r"m\.pt \(No space left on device\); free some space"):
        save_checkpoint(tmp_path / "m.pt", {"w": torch.zeros(10_000)})
    assert not list(tmp_path.iterdir())


def test_an_interrupted_save_leaves_no_temporary_file(tmp_path, monkeypatch):
    def interrupted(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "last.pt", {"w": torch.zeros(3)})
    assert not list(tmp_path.iterdir())


def test_train_refuses_an_unwritable_out_before_reading_data(tree, blocked, monkeypatch, capsys):
    _deny(("ssp_detect.engine.train", "load_train_val"))(monkeypatch)
    assert main(_train_args(tree, blocked, "--epochs", "1")) == 2
    assert _one_sentence(capsys.readouterr().err, "train") == (
        f"Cannot write into {blocked} (Not a directory); choose another --out."
    )


def test_train_on_a_disk_that_fills_up_stops_in_one_sentence_and_can_resume(tree, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _full_disk(monkeypatch, when=lambda obj, name: name == "last.pt.tmp" and obj.get("epoch") == 2)
    assert main(_train_args(tree, out, "--epochs", "3")) == 2
    assert _one_sentence(capsys.readouterr().err, "train") == (
        f"Could not write the checkpoint {out / 'last.pt'} (No space left on device); the previous one is "
        "unchanged; free some space or choose another place."
    )
    assert not list(out.glob("*.tmp"))
    assert read_checkpoint_file(out / "last.pt")["epoch"] == 1
    monkeypatch.undo()
    assert main(["train", "--resume", str(out / "last.pt"), "--no-progress"]) == 0
    assert read_checkpoint_file(out / "last.pt")["epoch"] == 3


def test_test_refuses_an_unwritable_out_before_scoring(tree, checkpoint_path, blocked, monkeypatch, capsys):
    _deny(("ssp_detect.engine.scoring", "evaluate_model"))(monkeypatch)
    args = ["test", "--weights", str(checkpoint_path), "--data", str(tree), "--workers", "0", "--no-progress"]
    assert main([*args, "--out", str(blocked)]) == 2
    assert _one_sentence(capsys.readouterr().err, "test") == (
        f"Cannot write into {blocked} (Not a directory); choose another --out."
    )


def test_test_on_a_disk_that_fills_up_while_writing_results(tree, checkpoint_path, tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "t" / "results.csv"))

    monkeypatch.setattr("ssp_detect.engine.report.write_summary", full)
    args = ["test", "--weights", str(checkpoint_path), "--data", str(tree), "--workers", "0", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "t")]) == 2
    assert _one_sentence(capsys.readouterr().err, "test") == (
        f"Could not write the results to {tmp_path / 't'} (No space left on device); free some space or choose "
        "another place."
    )


def test_predict_refuses_an_unwritable_output_before_loading_the_model(
    tree, checkpoint_path, blocked, monkeypatch, capsys
):
    _deny(("ssp_detect.predict_io.Detector", "from_checkpoint"))(monkeypatch)
    images = str(tree / "imagenet_ai_0419_sdv4" / "val" / "ai")
    assert main(["predict", images, "--weights", str(checkpoint_path), "--output", str(blocked / "r.csv")]) == 2
    assert _one_sentence(capsys.readouterr().err, "predict") == (
        f"Cannot write into {blocked} (Not a directory); choose another --output."
    )
    assert main(["predict", images, "--weights", str(checkpoint_path), "--output", str(tree)]) == 2
    assert _one_sentence(capsys.readouterr().err, "predict") == f"{tree} is a folder; give --output a file name."


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_predict_into_a_full_device_and_into_a_new_folder(tree, checkpoint_path, tmp_path, capsys):
    images = str(tree / "imagenet_ai_0419_sdv4" / "val" / "ai")
    (tmp_path / "full.csv").symlink_to("/dev/full")
    assert main(["predict", images, "--weights", str(checkpoint_path), "--output", str(tmp_path / "full.csv")]) == 2
    assert _one_sentence(capsys.readouterr().err, "predict") == (
        f"Could not write the results to {tmp_path / 'full.csv'} (No space left on device); free some space or "
        "choose another place."
    )
    fresh = tmp_path / "new" / "deeper" / "r.csv"
    assert main(["predict", images, "--weights", str(checkpoint_path), "--format", "csv", "--output", str(fresh)]) == 0
    assert len(fresh.read_text().splitlines()) == 1 + 12


@root_writes_anywhere
@pytest.mark.parametrize("command", ["train", "test", "predict"])
def test_read_only_output_folders_exit_2_in_every_command(command, tree, checkpoint_path, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    weights = ["--weights", str(checkpoint_path)]
    try:
        argv = {
            "train": _train_args(tree, folder, "--epochs", "1"),
            "test": ["test", *weights, "--data", str(tree), "--workers", "0", "--no-progress", "--out", str(folder)],
            "predict": ["predict", str(tree), "--recursive", *weights, "--output", str(folder / "r.csv")],
        }[command]
        assert main(argv) == 2
        assert "(Permission denied); choose another" in _one_sentence(capsys.readouterr().err, command)
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("command", ["cross-eval", "robustness", "calibrate", "explain"])
def test_other_commands_refuse_an_unwritable_place_before_loading(
    command, tree, checkpoint_path, blocked, monkeypatch, capsys
):
    _deny(
        ("ssp_detect.engine.cross_eval", "load_model"),
        ("ssp_detect.models.loading", "load_model"),
        ("ssp_detect.detector.Detector", "from_checkpoint"),
    )(monkeypatch)
    data = ["--data", str(tree), "--workers", "0", "--no-progress"]
    weights = ["--weights", str(checkpoint_path)]
    argv = {
        "cross-eval": ["cross-eval", *weights, *data, "--out", str(blocked)],
        "robustness": ["robustness", *weights, *data, "--sweeps", "jpeg", "--out", str(blocked)],
        "calibrate": ["calibrate", *weights, *data, "--output", str(blocked / "c.pt")],
        "explain": ["explain", str(next(tree.rglob("*.png"))), *weights, "--out", str(blocked / "e.png")],
    }[command]
    option = "--output" if command == "calibrate" else "--out"
    assert main(argv) == 2
    assert _one_sentence(capsys.readouterr().err, command) == (
        f"Cannot write into {blocked} (Not a directory); choose another {option}."
    )


# -- ssp test without a readable image ----------------------------------------------------------


def test_test_exits_2_when_no_image_can_be_read(tmp_path, checkpoint_path, capsys):
    for folder, name in (("nature", "a.jpg"), ("ai", "b.png")):
        (tmp_path / "data" / "x" / "val" / folder).mkdir(parents=True)
        (tmp_path / "data" / "x" / "val" / folder / name).write_text("not an image")
    out = tmp_path / "t"
    argv = ["test", "--weights", str(checkpoint_path), "--data", str(tmp_path / "data"), "--workers", "0"]
    assert main([*argv, "--no-progress", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    first = tmp_path / "data" / "x" / "val" / "nature" / "a.jpg"
    assert _one_sentence(captured.err, "test") == (
        f"None of the 2 image(s) could be read (the first: {first}); the report lists why."
    )
    assert "| pooled" not in captured.out  # no empty table
    report = json.loads((out / "results.json").read_text())
    assert report["n_unreadable"] == 2 and "is not an image format" in report["unreadable"][0]["error"]


# -- resuming -----------------------------------------------------------------------------------


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_resume_of_a_moved_run_continues_in_its_new_folder(tree, tmp_path, capsys):
    old, moved = tmp_path / "run", tmp_path / "moved"
    assert main(_train_args(tree, old, "--epochs", "3", "--stop-after", "1")) == 0
    old.rename(moved)
    capsys.readouterr()
    assert main(["train", "--resume", str(moved / "last.pt"), "--out", str(tmp_path / "other"), "--no-progress"]) == 2
    assert _one_sentence(capsys.readouterr().err, "train") == (
        f"--resume continues the run in the folder of {moved / 'last.pt'}; leave out --out, or copy that folder "
        f"to {tmp_path / 'other'} and resume from the last.pt there."
    )
    assert main(["train", "--resume", str(moved / "last.pt"), "--no-progress"]) == 0
    assert not old.exists() and not (tmp_path / "other").exists()
    assert read_checkpoint_file(moved / "last.pt")["epoch"] == 3  # --stop-after 1 was reached before: on to the end
    log = (moved / "train.log").read_text()
    assert f"continuing the run in {moved}, the folder of {moved / 'last.pt'} (its config.yaml said {old})" in log
    assert "--stop-after 1 was reached before; training on to epoch 3" in log
    assert f"out: {moved}" in (moved / "config.yaml").read_text()
    assert [r["epoch"] for r in _records(moved / "metrics.jsonl") if r["type"] == "epoch"] == [1, 2, 3]


def test_resume_from_best_pt_says_to_pass_last_pt(tree, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(tree, out, "--epochs", "2", "--stop-after", "1")) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out / "best.pt"), "--no-progress"]) == 2
    assert _one_sentence(capsys.readouterr().err, "train") == (
        f"{out / 'best.pt'} cannot be resumed: it holds no optimizer state (best.pt and calibrated copies are saved "
        f"without it); pass the last.pt of its run folder, {out / 'last.pt'}."
    )


def test_a_killed_and_resumed_run_logs_each_step_once(tree, tmp_path, monkeypatch):
    """Killed in epoch 2 after its steps were logged (during validation), then resumed from the last.pt of
    epoch 1: metrics.jsonl holds the records of the run that was never killed, each once."""
    import ssp_detect.engine.train as train_module

    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main(_train_args(tree, full, "--epochs", "2")) == 0

    real_predict, calls = train_module.predict_loader, []

    def predict_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # epoch 1: validation, training probe; epoch 2: validation
            raise KeyboardInterrupt
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(train_module, "predict_loader", predict_then_die)
    assert main(_train_args(tree, killed, "--epochs", "2")) == 130
    monkeypatch.undo()
    assert 2 in {r["epoch"] for r in _records(killed / "metrics.jsonl") if r["type"] == "step"}  # logged, then killed
    with (killed / "metrics.jsonl").open("a") as f:
        f.write('{"type": "step", "epo')  # a line the kill cut short
    assert read_checkpoint_file(killed / "last.pt")["epoch"] == 1
    assert main(["train", "--resume", str(killed / "last.pt"), "--no-progress"]) == 0

    def steps(path):
        return [(r["epoch"], r["step"], r["loss"]) for r in _records(path / "metrics.jsonl") if r["type"] == "step"]

    def epochs(path):
        return [(r["epoch"], r["train_loss"]) for r in _records(path / "metrics.jsonl") if r["type"] == "epoch"]

    assert steps(killed) == steps(full) and len(steps(full)) > 2
    assert epochs(killed) == epochs(full) and [e for e, _ in epochs(full)] == [1, 2]
    assert "dropped" in (killed / "train.log").read_text()


def test_predict_to_refuses_a_batch_size_of_zero(checkpoint_path, tmp_path):
    """The command line refuses it in argparse; the library call would have scored nothing, silently."""
    from ssp_detect.errors import UsageError
    from ssp_detect.predict_io import predict_to

    with pytest.raises(UsageError, match=r"^The batch size must be at least 1, not 0\.$"):
        predict_to(checkpoint_path, [str(tmp_path)], batch_size=0)


def test_an_input_error_while_predicting_is_not_blamed_on_the_output(
    tree, checkpoint_path, tmp_path, monkeypatch, capsys
):
    image = str(next(tree.rglob("*.png")))

    def paths(inputs, recursive=False):
        yield image
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "list.csv")  # a CSV list it cannot read

    monkeypatch.setattr("ssp_detect.predict_io.iter_image_paths", paths)
    out = tmp_path / "r.jsonl"
    argv = ["predict", "list.csv", "--weights", str(checkpoint_path), "--format", "jsonl", "--batch-size", "1"]
    assert main([*argv, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "ssp predict: error: Permission denied: list.csv" in err and "Could not write" not in err, err
