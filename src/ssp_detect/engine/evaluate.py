"""Scoring a dataset and summarising it per subset, as the mean over subsets and pooled."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from ssp_detect.data.dataset import DetectionDataset, collate, make_loader
from ssp_detect.data.decode import DEFAULT_MAX_PIXELS
from ssp_detect.data.degradations import Degradation
from ssp_detect.data.device_decode import DeviceDecodedBatches, EncodedImageDataset, collate_encoded
from ssp_detect.data.layouts import Sample
from ssp_detect.data.preprocess import NO_TEXTURE_LEVEL, PatchOptions, Preprocessor
from ssp_detect.engine import distributed
from ssp_detect.engine.backend import Backend, TorchBackend, resolve_backend
from ssp_detect.engine.metrics import (
    METRIC_NAMES,
    TRUST_METRIC_NAMES,
    auc_interval,
    binary_metrics,
    selective_metrics,
    trust_metrics,
)
from ssp_detect.engine.runtime import DECODERS, model_input, resolve_precision
from ssp_detect.errors import UsageError
from ssp_detect.models.loading import LoadedModel
from ssp_detect.verdict import DEFAULT_UNCERTAIN_BAND, check_finite

SELECTIVE_NAMES = ("coverage", "n_uncertain", "decided_acc", "decided_real_acc", "decided_fake_acc")

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    """Scores of a dataset, aligned by dataset ``index``; ``errors`` lists (index, message) of
    images that could not be read."""

    index: np.ndarray
    label: np.ndarray
    p_fake: np.ndarray
    box: np.ndarray
    score: np.ndarray
    logit: np.ndarray = field(default_factory=lambda: np.zeros(0))
    texture: np.ndarray | None = None
    upscaled: np.ndarray | None = None
    truncated: np.ndarray | None = None
    errors: list[tuple[int, str]] = field(default_factory=list)


def make_eval_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    workers: int,
    pin_memory: bool,
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]] = collate,
) -> DataLoader:
    """An in-order loader; under DDP each rank takes a share (padded, de-duplicated on gather)."""
    sampler = DistributedSampler(dataset, shuffle=False) if distributed.is_distributed() else None
    return make_loader(
        dataset, batch_size=batch_size, workers=workers, sampler=sampler, pin_memory=pin_memory, collate_fn=collate_fn
    )


@torch.inference_mode()
def predict_loader(
    model: nn.Module | Backend,
    loader: Iterable[dict[str, Any]],
    *,
    device: torch.device,
    mean: Sequence[float],
    std: Sequence[float],
    precision: str = "fp32",
    progress: bool = True,
    desc: str = "eval",
    temperature: float = 1.0,
) -> Predictions:
    """Run ``model`` over batches as :func:`~ssp_detect.data.dataset.collate` makes them (a loader
    built on :class:`DetectionDataset`, or :class:`DeviceDecodedBatches`); gathered over ranks under DDP.

    ``model`` is an ``nn.Module``, run by PyTorch in ``precision`` (put in eval mode for the loop and
    back after), or a backend from :func:`~ssp_detect.engine.backend.resolve_backend` (ONNX Runtime).

    Every rank returns the same, complete, de-duplicated predictions sorted by index. p_fake is
    ``sigmoid(logit / temperature)`` (a calibrated checkpoint's temperature; 1 is the raw output).
    """
    backend = TorchBackend(model, device, precision) if isinstance(model, nn.Module) else model
    module = backend.model if isinstance(backend, TorchBackend) else None
    was_training = module is not None and module.training
    if module is not None:
        module.eval()
    parts: dict[str, list[Any]] = {k: [] for k in ("index", "label", "p_fake", "box", "score", "logit")}
    errors: list[tuple[int, str]] = []
    for batch in tqdm(loader, desc=desc, disable=not progress or not distributed.is_main(), leave=False, unit="batch"):
        errors += batch["errors"]
        if batch["pixels"] is None:
            continue
        logits = backend(model_input(batch["pixels"], device, mean, std))
        parts["logit"].append(logits.float().cpu().numpy())
        parts["p_fake"].append(torch.sigmoid(logits.float() / temperature).cpu().numpy())
        for key in ("index", "label", "box", "score", "texture", "upscaled", "truncated"):
            if key in batch:
                parts.setdefault(key, []).append(batch[key].numpy())
    if module is not None:
        module.train(was_training)
    arrays = {
        "index": np.concatenate(parts["index"]) if parts["index"] else np.zeros(0, dtype=np.int64),
        "label": np.concatenate(parts["label"]).astype(np.int64) if parts["label"] else np.zeros(0, dtype=np.int64),
        "p_fake": np.concatenate(parts["p_fake"]).astype(np.float64) if parts["p_fake"] else np.zeros(0),
        "box": np.concatenate(parts["box"]) if parts["box"] else np.zeros((0, 4), dtype=np.int64),
        "score": np.concatenate(parts["score"]) if parts["score"] else np.zeros(0, dtype=np.int64),
        "logit": np.concatenate(parts["logit"]).astype(np.float64) if parts["logit"] else np.zeros(0),
    }
    for key in ("texture", "upscaled", "truncated"):
        if parts.get(key):
            arrays[key] = np.concatenate(parts[key])
    arrays, errors = distributed.gather_predictions(arrays, errors)
    order = np.argsort(arrays["index"], kind="stable")
    return Predictions(**{k: v[order] for k, v in arrays.items()}, errors=sorted(errors))


def uncertain_mask(preds: Predictions, threshold: float, band: float) -> np.ndarray:
    """Which images get the verdict ``uncertain`` (see :mod:`ssp_detect.verdict`): a region without
    texture, an upscaled or truncated image, or p_fake within ``band`` of ``threshold``."""
    uncertain = np.abs(preds.p_fake - threshold) < band
    if preds.texture is not None:
        uncertain |= (preds.texture < NO_TEXTURE_LEVEL) | preds.upscaled.astype(bool)
    if preds.truncated is not None:
        uncertain |= preds.truncated.astype(bool)
    return uncertain


def selective_summary(
    labels: np.ndarray, p_fake: np.ndarray, uncertain: np.ndarray, threshold: float
) -> dict[str, float]:
    """Coverage (share of images decided) and the accuracies on the decided images."""
    s = selective_metrics(labels, p_fake, ~uncertain, threshold)
    return {
        "coverage": s["coverage"],
        "n_uncertain": s["n_uncertain"],
        "decided_acc": s["acc"],
        "decided_real_acc": s["real_acc"],
        "decided_fake_acc": s["fake_acc"],
    }


def summarize(
    samples: Sequence[Sample],
    preds: Predictions,
    threshold: float = 0.5,
    *,
    bootstrap: int = 0,
    band: float | None = None,
) -> dict[str, Any]:
    """Per-subset metrics, their mean over subsets, and the pooled metrics over all images.

    Each block of metrics holds :data:`~ssp_detect.engine.metrics.METRIC_NAMES` (``real_acc`` and
    ``fake_acc`` at ``threshold``, AUC, ...) and
    :data:`~ssp_detect.engine.metrics.TRUST_METRIC_NAMES`: ``tpr@fpr1``, ``tpr@fpr5`` and
    ``tpr@fpr10`` (the share of fakes caught at a false-positive rate of at most 1%, 5%, 10%) and
    ``ece`` (expected calibration error of p_fake, 15 bins).

    Args:
        bootstrap: Resamples for a 95% interval of each AUC (``auc_low``, ``auc_high``); 0 for
            none. Images made from one source photo (``Sample.source``, from a data manifest) are
            resampled together; see :func:`~ssp_detect.engine.metrics.auc_interval`.
        band: The uncertainty band of the verdicts; when given, each block also holds the
            ``coverage`` (share of images given a real/fake verdict rather than ``uncertain``),
            ``n_uncertain`` and the accuracies on the decided images (``decided_acc``,
            ``decided_real_acc``, ``decided_fake_acc``). AUC and the rest stay on every image.

    Returns:
        ``{"subsets": {name: metrics}, "mean_over_subsets": metrics, "pooled": metrics,
        "threshold": t, "n_images": n, "n_unreadable": k, "unreadable": [{"path", "error"}]}``,
        and ``"auc_interval": {"resamples", "level", "resampled"}`` with ``bootstrap``.
    """
    subset_of = np.array([samples[i].subset for i in preds.index]) if len(preds.index) else np.array([], dtype=str)
    groups = np.array([samples[i].group for i in preds.index], dtype=object) if bootstrap else None
    uncertain = None if band is None else uncertain_mask(preds, threshold, band)

    def metrics(m: np.ndarray) -> dict[str, float]:
        labels, p_fake = preds.label[m], preds.p_fake[m]
        out = binary_metrics(labels, p_fake, threshold) | trust_metrics(labels, p_fake)
        if uncertain is not None:
            out |= selective_summary(labels, p_fake, uncertain[m], threshold)
        if bootstrap:
            out["auc_low"], out["auc_high"] = auc_interval(labels, p_fake, groups[m], resamples=bootstrap)
        return out

    names = sorted({s.subset for s in samples})
    subsets = {name: metrics(subset_of == name) for name in names if (subset_of == name).any()}

    def mean_over_subsets(key: str) -> float:
        values = [v[key] for v in subsets.values()]
        return math.nan if all(math.isnan(v) for v in values) else float(np.nanmean(values))

    mean = {
        k: mean_over_subsets(k)
        for k in METRIC_NAMES + TRUST_METRIC_NAMES + (SELECTIVE_NAMES if band is not None else ())
    }
    mean["n_real"] = int(sum(v["n_real"] for v in subsets.values()))
    mean["n_fake"] = int(sum(v["n_fake"] for v in subsets.values()))
    summary = {
        "subsets": subsets,
        "mean_over_subsets": mean,
        "pooled": metrics(np.ones(len(preds.index), dtype=bool)),
        "threshold": threshold,
        "n_images": len(samples),
        "n_unreadable": len(preds.errors),
        "unreadable": [{"path": samples[i].path, "error": msg} for i, msg in preds.errors],
    }
    if bootstrap:
        by_source = any(samples[i].source for i in preds.index)
        summary["auc_interval"] = {
            "resamples": bootstrap,
            "level": 0.95,
            "resampled": "source photos" if by_source else "images",
        }
    return summary


def evaluate_model(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    *,
    device: torch.device,
    precision: str,
    batch_size: int = 64,
    workers: int = 0,
    patch: PatchOptions = PatchOptions(),
    threshold: float | None = None,
    progress: bool = True,
    desc: str = "test",
    degradation: Degradation | None = None,
    decode: str = "workers",
    bootstrap: int = 0,
    uncertain_band: float = DEFAULT_UNCERTAIN_BAND,
    allow_truncated: bool = False,
    backend: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[dict[str, Any], Predictions]:
    """Score ``samples`` with a loaded model and summarise them (see :func:`summarize`, which also
    explains ``bootstrap`` and the coverage of verdicts within ``uncertain_band``).

    ``patch`` overrides the checkpoint's patch settings where set. ``degradation`` is applied to
    every image (real and fake alike) before patch selection. ``decode`` says where images are
    decoded and patches chosen: ``workers`` (PIL and numpy in the DataLoader workers) or ``device``
    (JPEGs by torchvision on ``device``, nvJPEG on CUDA, and the patches chosen there in one batch;
    see :mod:`ssp_detect.data.device_decode`), for patch models without a degradation. Images of more
    than ``max_pixels`` pixels are unreadable (refused from their header). ``backend`` runs the model
    (``auto``, ``torch`` or ``onnxruntime``; see :mod:`ssp_detect.engine.backend`). ``precision``
    ``auto`` is resolved here, per model: fp32 for official weights everywhere, bf16 on CUDA otherwise
    (:func:`~ssp_detect.engine.runtime.resolve_precision`).
    """
    precision = resolve_precision(precision, device, official=loaded.source == "official")
    preprocessor = Preprocessor.for_model(loaded.feed, patch)
    pin_memory = device.type == "cuda"
    batches: Iterable[dict[str, Any]]
    if decode == "workers":
        dataset = DetectionDataset(
            samples,
            preprocessor,
            degradation=degradation,
            seed=patch.seed,
            input_checks=True,
            allow_truncated=allow_truncated,
            max_pixels=max_pixels,
        )
        batches = make_eval_loader(dataset, batch_size=batch_size, workers=workers, pin_memory=pin_memory)
    elif decode == "device":
        if degradation is not None and not degradation.is_identity:
            raise UsageError(
                "Degradations are applied to decoded images on the CPU, so they cannot be combined "
                "with device decoding; use --decode workers."
            )
        loader = make_eval_loader(
            EncodedImageDataset(samples, max_pixels=max_pixels),
            batch_size=batch_size,
            workers=workers,
            pin_memory=pin_memory,
            collate_fn=collate_encoded,
        )
        batches = DeviceDecodedBatches(loader, preprocessor, device)
    else:
        raise UsageError(f"Unknown decoding {decode!r}; choose one of {', '.join(DECODERS)}.")
    runner = resolve_backend(
        backend,
        loaded,
        device=device,
        precision=precision,
        input_size=preprocessor.size,
    )
    preds = predict_loader(
        runner,
        batches,
        device=device,
        mean=loaded.feed.mean,
        std=loaded.feed.std,
        precision=precision,
        progress=progress,
        desc=desc,
        temperature=loaded.temperature,
    )
    check_finite(preds.p_fake, f"checkpoint {loaded.sha256[:12]} ({loaded.name})")
    summary = summarize(
        samples, preds, loaded.threshold if threshold is None else threshold, bootstrap=bootstrap, band=uncertain_band
    )
    return summary, preds
