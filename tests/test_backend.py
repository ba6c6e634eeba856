"""Backend selection (auto, torch, onnxruntime), the export cache, and the backends giving the same
p_fake through the detector, the evaluation loop and the command line."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from ssp_detect.cli import build_parser, main
from ssp_detect.data.layouts import load_samples
from ssp_detect.data.preprocess import InputSpec, PatchOptions
from ssp_detect.detector import Detector
from ssp_detect.engine import backend as backend_module
from ssp_detect.engine.backend import OnnxRuntimeBackend, TorchBackend, resolve_backend
from ssp_detect.engine.evaluate import evaluate_model
from ssp_detect.engine.runtime import resolve_precision
from ssp_detect.errors import UsageError
from ssp_detect.models import export as export_module
from ssp_detect.models import load_model
from ssp_detect.models import registry as registry_module
from ssp_detect.models.export import ExportError, cached_onnx_path
from ssp_detect.models.registry import ModelSpec
from tests.helpers import Counting, make_genimage_tree, noisy_image, trained_like_checkpoint

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cooc(tmp_path_factory):
    """A loaded ssp-cooc checkpoint with a random head."""
    return load_model(trained_like_checkpoint(tmp_path_factory.mktemp("cooc") / "cooc.pt", "ssp-cooc"))


def resolve(loaded, name="auto", **kw):
    return resolve_backend(name, loaded, **({"device": CPU, "precision": "fp32"} | kw))


def test_auto_picks_onnxruntime_on_the_cpu_in_fp32_and_torch_otherwise(cooc, monkeypatch):
    assert isinstance(resolve(cooc), OnnxRuntimeBackend)
    assert isinstance(resolve(cooc, precision="bf16"), TorchBackend)
    assert isinstance(resolve(cooc, input_size=48), TorchBackend)  # --patch-size other than the checkpoint's
    assert isinstance(resolve(cooc, "torch"), TorchBackend)
    monkeypatch.setattr(backend_module, "onnxruntime_available", lambda: False)
    assert isinstance(resolve(cooc), TorchBackend)


def test_auto_keeps_pytorch_for_a_model_it_scores_faster(tmp_path):
    strata = load_model(trained_like_checkpoint(tmp_path / "strata.pt", "ssp-strata"))
    assert isinstance(resolve(strata), TorchBackend)  # ssp-strata: onnxruntime_when_auto=False (measured)
    assert isinstance(resolve(strata, "onnxruntime"), OnnxRuntimeBackend)  # asked for by name, it is given


def test_onnxruntime_where_it_cannot_run_is_refused_in_one_sentence(cooc, monkeypatch):
    with pytest.raises(UsageError, match=r"^--backend onnxruntime cannot run here: the graph is float32.*bf16"):
        resolve(cooc, "onnxruntime", precision="bf16")
    with pytest.raises(UsageError, match=r"the graph takes the checkpoint's input size 32, and the inputs are 48"):
        resolve(cooc, "onnxruntime", input_size=48)
    with pytest.raises(UsageError, match=r"runs on the CPU only, and the device is cuda"):
        resolve(cooc, "onnxruntime", device=torch.device("cuda"))
    with pytest.raises(UsageError, match=r"Unknown backend 'tensorrt'; choose one of auto, torch, onnxruntime\."):
        resolve(cooc, "tensorrt")
    monkeypatch.setattr(backend_module, "onnxruntime_available", lambda: False)
    with pytest.raises(UsageError, match=r"pip install onnxruntime onnx"):
        resolve(cooc, "onnxruntime")


def test_a_model_that_does_not_export_runs_on_torch_under_auto_and_is_refused_under_onnxruntime(
    tmp_path, monkeypatch, caplog
):
    feed = InputSpec(mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))
    monkeypatch.setitem(registry_module._REGISTRY, "counting", ModelSpec("counting", Counting, feed))
    loaded = load_model(trained_like_checkpoint(tmp_path / "c.pt", "counting"))
    with caplog.at_level(logging.INFO, logger="ssp_detect.engine.backend"):
        assert isinstance(resolve(loaded), TorchBackend)
    assert "does not export to ONNX" in caplog.text
    with pytest.raises(
        ExportError, match=r"^Model 'counting' does not export to ONNX \(.*\); score it with --backend torch, or export"
    ):
        resolve(loaded, "onnxruntime")
    assert not cached_onnx_path(loaded).exists()


def test_the_export_is_cached_by_sha256_and_made_again_only_when_stale(tmp_path, monkeypatch, onnx_cache):
    loaded = load_model(trained_like_checkpoint(tmp_path / "m.pt", "ssp-cooc", seed=5))
    path = cached_onnx_path(loaded)
    assert path == onnx_cache / "onnx" / f"{loaded.sha256}.onnx" and not path.exists()
    calls = []
    real_export = export_module.onnx_bytes
    monkeypatch.setattr(export_module, "onnx_bytes", lambda lm: calls.append(lm.name) or real_export(lm))
    resolve(loaded, "onnxruntime")
    resolve(loaded, "onnxruntime")
    assert path.is_file() and calls == ["ssp-cooc"]  # exported once, then read from the cache
    path.write_bytes(b"not an onnx graph")  # a damaged entry is exported again
    x = torch.rand(2, 3, 32, 32) * 255
    assert torch.allclose(resolve(loaded, "onnxruntime")(x), loaded.model(x), atol=1e-5)
    assert calls == ["ssp-cooc", "ssp-cooc"]
    other = load_model(trained_like_checkpoint(tmp_path / "o.pt", "ssp-cooc", seed=6))
    resolve(other, "onnxruntime")
    path.write_bytes(cached_onnx_path(other).read_bytes())  # another checkpoint's graph under this hash: stale
    assert torch.allclose(resolve(loaded, "onnxruntime")(x), loaded.model(x), atol=1e-5)
    assert calls == ["ssp-cooc"] * 4
    assert not list(path.parent.glob("*.tmp"))


def test_detector_gives_the_same_verdicts_with_either_backend(cooc, rng):
    images = [noisy_image(rng, (70 + 9 * k, 90), noise=float(k % 4) * 5) for k in range(8)]
    fast = Detector(cooc, device="cpu")
    slow = Detector(cooc, device="cpu", backend="torch")
    assert fast.info["backend"] == "onnxruntime" and slow.info["backend"] == "torch"
    a, b = fast.predict(images), slow.predict(images)
    assert np.abs(np.array([d.p_fake for d in a]) - np.array([d.p_fake for d in b])).max() <= 1e-4
    assert np.ptp([d.p_fake for d in b]) > 1e-3


def test_evaluation_gives_the_same_scores_with_either_backend(tmp_path, cooc):
    samples = load_samples(str(make_genimage_tree(tmp_path / "tree", n=4)), split="val")
    common = {"device": CPU, "precision": "fp32", "progress": False, "patch": PatchOptions()}
    _, onnx_preds = evaluate_model(cooc, samples, backend="onnxruntime", **common)
    _, torch_preds = evaluate_model(cooc, samples, backend="torch", **common)
    assert (onnx_preds.index == torch_preds.index).all() and len(onnx_preds.index) == len(samples)
    assert np.abs(onnx_preds.p_fake - torch_preds.p_fake).max() <= 1e-4


def test_precision_auto_is_fp32_for_official_weights_everywhere():
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("auto", torch.device("cuda"), official=True) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("bf16", CPU, official=True) == "bf16"  # asked for: allowed


def test_every_scoring_command_takes_backend_and_explain_does_not():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for command in ("predict", "test", "eval", "cross-eval", "robustness", "calibrate", "serve"):
        option = next(a for a in sub[command]._actions if a.dest == "backend")
        assert option.default == "auto" and tuple(option.choices) == ("auto", "torch", "onnxruntime")
    assert not any(a.dest == "backend" for a in sub["explain"]._actions)


def test_predict_with_an_unusable_backend_is_one_sentence(tmp_path, capsys, rng):
    from tests.helpers import write_image

    ckpt = trained_like_checkpoint(tmp_path / "m.pt", "ssp-cooc")
    image = write_image(tmp_path / "a.png", noisy_image(rng))
    code = main(["predict", str(image), "--weights", ckpt, "--backend", "onnxruntime", "--precision", "bf16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("ssp predict: error: --backend onnxruntime cannot run here")


def test_a_module_swapped_in_after_loading_never_runs_the_files_cached_graph(cooc, rng):
    import dataclasses

    from ssp_detect.models.cooccurrence import CooccurrenceSSP

    resolve(cooc, "onnxruntime")  # the file's graph is cached
    other = CooccurrenceSSP()
    with torch.no_grad():
        other.head.weight.normal_(0, 0.5)
    swapped = dataclasses.replace(cooc, model=other)  # same sha256, another module
    x = torch.rand(3, 3, 32, 32) * 255
    assert torch.allclose(resolve(swapped, "onnxruntime")(x), other(x), atol=1e-5)
    assert torch.allclose(resolve(cooc, "onnxruntime")(x), cooc.model(x), atol=1e-5)


def test_a_module_with_numpy_in_forward_runs_on_torch_under_auto(cooc):
    import dataclasses

    class NumpyNet(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([float(np.std(p.numpy())) for p in x])  # traced as a constant

    swapped = dataclasses.replace(cooc, model=NumpyNet())
    assert isinstance(resolve(swapped), TorchBackend)
    with pytest.raises(ExportError, match=r"the traced graph does not read its input"):
        resolve(swapped, "onnxruntime")


def test_evaluation_resolves_auto_precision_per_model_and_keeps_official_weights_in_fp32(cooc, monkeypatch):
    """``ssp test --precision auto`` on CUDA: bf16 for our checkpoints, fp32 for the paper's release."""
    from dataclasses import replace

    from ssp_detect.engine import evaluate as evaluate_module

    class Chosen(Exception):
        pass

    def capture(name, loaded, *, device, precision, input_size):
        raise Chosen(precision)

    monkeypatch.setattr(evaluate_module, "resolve_backend", capture)
    cuda = torch.device("cuda")  # never touched: the backend is chosen before any batch
    for source, expected in (("official", "fp32"), ("ssp-detect", "bf16")):
        with pytest.raises(Chosen, match=f"^{expected}$"):
            evaluate_model(replace(cooc, source=source), [], device=cuda, precision="auto", progress=False)
    with pytest.raises(Chosen, match="^bf16$"):  # asked for by name, it is given
        evaluate_model(replace(cooc, source="official"), [], device=cuda, precision="bf16", progress=False)
