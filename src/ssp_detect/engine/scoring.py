"""Scoring labelled data as the commands do: one runtime record, one evaluation call, the policy for
unreadable images, and the runs behind ``ssp test`` and ``ssp calibrate``.

:class:`EvalRuntime` holds what every evaluation shares (device, precision, batch size, DataLoader
workers, patch options, progress bars, where images are decoded), resolved once;
:meth:`EvalRuntime.evaluate` is :func:`~ssp_detect.engine.evaluate.evaluate_model` with them.
Under torchrun every rank scores its share and only rank 0 writes files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ssp_detect.data.decode import DEFAULT_MAX_PIXELS, ImageDecodeError
from ssp_detect.data.degradations import Degradation
from ssp_detect.data.layouts import DatasetError, Sample
from ssp_detect.data.preprocess import PatchOptions, Preprocessor
from ssp_detect.engine import distributed
from ssp_detect.engine.calibrate import Calibration
from ssp_detect.engine.evaluate import Predictions, evaluate_model
from ssp_detect.engine.runtime import BACKENDS, DECODERS, default_workers, resolve_device, resolve_precision
from ssp_detect.errors import UsageError
from ssp_detect.models.loading import LoadedModel
from ssp_detect.outputs import ensure_writable_folder, writing
from ssp_detect.verdict import DEFAULT_UNCERTAIN_BAND

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalRuntime:
    """How evaluation runs, whatever is evaluated.

    Attributes:
        device: The resolved device (this rank's under torchrun).
        precision: ``fp32``, ``bf16`` or ``auto`` (resolved per model by ``evaluate_model``: fp32 for
            official weights, bf16 on CUDA otherwise, fp32 on the CPU).
        batch_size: Images per batch.
        workers: DataLoader worker processes.
        patch: Patch selection and any override of the checkpoint's patch size and candidates.
        progress: Show progress bars.
        decode: Where images are decoded, one of :data:`~ssp_detect.engine.runtime.DECODERS`.
        allow_truncated: Score images whose data ends early instead of listing them as unreadable
            (their verdicts count as uncertain); the device decoder always refuses them.
        backend: What runs the model: ``auto``, ``torch`` or ``onnxruntime`` (see
            :mod:`ssp_detect.engine.backend`).
        max_pixels: Images with more pixels are refused from their header (decompression-bomb guard).
    """

    device: torch.device
    precision: str = "fp32"
    batch_size: int = 64
    workers: int = 0
    patch: PatchOptions = field(default_factory=PatchOptions)
    progress: bool = True
    decode: str = "workers"
    allow_truncated: bool = False
    backend: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UsageError(f"The batch size must be at least 1, not {self.batch_size}.")
        if self.max_pixels < 1:
            raise UsageError(f"The pixel limit must be at least 1, not {self.max_pixels}.")
        if self.workers < 0:
            raise UsageError(f"The DataLoader worker count must be 0 or more, not {self.workers}.")
        if self.decode not in DECODERS:
            raise UsageError(f"Unknown decoding {self.decode!r}; choose one of {', '.join(DECODERS)}.")
        if self.backend not in BACKENDS:
            raise UsageError(f"Unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}.")

    @classmethod
    def resolve(
        cls,
        *,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 64,
        workers: int | None = None,
        patch: PatchOptions = PatchOptions(),
        progress: bool = True,
        decode: str = "workers",
        join_process_group: bool = False,
        allow_truncated: bool = False,
        backend: str = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> EvalRuntime:
        """Resolve the options as a user gives them: ``auto`` device and precision, workers None
        for :func:`~ssp_detect.engine.runtime.default_workers`; ``join_process_group`` joins the
        torchrun process group (when launched by torchrun) and takes this rank's device."""
        dev = resolve_device(device)
        if join_process_group:
            dev = distributed.setup(dev)
        n_workers = default_workers() if workers is None else workers
        resolve_precision(precision, dev)  # checks the name; auto is resolved per model (official weights: fp32)
        return cls(
            dev,
            precision,
            batch_size,
            n_workers,
            patch,
            progress,
            decode,
            allow_truncated,
            backend,
            max_pixels,
        )

    def keywords(self) -> dict[str, Any]:
        """The keywords that :func:`~ssp_detect.engine.robustness.run_robustness` shares with
        :func:`~ssp_detect.engine.evaluate.evaluate_model` (everything but ``decode``)."""
        return {
            "device": self.device,
            "precision": self.precision,
            "batch_size": self.batch_size,
            "workers": self.workers,
            "patch": self.patch,
            "progress": self.progress,
            "allow_truncated": self.allow_truncated,
            "backend": self.backend,
            "max_pixels": self.max_pixels,
        }

    def evaluate(
        self,
        loaded: LoadedModel,
        samples: Sequence[Sample],
        *,
        threshold: float | None = None,
        desc: str = "test",
        degradation: Degradation | None = None,
        bootstrap: int = 0,
        uncertain_band: float = DEFAULT_UNCERTAIN_BAND,
    ) -> tuple[dict[str, Any], Predictions]:
        """:func:`~ssp_detect.engine.evaluate.evaluate_model` with this runtime."""
        return evaluate_model(
            loaded,
            samples,
            **self.keywords(),
            threshold=threshold,
            desc=desc,
            degradation=degradation,
            decode=self.decode,
            bootstrap=bootstrap,
            uncertain_band=uncertain_band,
        )

    def describe_patch(self, loaded: LoadedModel) -> str:
        """The simple-patch settings a model is fed with here, in words, for reports."""
        return Preprocessor.for_model(loaded.feed, self.patch).describe()

    def describe_patches(self, names: Sequence[str], models: Sequence[LoadedModel]) -> str:
        """The simple-patch settings of several models: one phrase when they agree, else one per
        group of models that share them."""
        groups: dict[str, list[str]] = {}
        for name, loaded in zip(names, models, strict=False):
            groups.setdefault(self.describe_patch(loaded), []).append(name)
        if len(groups) == 1:
            return next(iter(groups))
        return "; ".join(f"{', '.join(group)}: {d}" for d, group in groups.items())

    def describe_decode(self) -> str:
        """Where images are decoded, in words, for reports."""
        return "in the DataLoader workers" if self.decode == "workers" else f"on {self.device}"


def _threshold_origin(calibration: dict[str, Any], override: float | None) -> str:
    """How the threshold in a report was chosen, in words."""
    if override is not None:
        return "given with --threshold"
    if calibration.get("method") == "target-fpr":
        return (
            f"the checkpoint's, chosen for a false-positive rate of {calibration['target_fpr']:g} on "
            f"{calibration.get('n_real', '?')} real images: reached {calibration['fpr']:.3f}, 95% interval "
            f"{calibration['fpr_low']:.3f}-{calibration['fpr_high']:.3f}"
        )
    if calibration:
        return "the checkpoint's, chosen for the best accuracy"
    return "the checkpoint's default"


def check_names(names: Sequence[str] | None, weights: Sequence[str | Path]) -> None:
    """Raise :class:`UsageError` unless ``names`` is None or gives one name per checkpoint."""
    if names and len(names) != len(weights):
        raise UsageError(
            f"--names has {len(names)} entries but --weights has {len(weights)}; give one name per checkpoint."
        )


def check_unreadable(summary: dict[str, Any], strict: bool) -> None:
    """The policy for unreadable images: they are skipped (never replaced) and listed in the report,
    with a warning; with ``strict`` they are an error (:class:`ImageDecodeError`), and so they are
    when no image at all could be read (:class:`DatasetError`: there is nothing to report on)."""
    if summary["n_unreadable"]:
        log.warning("%d unreadable image(s) were skipped (listed in the report).", summary["n_unreadable"])
        if summary["n_unreadable"] >= summary["n_images"]:
            first = summary["unreadable"][0]["path"]
            raise DatasetError(
                f"None of the {summary['n_images']} image(s) could be read (the first: {first}); the report lists why."
            )
        if strict:
            first = summary["unreadable"][0]["path"]
            raise ImageDecodeError(
                f"{summary['n_unreadable']} image(s) could not be read, e.g. {first}; drop --strict to skip them."
            )


@dataclass(frozen=True)
class TestRun:
    """What :func:`run_test` did: the summary (every rank) and the files written (rank 0 only)."""

    __test__ = False  # not a pytest test class

    summary: dict[str, Any]
    paths: list[Path]


def run_test(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    runtime: EvalRuntime,
    *,
    weights: str | Path,
    out: str | Path,
    threshold: float | None = None,
    bootstrap: int = 0,
    data: str = "",
    uncertain_band: float = DEFAULT_UNCERTAIN_BAND,
) -> TestRun:
    """Test one checkpoint: score ``samples``, write ``results.md/.csv/.json`` into ``out`` (rank 0)
    and leave the process group, if any. Unreadable images are listed in the results; apply
    :func:`check_unreadable` to the summary for the ``--strict`` policy.

    Args:
        loaded: The model of ``weights``.
        samples: Labelled images.
        runtime: How to run (join the process group when building it, for torchrun).
        weights: The checkpoint's path, for the report.
        out: Folder for the results.
        threshold: Decision threshold (default: the checkpoint's).
        bootstrap: Resamples of each AUC's 95% interval (0: none).
        data: The data, in words, for the report.
        uncertain_band: Verdicts within this distance of the threshold are ``uncertain``; the report
            gives the coverage and the accuracies on the decided images beside the plain metrics.
    """
    from ssp_detect.engine.report import write_summary

    if distributed.is_main():
        ensure_writable_folder(out, "--out")  # before the work, so that nothing scored is lost
    summary, preds = runtime.evaluate(
        loaded, samples, threshold=threshold, bootstrap=bootstrap, uncertain_band=uncertain_band
    )
    paths: list[Path] = []
    if distributed.is_main():
        calibration = loaded.meta.get("calibration") or {}
        notes = [
            f"weights: {weights} ({loaded.name}, {loaded.source}, sha256 {loaded.sha256[:12]})",
            f"data: {data}",
            f"simple patch: {runtime.describe_patch(loaded)}",
            f"decoding: {runtime.describe_decode()}",
            f"threshold {summary['threshold']:.4f} ({_threshold_origin(calibration, threshold)}), temperature "
            f"{loaded.temperature:.3g}; uncertain within {uncertain_band:g} of the threshold, or without texture, "
            "or upscaled",
        ]
        with writing(out, "the results"):
            paths = write_summary(
                summary,
                out,
                title=f"Test of {Path(weights).name}",
                notes=notes,
                reliability=(preds.label, preds.p_fake),
            )
    distributed.teardown()
    return TestRun(summary, paths)


def calibrate_threshold(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    runtime: EvalRuntime,
    *,
    target_fpr: float | None = None,
    data: str = "",
) -> tuple[Calibration, Predictions]:
    """Score labelled data, refit the temperature (our checkpoints; official weights keep their raw
    output) and choose the threshold on the calibrated p_fake for ``target_fpr`` (the highest share
    of real images called fake), else the one of best accuracy. Returns the calibration and the
    predictions (their ``logit`` raw, for a reliability diagram)."""
    from ssp_detect.engine.calibrate import calibrate

    _, preds = runtime.evaluate(loaded, samples, desc="calibrate")
    if target_fpr is not None and not (preds.label == 0).any():
        raise DatasetError(
            "Calibration for a false-positive rate needs real images, and the data has none that could be read."
        )
    return calibrate(preds.label, preds.logit, target_fpr=target_fpr, data=data, fit=loaded.source != "official"), preds
