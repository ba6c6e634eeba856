"""The ``ssp`` parser: choices from library constants, train flags from TrainConfig, consistent flag
names and aliases, and the line between user errors (one sentence, exit 2) and bugs (traceback)."""

import argparse
from dataclasses import fields

import pytest
import yaml

from ssp_detect.cli import build_parser, main
from ssp_detect.cli.train import train_config
from ssp_detect.config import (
    CROSSFIT_GROUPS,
    PRESET_DIR,
    RENAMED_KEYS,
    SELECT_METRICS,
    ConfigError,
    TrainConfig,
    build_config,
    default_text,
)
from ssp_detect.constants import EXPORT_FORMATS
from ssp_detect.data.degradations import INTERPOLATIONS, JPEG_METHODS
from ssp_detect.data.layouts import LAYOUTS
from ssp_detect.data.patch import MODES
from ssp_detect.demo.build import DEMO_SIZES
from ssp_detect.engine.cross_eval import CROSS_EVAL_METRICS
from ssp_detect.engine.robustness import SWEEPS
from ssp_detect.engine.runtime import BACKENDS, DECODERS, PRECISIONS
from ssp_detect.errors import SSPError, UsageError
from ssp_detect.predict_io import FORMATS

LIBRARY_CHOICES = [
    list(c)
    for c in (
        LAYOUTS,
        MODES,
        PRECISIONS,
        BACKENDS,
        DECODERS,
        JPEG_METHODS,
        INTERPOLATIONS,
        FORMATS,
        CROSS_EVAL_METRICS,
        SELECT_METRICS,
        CROSSFIT_GROUPS,
        SWEEPS,
        DEMO_SIZES,
        EXPORT_FORMATS,
    )
]
WEIGHT_COMMANDS = {  # commands that load weights, with the arguments they need besides --weights
    "test": [],
    "eval": [],
    "cross-eval": [],
    "robustness": [],
    "calibrate": ["--output", "o.pt"],
    "predict": ["img.png"],
    "explain": ["img.png", "--out", "f.png"],
    "serve": [],
}


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every (sub-)command's parser by its full name, e.g. ``data build-demo``."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(commands(sub, f"{prefix}{name} "))
    return found


def options_of(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_every_choices_list_is_a_library_constant():
    seen = 0
    for name, parser in commands(build_parser()).items():
        for action in options_of(parser):
            if action.choices is not None:
                seen += 1
                assert list(action.choices) in LIBRARY_CHOICES, (name, action.option_strings, action.choices)
    assert seen >= 20  # the walk reached every command's options


def test_train_flags_are_exactly_the_config_fields_with_their_defaults_in_the_help():
    train = commands(build_parser())["train"]
    visible = [a for a in options_of(train) if a.help != argparse.SUPPRESS]
    assert {a.dest for a in visible} == {f.name for f in fields(TrainConfig)} | {"config", "resume"}
    by_dest = {a.dest: a for a in visible}
    for f in fields(TrainConfig):
        action = by_dest[f.name]
        assert f"--{f.name.replace('_', '-')}" in action.option_strings
        assert action.default is None  # the preset < flags layering needs unset flags to stay None
        if f.default is not None:  # a real default is shown as the dataclass holds it
            assert "{default}" in f.metadata["help"] and f"default {default_text(f)}" in action.help, f.name
    assert by_dest["compile"].option_strings == ["--compile", "--no-compile"]
    assert by_dest["batch_size"].type("3") == 3


def test_train_config_comes_from_flags_presets_and_the_resumed_run(tmp_path):
    parse = build_parser().parse_args
    assert train_config(parse(["train"])) == TrainConfig()
    (tmp_path / "p.yaml").write_text("compile: true\nepochs: 5\n")
    preset = str(tmp_path / "p.yaml")
    assert train_config(parse(["train", "--config", preset])).compile is True
    cfg = train_config(parse(["train", "--config", preset, "--no-compile", "--epochs", "7"]))
    assert (cfg.compile, cfg.epochs) == (False, 7)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({**TrainConfig().to_dict(), "epochs": 9} | {"jpeg_prob": None}))
    assert train_config(parse(["train", "--resume", str(run / "last.pt")])).epochs == 9


def test_no_compile_overrides_a_presets_compile_through_main(tmp_path, monkeypatch, capsys):
    import ssp_detect.engine.train

    seen = []

    def fake_train(cfg, *, resume=None):
        seen.append((cfg, resume))
        return {"best": "best.pt", "out": str(tmp_path), "best_val": {"acc": 1.0, "auc": 1.0}}

    monkeypatch.setattr(ssp_detect.engine.train, "train", fake_train)
    (tmp_path / "p.yaml").write_text("compile: true\nprogress: true\nstrict: true\n")
    assert main(["train", "--config", str(tmp_path / "p.yaml"), "--no-compile", "--no-progress"]) == 0
    assert main(["train", "--config", str(tmp_path / "p.yaml")]) == 0
    (cfg_off, _), (cfg_on, _) = seen
    assert (cfg_off.compile, cfg_off.progress, cfg_off.strict) == (False, False, True)
    assert (cfg_on.compile, cfg_on.progress, cfg_on.strict) == (True, True, True)
    assert "best checkpoint: best.pt (validation acc 1.000" in capsys.readouterr().out


def test_jpeg_flags_and_their_old_names(tmp_path):
    parse = build_parser().parse_args
    new = parse(["train", "--jpeg-prob", "0.3", "--jpeg-method", "pil", "--jpeg-qual", "30", "100"])
    old = parse(["train", "--jpg-prob", "0.3", "--jpg-method", "pil", "--jpg-qual", "30", "100"])
    expected = (0.3, ["pil"], [30, 100])
    assert (new.jpeg_prob, new.jpeg_method, new.jpeg_qual) == expected
    assert (old.jpeg_prob, old.jpeg_method, old.jpeg_qual) == expected
    assert "--jpg-prob" not in commands(build_parser())["train"].format_help()
    with pytest.raises(SystemExit):
        parse(["train", "--jpg-method", "libjpeg"])
    # Presets and config.yaml files of older runs keep working with the old keys.
    (tmp_path / "old.yaml").write_text("jpg_prob: 0.5\njpg_qual: [30, 100]\njpg_method: [cv2]\n")
    cfg = build_config(str(tmp_path / "old.yaml"), {"jpeg_prob": None})
    assert (cfg.jpeg_prob, cfg.jpeg_qual, cfg.jpeg_method) == (0.5, [30, 100], ["cv2"])
    assert build_config(str(tmp_path / "old.yaml"), {"jpeg_prob": 0.1}).jpeg_prob == 0.1  # flags still win
    (tmp_path / "both.yaml").write_text("jpg_prob: 0.5\njpeg_prob: 0.2\n")
    with pytest.raises(ConfigError, match="both jpg_prob and jpeg_prob"):
        build_config(str(tmp_path / "both.yaml"))
    for preset in PRESET_DIR.glob("*.yaml"):  # the packaged presets use the new keys
        assert not set(yaml.safe_load(preset.read_text()) or {}) & set(RENAMED_KEYS), preset.name
    assert build_config("robust").jpeg_prob == 0.5


def test_config_values_outside_the_choices_are_one_sentence(tmp_path):
    (tmp_path / "bad.yaml").write_text("select_metric: loss\n")
    with pytest.raises(ConfigError, match="select_metric is 'loss'; choose from acc, auc, ap"):
        build_config(str(tmp_path / "bad.yaml"))
    with pytest.raises(ConfigError, match="jpeg_method"):
        TrainConfig(jpeg_method=["pil", "mozjpeg"])
    with pytest.raises(ConfigError, match="batch_size must be at least 1, not 0"):
        TrainConfig(batch_size=0)


def test_numbers_that_yaml_reads_as_text_are_read_as_numbers(tmp_path):
    # YAML 1.1 reads 3e-4 (no dot) as a string; Adam would fail on it with a traceback
    (tmp_path / "lr.yaml").write_text("lr: 3e-4\nepochs: '5'\n")
    cfg = build_config(str(tmp_path / "lr.yaml"))
    assert cfg.lr == 3e-4 and isinstance(cfg.lr, float) and cfg.epochs == 5
    (tmp_path / "bad.yaml").write_text("lr: fast\n")
    with pytest.raises(ConfigError, match="^Option lr must be a number, not 'fast'.$"):
        build_config(str(tmp_path / "bad.yaml"))


@pytest.mark.parametrize("command", sorted(WEIGHT_COMMANDS))
def test_commands_that_load_weights_take_arch_and_the_hidden_model_alias(command):
    parser = build_parser()
    base = [command, *WEIGHT_COMMANDS[command], "--weights", "w.pt"]
    assert parser.parse_args(base).arch is None
    assert parser.parse_args([*base, "--arch", "ssp"]).arch == "ssp"
    assert parser.parse_args([*base, "--model", "ssp-gn"]).arch == "ssp-gn"
    text = commands(parser)[command].format_help()
    assert "--arch" in text and "--model" not in text


def test_train_model_is_still_the_model_to_train():
    assert build_parser().parse_args(["train", "--model", "ssp-gn"]).model == "ssp-gn"
    assert "arch" not in vars(build_parser().parse_args(["train"]))


def test_predict_threads_and_workers_everywhere_else():
    parse = build_parser().parse_args
    assert parse(["predict", "x.png", "--weights", "w.pt"]).threads == 2
    assert parse(["predict", "x.png", "--weights", "w.pt", "--threads", "5"]).threads == 5
    assert parse(["predict", "x.png", "--weights", "w.pt", "--workers", "3"]).threads == 3  # the old name
    assert "--workers" not in commands(build_parser())["predict"].format_help()
    for command in ("test", "cross-eval", "robustness", "calibrate"):
        action = next(a for a in options_of(commands(build_parser())[command]) if a.dest == "workers")
        assert action.help.startswith("DataLoader worker processes")


def test_progress_is_one_switch_on_every_command_that_has_it():
    parsers = commands(build_parser())
    with_progress = {name for name, p in parsers.items() if any(a.dest == "progress" for a in options_of(p))}
    assert with_progress == {
        "train",
        "test",
        "eval",
        "cross-eval",
        "robustness",
        "calibrate",
        "data build-demo",
        "demo",
    }
    for name in with_progress:
        action = next(a for a in options_of(parsers[name]) if a.dest == "progress")
        assert action.option_strings == ["--progress", "--no-progress"]
        assert action.help == "Show progress bars (default on)."
    parse = build_parser().parse_args
    assert parse(["test", "--weights", "w"]).progress is True
    assert parse(["test", "--weights", "w", "--no-progress"]).progress is False
    assert parse(["train"]).progress is None  # unset: the preset or the default decides


def test_limits_and_counts_are_checked_by_the_parser(capsys):
    for argv in (
        ["serve", "--weights", "w", "--max-files", "0"],
        ["serve", "--weights", "w", "--max-upload-mb", "0"],
        ["test", "--weights", "w", "--workers", "-1"],
        ["test", "--weights", "w", "--batch-size", "0"],
        ["train", "--batch-size", "0"],
    ):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(argv)
        assert exc.value.code == 2
        assert "expected a " in capsys.readouterr().err


# ---------------------------------------------------------------- user errors and bugs


def test_a_user_error_is_one_line_with_exit_status_2(tmp_path, monkeypatch, capsys):
    assert main(["predict", str(tmp_path / "x.png"), "--weights", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssp predict: error: Weights file ") and err.count("\n") == 1 and "does not exist" in err
    import ssp_detect.models.registry

    def user_error():
        raise UsageError("Pick a model.")

    monkeypatch.setattr(ssp_detect.models.registry, "list_models", user_error)
    assert main(["models"]) == 2
    assert capsys.readouterr().err == "ssp models: error: Pick a model.\n"

    def missing(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "gone"))

    monkeypatch.setattr(ssp_detect.models.registry, "list_models", missing)
    assert main(["models"]) == 2
    assert capsys.readouterr().err == f"ssp models: error: No such file or directory: {tmp_path / 'gone'}\n"
    import ssp_detect.demo
    from ssp_detect.demo import DemoBuildError

    def no_photos(*args, **kwargs):
        raise DemoBuildError("No photos.")

    monkeypatch.setattr(ssp_detect.demo, "build_demo", no_photos)
    assert main(["data", "build-demo", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "ssp data build-demo: error: No photos.\n"


def test_an_unknown_model_is_a_sentence_and_still_a_key_error(tmp_path, capsys):
    from ssp_detect.models.registry import UnknownModelError, get_spec

    with pytest.raises(UnknownModelError) as exc:
        get_spec("nope")
    assert isinstance(exc.value, KeyError) and isinstance(exc.value, SSPError)
    assert str(exc.value).startswith("Unknown model 'nope'; known models: ")  # no KeyError quotes
    assert main(["train", "--data", str(tmp_path), "--model", "nope", "--out", str(tmp_path / "run")]) == 2
    assert "ssp train: error: Unknown model 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("bug", [ZeroDivisionError("division by zero"), ValueError("a plain one"), KeyError("key")])
def test_a_bug_keeps_its_traceback(monkeypatch, bug):
    import ssp_detect.models.registry

    def broken():
        raise bug

    monkeypatch.setattr(ssp_detect.models.registry, "list_models", broken)
    with pytest.raises(type(bug)):
        main(["models"])


def test_verbose_shows_the_traceback_of_a_user_error(tmp_path):
    from ssp_detect.models.checkpoint import CheckpointError

    with pytest.raises(CheckpointError):
        main(["-v", "predict", "x.png", "--weights", str(tmp_path / "missing.pt")])


def test_building_the_parser_loads_neither_the_engine_nor_scikit_learn():
    import subprocess
    import sys

    heavy = ("sklearn", "ssp_detect.engine.evaluate", "ssp_detect.engine.train")
    code = (
        "import sys; from ssp_detect.cli import build_parser; build_parser(); "
        f"print([m for m in {heavy} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
