"""Start-up: what each command imports, the torch.nn ResNet against torchvision's, loading without random
initialisation, and the CLI's constants against the library's.

Import checks run in a fresh interpreter (``sys.modules`` of this one holds everything the suite has
imported). Nothing here measures time: ``benchmarks/startup.py`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

import ssp_detect
from ssp_detect import constants
from ssp_detect.models import create_model, get_spec, list_models, load_model
from ssp_detect.models.backbone import build_resnet, resnet18, resnet50
from ssp_detect.models.checkpoint import save_checkpoint
from ssp_detect.models.registry import empty_model
from tests.helpers import noisy_image, write_image

# Modules that building the parser must not import: the libraries a command loads when it runs.
HELP_FORBIDDEN = ("torch", "numpy", "PIL", "numba", "cv2", "scipy", "sklearn", "matplotlib", "fastapi", "uvicorn")
# Modules that `ssp predict` must not import: torchvision.models (its package init pulls detection ops and
# torch._dynamo), the service stack, and what only training, reports or degradations need.
PREDICT_FORBIDDEN = (
    "torchvision",
    "torch._dynamo",
    "sympy",
    "fastapi",
    "uvicorn",
    "starlette",
    "sklearn",
    "matplotlib",
    "cv2",
    "scipy.ndimage",
    "ssp_detect.serve.app",  # the service; its package and limits record are light (ssp serve --help reads them)
    "ssp_detect.serve.service",
    "ssp_detect.engine.train",
    "ssp_detect.engine.metrics",
)


def run_fresh(code: str) -> str:
    """Run ``code`` in a new interpreter that imports this checkout's ssp_detect; its stdout."""
    src = str(Path(ssp_detect.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_every_help_builds_without_torch_or_numpy():
    code = f"""
import contextlib, io, json, sys
from ssp_detect.cli import build_parser, main
subcommands = build_parser()._subparsers._group_actions[0].choices
results = {{}}
for argv in [[]] + [[name] for name in subcommands] + [["data", "build-demo"]]:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            main([*argv, "--help"])
        except SystemExit as exit:
            assert exit.code == 0, argv
    assert "usage: ssp" in out.getvalue(), argv
    results[" ".join(argv) or "ssp"] = [m for m in {HELP_FORBIDDEN!r} if m in sys.modules]
print(json.dumps(results))
"""
    results = json.loads(run_fresh(code))
    assert {"ssp", "predict", "train", "test", "serve", "robustness", "data build-demo", "demo"} <= set(results)
    assert {command: loaded for command, loaded in results.items() if loaded} == {}


@pytest.fixture(scope="module")
def official_layout_checkpoint(tmp_path_factory) -> Path:
    """The paper's ``ssp`` with random weights, saved as the official release is: a plain state dict."""
    path = tmp_path_factory.mktemp("official") / "official.pth"
    torch.manual_seed(0)
    torch.save(create_model("ssp").state_dict(), path)
    return path


def test_predict_imports_only_what_scoring_needs(tmp_path, rng, official_layout_checkpoint):
    image = write_image(tmp_path / "one.png", noisy_image(rng, size=(96, 128)))
    code = f"""
import contextlib, io, json, sys
from ssp_detect.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    status = main(["predict", {str(image)!r}, "--weights", {str(official_layout_checkpoint)!r}, "--format", "json"])
print(json.dumps({{"status": status, "rows": json.loads(out.getvalue()),
                  "loaded": [m for m in {PREDICT_FORBIDDEN!r} if m in sys.modules]}}))
"""
    result = json.loads(run_fresh(code))
    assert result["status"] == 0 and result["loaded"] == []
    # It scored the image, with the same p_fake as the library gives in this process.
    (row,) = result["rows"] if isinstance(result["rows"], list) else [result["rows"]]
    from ssp_detect.detector import Detector

    expected = Detector.from_checkpoint(official_layout_checkpoint, device="cpu").predict(image).p_fake
    assert row["p_fake"] == pytest.approx(expected, abs=1e-6)


def test_training_and_evaluation_modules_load_torchvision_only_to_decode_on_the_device():
    code = """
import sys
import ssp_detect.engine.cross_eval, ssp_detect.engine.evaluate, ssp_detect.engine.robustness
import ssp_detect.engine.scoring, ssp_detect.engine.train
print(",".join(m for m in ("torchvision", "torch._dynamo", "fastapi") if m in sys.modules))
"""
    assert run_fresh(code).strip() == ""


# ---------------------------------------------------------------- the torch.nn ResNet against torchvision's


@pytest.mark.parametrize(("ours", "name"), [(resnet50, "resnet50"), (resnet18, "resnet18")])
def test_resnet_is_torchvisions_same_names_same_seeded_weights_same_outputs(ours, name):
    from torchvision import models

    torch.manual_seed(7)
    theirs = getattr(models, name)(weights=None).eval()
    torch.manual_seed(7)
    mine = ours().eval()
    a, b = theirs.state_dict(), mine.state_dict()
    assert list(a) == list(b)  # the same keys in the same order: torchvision checkpoints load as they are
    assert all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)  # the same seed, the same weights
    # Non-trivial BatchNorm statistics, shared, so that eval-mode differences would show.
    for m in theirs.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    mine.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(mine(x), theirs(x))


def test_paper_backbone_has_a_one_logit_head_and_the_variants_keep_their_shapes():
    net = build_resnet("resnet50")
    assert net.fc.weight.shape == (1, 2048) and net.layer4[2].conv3.weight.shape == (2048, 512, 1, 1)
    native = build_resnet("compact", norm="group", stem="native")
    assert native.conv1.kernel_size == (3, 3) and native.conv1.stride == (1, 1)
    assert isinstance(native.maxpool, torch.nn.Identity) and isinstance(native.bn1, torch.nn.GroupNorm)
    assert native.fc.weight.shape == (1, 256)


# ---------------------------------------------------------------- loading without random initialisation


@pytest.mark.parametrize("name", list_models())
def test_loading_puts_the_checkpoint_tensors_in_place_without_random_initialisation(tmp_path, name):
    torch.manual_seed(3)
    net = create_model(name).eval()
    save_checkpoint(tmp_path / "c.pt", {"model": name, "state_dict": net.state_dict()})
    # The empty model holds no storage but the SRM filter's 225 fixed numbers.
    assert {k for k, t in empty_model(name).state_dict().items() if not t.is_meta} <= {"srm.kernel"}
    rng_before = torch.get_rng_state()
    loaded = load_model(tmp_path / "c.pt")
    assert torch.equal(torch.get_rng_state(), rng_before)  # nothing was drawn at random
    params = dict(loaded.model.named_parameters())
    assert all(not t.is_meta and t.device.type == "cpu" for t in loaded.model.state_dict().values())
    # Trainable as a fresh model is (fine-tuning, calibration): the same parameters, the same requires_grad.
    assert {k: p.requires_grad for k, p in net.named_parameters()} == {k: p.requires_grad for k, p in params.items()}
    assert all(isinstance(p, torch.nn.Parameter) for p in params.values())
    spec = get_spec(name)
    size = spec.patch_size if spec.input == "patch" else spec.image_size
    x = torch.randint(0, 256, (2, 3, size, size)).float()
    with torch.no_grad():
        assert torch.equal(loaded.model(x), net(x))


class _WithTable(torch.nn.Module):
    """A model with a tensor outside its state dict (a non-persistent buffer)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, 1)
        self.register_buffer("table", torch.arange(3.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x + self.table).squeeze(1)


@pytest.fixture
def model_with_a_non_persistent_buffer():
    from ssp_detect.models import registry

    spec = registry.register_model(registry.ModelSpec(name="test-non-persistent", builder=_WithTable))
    yield spec.name
    del registry._REGISTRY[spec.name]


def test_a_tensor_outside_the_state_dict_is_built_the_usual_way(tmp_path, caplog, model_with_a_non_persistent_buffer):
    name = model_with_a_non_persistent_buffer
    net = create_model(name)
    save_checkpoint(tmp_path / "c.pt", {"model": name, "state_dict": net.state_dict()})
    assert empty_model(name).table.is_meta
    with caplog.at_level("DEBUG", logger="ssp_detect.models.loading"):
        loaded = load_model(tmp_path / "c.pt").model
    assert "keeps tensors outside its state dict" in caplog.text
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    assert torch.equal(loaded.table, torch.arange(3.0)) and torch.equal(loaded.head.weight, net.head.weight)


def test_loading_casts_to_the_model_dtype_as_a_copy_would(tmp_path):
    torch.manual_seed(4)
    net = create_model("ssp-lite").eval()
    half = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    save_checkpoint(tmp_path / "half.pt", {"model": "ssp-lite", "state_dict": half})
    loaded = load_model(tmp_path / "half.pt").model
    assert {t.dtype for t in loaded.parameters()} == {torch.float32}
    assert all(t.is_contiguous() for t in loaded.parameters())


def test_a_wrong_shape_is_still_refused_in_one_sentence(tmp_path):
    from ssp_detect.models import CheckpointError

    state = create_model("ssp-lite").state_dict()
    state["disc.fc.weight"] = torch.zeros(1, 7)
    save_checkpoint(tmp_path / "bad.pt", {"model": "ssp-lite", "state_dict": state})
    with pytest.raises(CheckpointError, match="does not fit model 'ssp-lite': tensor shapes differ"):
        load_model(tmp_path / "bad.pt")


# ---------------------------------------------------------------- the CLI's constants are the library's


def test_cli_constants_are_the_library_constants():
    from ssp_detect.data import degradations, layouts, patch
    from ssp_detect.demo.build import SIZE_PRESETS
    from ssp_detect.engine import cross_eval, robustness, runtime
    from ssp_detect.serve.limits import ServeLimits

    assert patch.MODES is constants.MODES and layouts.LAYOUTS is constants.LAYOUTS
    assert runtime.PRECISIONS is constants.PRECISIONS and runtime.DECODERS is constants.DECODERS
    assert cross_eval.CROSS_EVAL_METRICS is constants.CROSS_EVAL_METRICS
    assert degradations.JPEG_METHODS is constants.JPEG_METHODS
    assert typing.get_args(degradations.JpegMethod) == constants.JPEG_METHODS
    assert tuple(degradations.INTERPOLATIONS) == constants.INTERPOLATION_NAMES
    assert typing.get_args(degradations.Interpolation) == constants.INTERPOLATION_NAMES
    assert [(s.name, s.title, s.kind, s.values) for s in robustness.SWEEPS.values()] == list(constants.SWEEP_TABLE)
    assert set(constants.DEMO_SIZES) <= set(SIZE_PRESETS)
    from ssp_detect.cli import build_parser
    from ssp_detect.data import decode
    from ssp_detect.engine import backend

    assert backend.BACKENDS is constants.BACKENDS and runtime.BACKENDS is constants.BACKENDS
    assert decode.DEFAULT_MAX_PIXELS is constants.DEFAULT_MAX_PIXELS
    # ssp serve's defaults are the limits record's own (read from it, so nothing to keep in step).
    serve_args = build_parser().parse_args(["serve", "--weights", "w.pt"])
    limits = ServeLimits()
    assert (serve_args.max_pixels, serve_args.max_files, serve_args.max_batch) == (
        limits.max_pixels,
        limits.max_files,
        limits.max_batch,
    )
    assert {f.name for f in fields(ServeLimits)} >= {"max_upload_bytes", "max_pixels", "max_files", "max_batch"}


def test_detector_is_still_importable_from_the_package():
    from ssp_detect import Detection, Detector

    assert Detector.__module__ == "ssp_detect.detector" and Detection.__name__ == "Detection"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ssp_detect.nope  # noqa: B018
    assert np.isfinite(constants.DEFAULT_UNCERTAIN_BAND)
