"""The training loop: the official SSP recipe by default, reproducible and resumable.

Data flow per step: files -> (augment) -> simple patch (random mode, as the official code) -> uint8
batch -> normalised on the device -> model -> BCE with logits against fake = 1. A model with a
``training_loss`` method (ESSP) is called with ``all_outputs=True`` and computes its own loss from
its outputs and the batch's restoration targets (``clean_pixels``, ``degradation``), weighted by
the config's ``perception_weight`` and ``restoration_weight``; its parts go to ``metrics.jsonl``.

Validation runs every epoch on data that is *not* the test set: by default a fixed holdout of the
training images (GenImage's ``val`` folders are the test set). The best checkpoint is chosen on
that validation data, never on the test set.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from ssp_detect.config import TrainConfig, save_config
from ssp_detect.data.dataset import DetectionDataset, make_loader
from ssp_detect.data.degradations import TrainAugment, format_match_probabilities
from ssp_detect.data.jpeg_quality import DEFAULT_SUBSAMPLING
from ssp_detect.data.layouts import Sample, has_jpeg_history, load_samples
from ssp_detect.data.preprocess import PatchOptions, Preprocessor, normalize
from ssp_detect.engine import distributed
from ssp_detect.engine.calibrate import CalibrationError, calibrate
from ssp_detect.engine.evaluate import make_eval_loader, predict_loader, summarize
from ssp_detect.engine.runtime import (
    autocast,
    default_workers,
    model_input,
    place_model,
    resolve_device,
    resolve_precision,
)
from ssp_detect.errors import SSPError
from ssp_detect.models.checkpoint import read_checkpoint_file, save_checkpoint
from ssp_detect.models.registry import create_model, get_spec
from ssp_detect.outputs import ensure_writable_folder, writing

log = logging.getLogger(__name__)


class TrainError(SSPError, ValueError):
    """A training set-up that cannot run; the message says what to change."""


def poly_lr(base_lr: float, epoch: int, epochs: int, power: float) -> float:
    """The official poly schedule, epochs counted from 1: ``base * (1 - epoch / epochs) ** power``.

    The first epoch already runs decayed and the last runs at 0, as in the official code.
    """
    return base_lr * (1 - epoch / epochs) ** power


def collection_of(sample: Sample) -> str:
    """The sample's collection (:attr:`~ssp_detect.data.layouts.Sample.collection`); a sample without
    one cannot be grouped by it."""
    if sample.collection is None:
        raise TrainError(
            f"{sample.path} has no recorded collection; grouping by collection needs a data manifest that records "
            "each image's source package (as ssp data build-demo writes); use --crossfit-by photo."
        )
    return sample.collection


def sample_group(sample: Sample) -> str:
    """What a holdout or a cross-fitting fold keeps whole: the source photo where a data manifest
    records it (every crop of one photo, and the fakes made from them), else the file name without
    its folder (files of the same name, as a content-matched real/fake pair). Otherwise a model that
    memorises a scene as "real" would be validated on its fake twin or on another crop of it, and a
    threshold chosen there would promise a false-positive rate that photos never seen do not keep."""
    return sample.source or Path(sample.path).name


def _shuffled_groups(samples: Sequence[Sample], seed: int, group: Callable[[Sample], str] = sample_group) -> list[str]:
    """The samples' groups in the order of a seeded hash: stable across runs and machines,
    independent of the order of files."""
    return sorted({group(s) for s in samples}, key=lambda g: (zlib.crc32(f"{seed}:{g}".encode()), g))


def group_folds(
    samples: Sequence[Sample], folds: int, seed: int, group: Callable[[Sample], str] = sample_group
) -> list[list[Sample]]:
    """Split samples into ``folds`` parts, whole groups (by default :func:`sample_group`; or
    :func:`collection_of`) dealt round-robin in a seeded order."""
    groups = _shuffled_groups(samples, seed, group)
    fold_of = {g: i % folds for i, g in enumerate(groups)}
    return [[s for s in samples if fold_of[group(s)] == k] for k in range(folds)]


def holdout_split(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split samples into (train, holdout), whole groups (:func:`sample_group`) held out in a seeded
    order."""
    groups = _shuffled_groups(samples, seed)
    held_groups = set(groups[: max(1, round(fraction * len(groups)))])
    is_held = [sample_group(s) in held_groups for s in samples]
    train = [s for s, h in zip(samples, is_held, strict=True) if not h]
    held = [s for s, h in zip(samples, is_held, strict=True) if h]
    return train, held


def load_train_val(cfg: TrainConfig) -> tuple[list[Sample], list[Sample], str]:
    """Training and validation samples, and a sentence saying what the validation data is."""
    train = load_samples(
        cfg.data, layout=cfg.layout, split=cfg.train_split, subsets=cfg.subsets, real=cfg.real, fake=cfg.fake
    )
    if cfg.val_split == "holdout":
        if not 0 < cfg.val_fraction < 1:
            raise TrainError(f"--val-fraction must be between 0 and 1, not {cfg.val_fraction}.")
        train, val = holdout_split(train, cfg.val_fraction, cfg.seed)
        what = f"a fixed {cfg.val_fraction:.0%} holdout of the training images ({len(val)} images; not the test set)"
    else:
        val = load_samples(
            cfg.val_data or cfg.data,
            layout=cfg.layout,
            split=cfg.val_split,
            subsets=cfg.val_subsets or cfg.subsets,
            real=cfg.val_real,
            fake=cfg.val_fake,
        )
        where = cfg.val_data or cfg.data or cfg.val_real
        what = f"split '{cfg.val_split}' of {where} ({len(val)} images; make sure it is not your test set)"
    for name, part in (("training", train), ("validation", val)):
        labels = {s.label for s in part}
        if labels != {0, 1}:
            has = "only real" if labels == {0} else "only fake" if labels == {1} else "none"
            raise TrainError(f"The {name} data needs both real and fake images; it has {has}.")
    return train, val, what


def jpeg_histories(samples: Sequence[Sample], limit: int = 200) -> list[tuple[int, str]]:
    """(quality, chroma subsampling) of up to ``limit`` images with a JPEG history: recorded in the
    data manifest, else read from the file's JPEG tables (default [(90, "4:2:0")] if none)."""
    from ssp_detect.data.jpeg_quality import estimate_jpeg_history

    found = []
    for s in [s for s in samples if has_jpeg_history(s)][:limit]:
        history = (
            (s.jpeg_quality, s.jpeg_subsampling or DEFAULT_SUBSAMPLING)
            if s.jpeg_quality is not None
            else estimate_jpeg_history(s.path)
        )
        if history is not None:
            found.append(history)
    return found or [(90, DEFAULT_SUBSAMPLING)]


def make_augment(cfg: TrainConfig, train: Sequence[Sample]) -> TrainAugment:
    """The training augmentation of a config, with format matching resolved on the data."""
    probs = (0.0, 0.0)
    histories = [(q, DEFAULT_SUBSAMPLING) for q in cfg.format_match_qualities or [90]]
    if cfg.format_match == "auto":
        shares = []
        for label in (0, 1):
            part = [s for s in train if s.label == label]
            shares.append(sum(map(has_jpeg_history, part)) / max(1, len(part)))
        probs = format_match_probabilities(*shares)
        if cfg.format_match_qualities is None:
            histories = jpeg_histories(train)
        log.info(
            "format matching: JPEG share real %.2f fake %.2f -> compress non-JPEG real with p=%.2f, fake with "
            "p=%.2f with (quality, subsampling) %s",
            shares[0],
            shares[1],
            probs[0],
            probs[1],
            ", ".join(f"{q} {ss}" for q, ss in sorted(set(histories))),
        )
    elif cfg.format_match not in ("off", "auto"):
        try:
            probs = tuple(float(v) for v in cfg.format_match.split(","))  # type: ignore[assignment]
            assert len(probs) == 2
        except (ValueError, AssertionError) as exc:
            raise TrainError(f"--format-match must be off, auto, or P_REAL,P_FAKE; got {cfg.format_match!r}.") from exc
    return TrainAugment(
        blur_prob=cfg.blur_prob,
        blur_sig=tuple(cfg.blur_sig),
        jpg_prob=cfg.jpeg_prob,
        jpg_method=tuple(cfg.jpeg_method),
        jpg_qual=tuple(cfg.jpeg_qual),
        format_match_probs=probs,
        format_match_histories=tuple(histories),
        delivery_prob=cfg.delivery_prob,
    )


def format_matching_of(augment: TrainAugment) -> TrainAugment:
    """The format matching of a training augmentation alone, without its blur and JPEG degradations."""
    return TrainAugment(
        format_match_probs=augment.format_match_probs, format_match_histories=augment.format_match_histories
    )


def _unwrap(model: nn.Module) -> nn.Module:
    model = model.module if isinstance(model, DistributedDataParallel) else model
    return getattr(model, "_orig_mod", model)


def has_training_loss(model: nn.Module) -> bool:
    """True when the (unwrapped) model computes its own training loss, as ESSP does."""
    return callable(getattr(_unwrap(model), "training_loss", None))


def batch_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch: dict[str, Any],
    *,
    device: torch.device,
    precision: str,
    mean: Sequence[float],
    std: Sequence[float],
    loss_weights: dict[str, float],
) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of one batch and its named parts.

    BCE with logits on ``model(x)``; a model with ``training_loss`` is called through the wrapper
    (so DDP and torch.compile see the call) with ``all_outputs=True``, and its ``training_loss``
    combines the outputs with the batch's ``clean_pixels`` and ``degradation`` targets.
    """
    if not has_training_loss(model):
        with autocast(device, precision):
            logits = model(x)
        return F.binary_cross_entropy_with_logits(logits.float(), y), {}
    clean = normalize(batch["clean_pixels"].to(device, non_blocking=True), mean, std)
    with autocast(device, precision):
        outputs = model(x, all_outputs=True)
    return _unwrap(model).training_loss(
        outputs, y, clean=clean, degradation=batch["degradation"].to(device, non_blocking=True), **loss_weights
    )


def _setup_logging(out: Path) -> logging.Handler | None:
    if not distributed.is_main():
        return None
    handler = logging.FileHandler(out / "train.log")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("ssp_detect")
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler


def keep_records_through(path: Path, epoch: int) -> int:
    """Drop the records of ``metrics.jsonl`` after ``epoch`` (and a last line cut short), so that a
    run resumed from the checkpoint of ``epoch`` does not repeat the records of the epoch it was
    killed in; returns how many were dropped. The file is rewritten atomically."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += bool(line.strip())  # a line cut short by the kill
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int) and record["epoch"] > epoch:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        tmp = path.with_suffix(path.suffix + ".tmp")
        with writing(path, "the metrics"):
            tmp.write_text("".join(line + "\n" for line in kept))
            tmp.replace(path)
    return dropped


class _MetricsLog:
    """One JSON object per line, written by rank 0 only; a resumed run (``resumed_epoch``) appends
    after the records of the epochs up to its checkpoint's (see :func:`keep_records_through`)."""

    def __init__(self, path: Path, resumed_epoch: int | None = None) -> None:
        self.path, self.file = path, None
        if not distributed.is_main():
            return
        if resumed_epoch is not None:
            dropped = keep_records_through(path, resumed_epoch)
            if dropped:
                log.info(
                    "%s: dropped %d record(s) written after epoch %d by the run resumed", path, dropped, resumed_epoch
                )
        with writing(path, "the metrics"):
            self.file = path.open("a" if resumed_epoch is not None else "w")

    def write(self, record: dict[str, Any]) -> None:
        if self.file:
            from ssp_detect.engine.report import to_jsonable

            with writing(self.path, "the metrics"):
                self.file.write(json.dumps(to_jsonable(record)) + "\n")
                self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    precision: str,
    mean: Sequence[float],
    std: Sequence[float],
    max_steps: int | None,
    epoch: int,
    metrics: _MetricsLog | None,
    log_every: int,
    progress: bool,
    loss_weights: dict[str, float] | None = None,
) -> dict[str, float]:
    """One pass over the training loader; returns mean loss, images seen, images/s, skipped, and
    the mean of each loss part of a model with its own ``training_loss`` (see :func:`batch_loss`)."""
    model.train()
    total = seen = skipped = 0.0
    part_sums: dict[str, float] = {}
    steps = min(len(loader), max_steps) if max_steps else len(loader)
    start = time.perf_counter()
    bar = tqdm(
        total=steps, desc=f"epoch {epoch}", disable=not progress or not distributed.is_main(), leave=False, unit="step"
    )
    for step, batch in enumerate(loader, start=1):
        skipped += len(batch["errors"])
        for _, msg in batch["errors"]:
            log.warning("skipped unreadable training image: %s", msg)
        if batch["pixels"] is not None:
            x = model_input(batch["pixels"], device, mean, std)
            y = batch["label"].to(device, non_blocking=True)
            loss, parts = batch_loss(
                model,
                x,
                y,
                batch,
                device=device,
                precision=precision,
                mean=mean,
                std=std,
                loss_weights=loss_weights or {},
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            seen += len(y)
            for name, value in parts.items():
                part_sums[name] = part_sums.get(name, 0.0) + value * len(y)
            if metrics is not None and step % log_every == 0:
                metrics.write(
                    {
                        "type": "step",
                        "epoch": epoch,
                        "step": step,
                        "loss": loss.item(),
                        "lr": optimizer.param_groups[0]["lr"],
                        **parts,
                    }
                )
            bar.set_postfix(loss=f"{total / max(seen, 1):.4f}")
        bar.update(1)
        if step >= steps:
            break
    bar.close()
    elapsed = time.perf_counter() - start
    return {
        "train_loss": distributed.average(total / max(seen, 1)),
        "images": seen * distributed.world_size(),
        "images_per_s": seen * distributed.world_size() / max(elapsed, 1e-9),
        "skipped": skipped,
        **{name: distributed.average(value / max(seen, 1)) for name, value in part_sums.items()},
    }


def read_resume_state(path: str | Path) -> dict[str, Any]:
    """The state of a ``last.pt`` to resume; :class:`TrainError` for a checkpoint without an
    optimizer state or epoch (a ``best.pt``, a calibrated copy, official weights)."""
    state = read_checkpoint_file(path)
    if "optimizer" not in state or "epoch" not in state:
        raise TrainError(
            f"{path} cannot be resumed: it holds no optimizer state (best.pt and calibrated copies are saved "
            f"without it); pass the last.pt of its run folder, {Path(path).parent / 'last.pt'}."
        )
    return state


def train(cfg: TrainConfig, *, resume: str | Path | None = None) -> dict[str, Any]:
    """Train as configured; returns the paths written and the best validation metrics.

    The output folder is created and checked before anything else is done.

    Args:
        cfg: The resolved configuration.
        resume: A ``last.pt`` to continue from exactly (model, optimizer, epoch, best so far). The
            run continues in the folder of that file, whatever ``cfg.out`` says (a run folder may
            have been moved since), and ``metrics.jsonl`` there loses the records written after the
            checkpoint's epoch (by the run that was killed).

    Raises:
        TrainError: ``resume`` is not a ``last.pt`` (see :func:`read_resume_state`), or a set-up
            that cannot run.
        ~ssp_detect.outputs.OutputError: the output folder cannot be written, before any work, or a
            write fails later (the last checkpoint written stays intact).
    """
    moved = ""
    state = read_resume_state(resume) if resume else None
    if resume and Path(cfg.out).resolve() != Path(resume).parent.resolve():
        moved = cfg.out
        cfg = dataclasses.replace(cfg, out=str(Path(resume).parent))
    device = distributed.setup(resolve_device(cfg.device))
    precision = resolve_precision(cfg.precision, device)
    out = Path(cfg.out)
    if distributed.is_main():
        ensure_writable_folder(out, "--out")
    distributed.barrier()
    handler = _setup_logging(out)
    if moved:
        log.info("continuing the run in %s, the folder of %s (its config.yaml said %s)", out, resume, moved)
    try:
        return _train(cfg, device, precision, out, resume, state)
    finally:
        if handler:
            logging.getLogger("ssp_detect").removeHandler(handler)
            handler.close()


def _training_data(
    cfg: TrainConfig,
    samples: Sequence[Sample],
    pre: Preprocessor,
    augment: TrainAugment,
    restoration_targets: bool,
    *,
    workers: int,
    pin: bool,
    replicas: int | None = None,
    rank: int | None = None,
) -> tuple[DetectionDataset, DistributedSampler, Any]:
    """The training dataset (``cfg.repeats`` copies of ``samples``), its sampler and loader; the
    processes of a torchrun run each draw their share unless ``replicas`` and ``rank`` say else."""
    replicas = distributed.world_size() if replicas is None else replicas
    # Each copy of an image has its own index, so its own random patch draws and augmentation.
    dataset = DetectionDataset(
        list(samples) * cfg.repeats, pre, augment=augment, restoration_targets=restoration_targets, seed=cfg.seed
    )
    sampler = DistributedSampler(
        dataset, num_replicas=replicas, rank=distributed.rank() if rank is None else rank, shuffle=True, seed=cfg.seed
    )
    loader = make_loader(
        dataset,
        batch_size=cfg.batch_size,
        workers=workers,
        sampler=sampler,
        pin_memory=pin,
        drop_last=len(dataset) >= cfg.batch_size * replicas * 2,
    )
    return dataset, sampler, loader


def scheduled_epoch(
    cfg: TrainConfig,
    epoch: int,
    model: nn.Module,
    dataset: DetectionDataset,
    sampler: DistributedSampler,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    metrics: _MetricsLog | None,
    loss_weights: dict[str, float],
    common: dict[str, Any],
) -> tuple[float, dict[str, float]]:
    """One epoch of the recipe: the poly learning rate of ``epoch``, fresh draws for it, a pass
    (:func:`train_one_epoch`); returns the learning rate and the pass's statistics."""
    lr = poly_lr(cfg.lr, epoch, cfg.epochs, cfg.poly_power)
    for group in optimizer.param_groups:
        group["lr"] = lr
    sampler.set_epoch(epoch)
    dataset.set_epoch(epoch)
    stats = train_one_epoch(
        model,
        loader,
        optimizer,
        max_steps=cfg.steps_per_epoch,
        epoch=epoch,
        metrics=metrics,
        log_every=cfg.log_every,
        progress=cfg.progress,
        loss_weights=loss_weights,
        **common,
    )
    return lr, stats


def crossfit_predictions(
    cfg: TrainConfig,
    samples: Sequence[Sample],
    *,
    pre: Preprocessor,
    eval_pre: Preprocessor,
    augment: TrainAugment,
    eval_augment: TrainAugment,
    workers: int,
    pin: bool,
    common: dict[str, Any],
    loss_weights: dict[str, float],
    metrics: _MetricsLog,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and logits of ``samples``, each scored by one of ``cfg.crossfit_folds`` models trained
    with the recipe of ``cfg`` (every epoch; the last is kept) on the other folds (whole source
    photos, :func:`group_folds`): scores of images as new to their model as the validation images are
    to best.pt, for choosing its threshold on more than a few photos. With ``cfg.crossfit_by``
    ``collection`` the folds hold whole collections (packages), so that each image is scored by a
    model that never saw its collection."""
    labels, logits = [], []
    folds = group_folds(
        samples, cfg.crossfit_folds, cfg.seed, collection_of if cfg.crossfit_by == "collection" else sample_group
    )
    for k, held in enumerate(folds, start=1):
        rest = [s for j, fold in enumerate(folds, start=1) if j != k for s in fold]
        if not held or {s.label for s in rest} != {0, 1}:
            log.info("cross-fitting: fold %d/%d skipped (nothing to score, or one class left)", k, len(folds))
            continue
        torch.manual_seed(cfg.seed + k)
        model = place_model(create_model(cfg.model, backbone_weights=cfg.backbone_weights), common["device"])
        dataset, sampler, loader = _training_data(
            cfg, rest, pre, augment, bool(loss_weights), workers=workers, pin=pin, replicas=1, rank=0
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        for epoch in range(1, cfg.epochs + 1):
            _, stats = scheduled_epoch(
                cfg, epoch, model, dataset, sampler, loader, optimizer, None, loss_weights, common
            )
        scored = DetectionDataset(held, eval_pre, augment=eval_augment, seed=cfg.seed)
        preds = predict_loader(
            model,
            make_eval_loader(scored, batch_size=cfg.batch_size, workers=workers, pin_memory=pin),
            progress=cfg.progress,
            desc=f"cross-fit {k}/{len(folds)}",
            **common,
        )
        labels.append(preds.label)
        logits.append(preds.logit)
        record = {"type": "crossfit", "fold": k, "folds": len(folds), "trained_on": len(rest), "scored": len(held)}
        metrics.write(record | {"train_loss": stats["train_loss"]})
        log.info(
            "cross-fitting: model %d/%d trained on %d images (loss %.4f), scored the %d it never saw",
            k,
            len(folds),
            len(rest),
            stats["train_loss"],
            len(held),
        )
    if not labels:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(labels), np.concatenate(logits)


def _train(
    cfg: TrainConfig,
    device: torch.device,
    precision: str,
    out: Path,
    resume: str | Path | None,
    state: dict[str, Any] | None,
) -> dict[str, Any]:
    spec = get_spec(cfg.model)
    if cfg.crossfit_folds == 1 or cfg.crossfit_folds < 0:
        raise TrainError(f"--crossfit-folds must be 0 (off) or at least 2, not {cfg.crossfit_folds}.")
    if cfg.crossfit_folds and distributed.is_distributed():
        raise TrainError("--crossfit-folds runs in one process; train without torchrun, or calibrate on the holdout.")
    train_samples, val_samples, val_what = load_train_val(cfg)
    if cfg.crossfit_folds and cfg.crossfit_by == "collection":
        found = {collection_of(s) for s in train_samples}  # raises, before any training, for one without
        if len(found) < 2:
            raise TrainError(f"--crossfit-by collection needs training images of 2 collections or more; got {found}.")
    log.info(
        "model %s on %s (%s); %d training images; validation: %s",
        cfg.model,
        device,
        precision,
        len(train_samples),
        val_what,
    )
    workers = default_workers() if cfg.workers is None else cfg.workers
    pin = device.type == "cuda"
    train_patch = PatchOptions(cfg.patch_mode, cfg.seed, cfg.num_candidates, cfg.patch_size)
    eval_patch = dataclasses.replace(train_patch, mode=cfg.eval_patch_mode)
    torch.manual_seed(cfg.seed)
    model = place_model(create_model(cfg.model, backbone_weights=cfg.backbone_weights), device)
    if cfg.repeats < 1:
        raise TrainError(f"--repeats must be at least 1, not {cfg.repeats}.")
    augment = make_augment(cfg, train_samples)
    train_pre = Preprocessor.for_model(spec.feed, train_patch)
    train_ds, sampler, train_loader = _training_data(
        cfg, train_samples, train_pre, augment, has_training_loss(model), workers=workers, pin=pin
    )
    eval_pre = Preprocessor.for_model(spec.feed, eval_patch)
    # Validation and the training probe see the training data's format matching (the same draws
    # every epoch: their epoch stays 0), never its blur or JPEG degradations: with fakes left in
    # their raw format a holdout rewards "JPEG or not", and best.pt would be chosen for it.
    eval_augment = format_matching_of(augment)
    if eval_augment.active:
        log.info("validation and the training probe are format-matched like the training data (fixed draws)")
    val_ds = DetectionDataset(val_samples, eval_pre, augment=eval_augment, seed=cfg.seed)
    probe_idx = np.random.default_rng(cfg.seed).permutation(len(train_samples))[: cfg.train_eval_samples]
    probe_samples = [train_samples[i] for i in sorted(probe_idx)]
    probe_ds = DetectionDataset(probe_samples, eval_pre, augment=eval_augment, seed=cfg.seed)

    val_loader = make_eval_loader(val_ds, batch_size=cfg.batch_size, workers=workers, pin_memory=pin)
    probe_loader = make_eval_loader(probe_ds, batch_size=cfg.batch_size, workers=workers, pin_memory=pin)

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, best, history = 1, -math.inf, []
    stop_after = cfg.stop_after
    if state is not None:
        if state.get("model") != cfg.model:
            raise TrainError(f"{resume} is a {state.get('model')!r} checkpoint, but the config trains {cfg.model!r}.")
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best, history = int(state["epoch"]) + 1, float(state["best"]), list(state.get("history", []))
        log.info("resumed from %s at epoch %d", resume, start_epoch)
        if stop_after is not None and stop_after < start_epoch:
            log.info("--stop-after %d was reached before; training on to epoch %d", stop_after, cfg.epochs)
            stop_after = None
    train_model: nn.Module = model
    if cfg.compile:
        train_model = torch.compile(train_model)
    if distributed.is_distributed():
        train_model = DistributedDataParallel(train_model, device_ids=[device.index] if device.type == "cuda" else None)
    if distributed.is_main():
        with writing(out / "config.yaml", "the config"):
            save_config(cfg, out / "config.yaml")
    metrics = _MetricsLog(out / "metrics.jsonl", resumed_epoch=start_epoch - 1 if state is not None else None)
    common = {"device": device, "precision": precision, "mean": spec.mean, "std": spec.std}
    loss_weights = (
        {"perception_weight": cfg.perception_weight, "restoration_weight": cfg.restoration_weight}
        if has_training_loss(model)
        else {}
    )
    payload_base = {
        "model": cfg.model,
        "preprocess": eval_pre.feed.to_dict(),
        "threshold": 0.5,
        "train_config": cfg.to_dict(),
    }
    result: dict[str, Any] = {"out": str(out), "best": str(out / "best.pt"), "last": str(out / "last.pt")}
    stopped, crossfit = False, None
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            started = time.perf_counter()
            lr, stats = scheduled_epoch(
                cfg, epoch, train_model, train_ds, sampler, train_loader, optimizer, metrics, loss_weights, common
            )
            val = summarize(val_samples, predict_loader(model, val_loader, progress=cfg.progress, desc="val", **common))
            probe = summarize(
                probe_samples, predict_loader(model, probe_loader, progress=cfg.progress, desc="train-eval", **common)
            )
            record = {
                "type": "epoch",
                "epoch": epoch,
                "lr": lr,
                **stats,
                "time_s": time.perf_counter() - started,
                "val": val["pooled"],
                "val_mean_over_subsets": val["mean_over_subsets"],
                "train_eval": probe["pooled"],
            }
            metrics.write(record)
            history.append(
                {k: record[k] for k in ("epoch", "lr", "train_loss")}
                | {
                    "val_acc": val["pooled"]["acc"],
                    "val_auc": val["pooled"]["auc"],
                    "train_eval_acc": probe["pooled"]["acc"],
                }
            )
            score = val["pooled"][cfg.select_metric]
            log.info(
                "epoch %d/%d lr %.2e loss %.4f | val acc %.3f auc %.3f | eval-mode on training sample acc %.3f "
                "auc %.3f | %.1f img/s",
                epoch,
                cfg.epochs,
                lr,
                stats["train_loss"],
                val["pooled"]["acc"],
                val["pooled"]["auc"],
                probe["pooled"]["acc"],
                probe["pooled"]["auc"],
                stats["images_per_s"],
            )
            if loss_weights:
                log.info(
                    "epoch %d loss parts: %s",
                    epoch,
                    ", ".join(f"{k} {v:.4f}" for k, v in stats.items() if k.startswith(("loss_", "perception_"))),
                )
            if stats["train_loss"] < 0.2 and probe["pooled"]["acc"] < 0.6:
                log.warning(
                    "training loss is low (%.3f) but eval-mode accuracy on training images is %.2f: the model relies "
                    "on batch statistics or augmentation-only cues; try a GroupNorm model (ssp-gn, ssp-native-gn).",
                    stats["train_loss"],
                    probe["pooled"]["acc"],
                )
            improved = not math.isnan(score) and score > best
            best = max(best, score) if not math.isnan(score) else best
            if distributed.is_main():
                payload = payload_base | {
                    "state_dict": _unwrap(model).state_dict(),
                    "epoch": epoch,
                    "best": best,
                    "history": history,
                    "metrics": {
                        "val": val["pooled"],
                        "val_mean_over_subsets": val["mean_over_subsets"],
                        "train_eval": probe["pooled"],
                        "validation_data": val_what,
                    },
                }
                save_checkpoint(out / "last.pt", payload | {"optimizer": optimizer.state_dict()})
                if improved:
                    save_checkpoint(out / "best.pt", payload)
            distributed.barrier()
            result["best_val"] = val["pooled"] if improved else result.get("best_val", val["pooled"])
            if stop_after is not None and epoch >= stop_after and epoch < cfg.epochs:
                log.info("stopping after epoch %d as asked; continue with --resume %s", epoch, out / "last.pt")
                stopped = True
                break
        if cfg.crossfit_folds and not stopped:
            crossfit = crossfit_predictions(
                cfg,
                train_samples,
                pre=train_pre,
                eval_pre=eval_pre,
                augment=augment,
                eval_augment=eval_augment,
                workers=workers,
                pin=pin,
                common=common,
                loss_weights=loss_weights,
                metrics=metrics,
            )
    finally:
        metrics.close()
    result["history"] = history
    result["calibration"] = calibrate_best(out / "best.pt", model, val_loader, cfg, val_what, common, crossfit)
    return result


def calibrate_best(
    best_path: Path,
    model: nn.Module,
    val_loader: Any,
    cfg: TrainConfig,
    val_what: str,
    common: dict[str, Any],
    crossfit: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any] | None:
    """Calibrate ``best.pt`` on the validation images (never trained on), and on the cross-fitted
    labels and logits of the training images where given (:func:`crossfit_predictions`): fit its
    temperature, then choose its threshold on the calibrated p_fake for ``cfg.target_fpr`` (see
    :func:`~ssp_detect.engine.calibrate.calibrate`), and store both with how they were chosen.

    Returns the stored calibration, or None when there is no best.pt or the data cannot give it
    (best.pt then keeps the threshold 0.5 and a warning says why).
    """
    distributed.barrier()
    if not best_path.is_file():
        return None
    state = read_checkpoint_file(best_path)
    model.load_state_dict(state["state_dict"])
    preds = predict_loader(model, val_loader, progress=cfg.progress, desc="calibrate", **common)
    labels, logits = preds.label, preds.logit
    if crossfit is not None and len(crossfit[0]):
        labels, logits = np.concatenate([labels, crossfit[0]]), np.concatenate([logits, crossfit[1]])
        val_what = (
            f"{val_what}, and the {len(crossfit[0])} training images each scored by one of {cfg.crossfit_folds} "
            f"models cross-fitted without its source {cfg.crossfit_by}"
        )
    try:
        calibration = calibrate(labels, logits, target_fpr=cfg.target_fpr, data=val_what)
    except CalibrationError as exc:
        log.warning("best.pt keeps the threshold 0.5: %s", exc)
        return None
    stored = calibration.to_dict()
    if distributed.is_main():
        save_checkpoint(
            best_path,
            state
            | {
                "threshold": calibration.choice.threshold,
                "temperature": calibration.temperature,
                "calibration": stored,
            },
        )
    log.info(
        "best.pt calibrated on %s: temperature %.3f, threshold %.4f for a false-positive rate of %s "
        "(reached %.3f, 95%% interval %.3f-%.3f, on %d real images)",
        val_what,
        calibration.temperature,
        calibration.choice.threshold,
        cfg.target_fpr,
        calibration.choice.fpr,
        calibration.choice.fpr_low,
        calibration.choice.fpr_high,
        calibration.choice.n_real,
    )
    distributed.barrier()
    return stored
