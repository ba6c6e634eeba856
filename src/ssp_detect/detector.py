"""The Python API for detection: ``Detector.from_checkpoint(path).predict(images)``.

The ``ssp predict`` command and the HTTP service both use this object, so they cannot diverge.
Data flow per image: source -> RGB uint8 -> simple patch (or resized image, or crop) -> uint8
batch -> normalised on the device -> logit (by PyTorch or ONNX Runtime, see
:mod:`ssp_detect.engine.backend`) -> p_fake -> verdict (``real``, ``fake`` or ``uncertain`` with its
reasons, see :mod:`ssp_detect.verdict`). With ``stability=True`` the image's
common deliveries (:mod:`ssp_detect.stability`) join the same batch.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ssp_detect.data.decode import DEFAULT_MAX_PIXELS, DecodedImage, ImageDecodeError, decode_image, to_rgb_array
from ssp_detect.data.preprocess import PatchOptions, Prepared, Preprocessor
from ssp_detect.engine.backend import resolve_backend
from ssp_detect.engine.runtime import model_input, place_model, resolve_device, resolve_precision
from ssp_detect.models.loading import LoadedModel, load_model
from ssp_detect.stability import Stability, delivered
from ssp_detect.verdict import DEFAULT_UNCERTAIN_BAND, ScoreError, check_band, check_finite, check_threshold, decide

log = logging.getLogger(__name__)

ImageSource = str | Path | bytes | np.ndarray | Image.Image


@dataclass(frozen=True)
class Detection:
    """The verdict on one image: the one result record of the Python API, ``ssp predict``'s rows and
    the service's JSON.

    Attributes:
        source: The path, or a description of an in-memory image.
        p_fake: Probability that the image is AI-generated (None when it could not be scored).
        label: ``fake`` when p_fake >= threshold, ``real`` below, ``uncertain`` when any reason
            says the number should not be trusted on its own (None on error).
        threshold: The decision threshold used.
        box: The simple patch (x, y, w, h) in the searched image's pixels; for whole-image models
            the full image.
        texture_score: The patch's texture diversity (-1 for whole-image models).
        searched_size: (width, height) of the image the box refers to (256x256 when an image
            smaller than the patch was resized first, as in the official code).
        error: Why the image could not be scored, in one sentence; None on success.
        reasons: Why the verdict is ``uncertain`` (see :data:`ssp_detect.verdict.REASONS`); empty
            for a plain verdict.
        stability: How p_fake moved over common deliveries, when a stability check was asked for.
    """

    source: str
    p_fake: float | None
    label: str | None
    threshold: float
    box: tuple[int, int, int, int] | None = None
    texture_score: int | None = None
    searched_size: tuple[int, int] | None = None
    error: str | None = None
    reasons: tuple[str, ...] = ()
    stability: Stability | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain types, for JSON."""
        d = asdict(self)
        d["box"] = list(self.box) if self.box else None
        d["searched_size"] = list(self.searched_size) if self.searched_size else None
        d["reasons"] = list(self.reasons)
        d["stability"] = self.stability.to_dict() if self.stability else None
        return d

    def to_row(self) -> dict[str, Any]:
        """One flat row (the box as x, y, w, h; the source as ``path``), for tables and CSV."""
        x, y, w, h = self.box if self.box else (None, None, None, None)
        return {
            "path": self.source,
            "p_fake": self.p_fake,
            "label": self.label,
            "threshold": self.threshold,
            "x": x,
            "y": y,
            "w": w,
            "h": h,
            "texture_score": self.texture_score,
            "reasons": ";".join(self.reasons),
            "p_min": self.stability.p_min if self.stability else None,
            "p_max": self.stability.p_max if self.stability else None,
            "most_moved": self.stability.most_moved if self.stability else None,
            "error": self.error,
        }


def describe_source(source: ImageSource) -> str:
    """A short name of an image source for reports."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.size[0]}x{source.size[1]} {source.mode}>"
    return f"<array {tuple(source.shape)}>"


class Detector:
    """A loaded detector on a device.

    Args:
        loaded: The model and its metadata (see :func:`ssp_detect.models.load_model`).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (fp32 on the CPU; bf16 on CUDA, except for official weights, which keep
            fp32), ``fp32`` or ``bf16``.
        threshold: Decision threshold; None uses the checkpoint's (0.5 unless calibrated).
        patch: Patch selection (default seeded, deterministic) and any override of the
            checkpoint's patch size and candidate count.
        max_pixels: Images with more pixels are refused.
        uncertain_band: p_fake within this distance of the threshold gives ``uncertain``
            (reason ``near-threshold``); 0 turns the band off.
        allow_truncated: Score a file whose image data ends early (the decoder makes the rest up)
            instead of refusing it; its verdict is ``uncertain`` with the reason ``truncated``.
        backend: ``auto`` (ONNX Runtime on the CPU in fp32 when the model exports, else PyTorch),
            ``torch`` or ``onnxruntime``; see :mod:`ssp_detect.engine.backend`. ``model`` stays the
            PyTorch module either way (``ssp explain`` reads its internals).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        device: str = "auto",
        precision: str = "auto",
        threshold: float | None = None,
        patch: PatchOptions = PatchOptions(),
        max_pixels: int = DEFAULT_MAX_PIXELS,
        uncertain_band: float = DEFAULT_UNCERTAIN_BAND,
        allow_truncated: bool = False,
        backend: str = "auto",
    ) -> None:
        self.loaded = loaded
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device, official=loaded.source == "official")
        self.threshold = check_threshold(loaded.threshold if threshold is None else threshold)
        self.uncertain_band = check_band(uncertain_band)
        self.allow_truncated = allow_truncated
        self.preprocessor = Preprocessor.for_model(loaded.feed, patch)
        self.max_pixels = max_pixels
        loaded.model.eval()
        self.backend = resolve_backend(
            backend,
            loaded,
            device=self.device,
            precision=self.precision,
            input_size=self.preprocessor.size,
        )

    @functools.cached_property
    def model(self) -> torch.nn.Module:
        """The PyTorch module on the detector's device (what ``ssp explain`` draws; the torch backend
        runs it). Placed once, on first use, so that start-up does not pay for it when ONNX Runtime scores."""
        return place_model(self.loaded.model, self.device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, model_name: str | None = None, **options: Any) -> Detector:
        """Load weights (ours or official) and build a detector; options as in the constructor."""
        return cls(load_model(path, model_name=model_name), **options)

    @property
    def info(self) -> dict[str, Any]:
        """Model id, checkpoint hash and settings, for reports and the service."""
        return {
            "model": self.loaded.name,
            "weights_source": self.loaded.source,
            "checkpoint_sha256": self.loaded.sha256,
            "threshold": self.threshold,
            "temperature": self.loaded.temperature,
            "uncertain_band": self.uncertain_band,
            **self.preprocessor.settings(),
            "device": str(self.device),
            "precision": self.precision,
            "backend": self.backend.name,
        }

    def read(self, source: ImageSource, *, max_pixels: int | None = None) -> DecodedImage:
        """Any supported source -> its RGB uint8 pixels as displayed, and whether the decoder had to
        make part of them up (only with ``allow_truncated``); raises :class:`ImageDecodeError`."""
        if isinstance(source, Image.Image):
            return DecodedImage(to_rgb_array(source))
        if isinstance(source, np.ndarray):
            if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
                raise ImageDecodeError(
                    f"Array of shape {source.shape} and dtype {source.dtype} is not an RGB uint8 image (H, W, 3)."
                )
            return DecodedImage(source)
        return decode_image(source, max_pixels=max_pixels or self.max_pixels, allow_truncated=self.allow_truncated)

    def decode(self, source: ImageSource) -> np.ndarray:
        """Any supported source -> RGB uint8 (H, W, 3) as displayed; raises :class:`ImageDecodeError`."""
        return self.read(source).pixels

    def prepare(self, source: ImageSource) -> Prepared:
        """Decode and preprocess one image (CPU work, thread-safe)."""
        return self.preprocessor(self.decode(source))

    @torch.inference_mode()
    def score(self, prepared: Sequence[Prepared]) -> np.ndarray:
        """p_fake of preprocessed images, in one batch on the device, by the backend."""
        if not prepared:
            return np.zeros(0, dtype=np.float64)
        pixels = torch.from_numpy(np.stack([p.pixels for p in prepared]))
        x = model_input(pixels, self.device, self.loaded.feed.mean, self.loaded.feed.std)
        logits = self.backend(x)
        p_fake = torch.sigmoid(logits.float() / self.loaded.temperature).cpu().numpy().astype(np.float64)
        return check_finite(p_fake, f"checkpoint {self.loaded.sha256[:12]} ({self.loaded.name})")

    def detect_decoded(self, img: np.ndarray, source: ImageSource = "<image>") -> tuple[Prepared, Detection]:
        """Preprocess and score one decoded image: the model input and the verdict made from it, so
        a caller that shows the input (``ssp explain``) shows exactly what was scored."""
        prepared = self.preprocessor(img)
        return prepared, self.make_detection(source, prepared, float(self.score([prepared])[0]), None)

    def make_detection(
        self,
        source: ImageSource,
        prepared: Prepared | None,
        p: float | None,
        error: str | None,
        *,
        stability: Stability | None = None,
        reasons: Sequence[str] = (),
    ) -> Detection:
        """The verdict on one image from its model input and p_fake (or the error that stopped it)."""
        if prepared is None or p is None:
            return Detection(describe_source(source), None, None, self.threshold, error=error)
        known = [*prepared.input_reasons, *reasons, *([] if stability is None or stability.holds else ["unstable"])]
        label, why = decide(float(p), self.threshold, band=self.uncertain_band, reasons=known)
        return Detection(
            describe_source(source),
            float(p),
            label,
            self.threshold,
            prepared.box,
            prepared.score,
            prepared.searched_size,
            reasons=why,
            stability=stability,
        )

    def prepare_inputs(self, img: np.ndarray, *, stability: bool = False) -> list[Prepared]:
        """The model input of a decoded image, followed with ``stability`` by that of each of its
        common deliveries (:data:`~ssp_detect.stability.DELIVERIES`): all scored in one batch."""
        return [self.preprocessor(img), *((self.preprocessor(d) for d in delivered(img)) if stability else ())]

    def detection_from(
        self, source: ImageSource, inputs: Sequence[Prepared], p_fake: Sequence[float], *, truncated: bool = False
    ) -> Detection:
        """The verdict from :meth:`prepare_inputs`' inputs and their p_fake, with the stability check
        when the deliveries were scored too; ``truncated`` adds that reason (see :meth:`read`)."""
        check = Stability.of(p_fake[0], list(p_fake[1:]), self.threshold) if len(inputs) > 1 else None
        reasons = ("truncated",) if truncated else ()
        return self.make_detection(source, inputs[0], p_fake[0], None, stability=check, reasons=reasons)

    def _prepare_or_error(self, source: ImageSource, stability: bool) -> tuple[list[Prepared] | None, str | bool]:
        """The model inputs of one source and whether it was truncated, or None and the error."""
        try:
            decoded = self.read(source)
            return self.prepare_inputs(decoded.pixels, stability=stability), decoded.truncated
        except ImageDecodeError as exc:
            return None, str(exc)

    def predict_iter(
        self, sources: Iterable[ImageSource], *, batch_size: int = 32, workers: int = 2, stability: bool = False
    ) -> Iterator[Detection]:
        """Stream detections for any number of images, in input order, with bounded memory.

        Decoding and patch selection run in ``workers`` threads; the model sees batches of
        ``batch_size`` images (times 8 with ``stability``: each image with its seven deliveries).
        Unreadable images yield a Detection with ``error`` set.
        """
        if batch_size < 1:
            raise ScoreError(f"The batch size must be at least 1, not {batch_size}.")
        it = iter(sources)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            while chunk := list(itertools.islice(it, batch_size)):
                results = list(pool.map(lambda src: self._prepare_or_error(src, stability), chunk))
                probs = iter(self.score([prep for preps, _ in results if preps is not None for prep in preps]).tolist())
                for source, (preps, outcome) in zip(chunk, results, strict=False):
                    if preps is None:
                        yield self.make_detection(source, None, None, str(outcome))
                    else:
                        yield self.detection_from(source, preps, [next(probs) for _ in preps], truncated=bool(outcome))

    def predict(
        self, images: ImageSource | Sequence[ImageSource], *, batch_size: int = 32, stability: bool = False
    ) -> Detection | list[Detection]:
        """Detect one image (returns a Detection) or a list of images (returns a list).

        With ``stability`` each image is also scored after common deliveries (JPEG, WebP, resizing,
        a PNG round trip; see :mod:`ssp_detect.stability`), in the same batch, and a verdict that
        flips becomes ``uncertain`` with the reason ``unstable``.
        """
        if isinstance(images, (list, tuple)):
            return list(self.predict_iter(images, batch_size=batch_size, stability=stability))
        return next(self.predict_iter([images], batch_size=1, stability=stability))
