"""The Python API for detection: ``Detector.from_checkpoint(path).predict(images)``.

The ``ssp predict`` command and the HTTP service both use this object, so they cannot diverge.
Data flow per image: source -> RGB uint8 -> simple patch (or resized image) -> uint8 batch ->
normalised on the device -> logit -> p_fake -> label at the threshold.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from ssp_detect.data.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, load_rgb, to_rgb_array
from ssp_detect.data.preprocess import PatchOptions, Prepared, Preprocessor
from ssp_detect.engine.runtime import autocast, model_input, place_model, resolve_device, resolve_precision
from ssp_detect.models.loading import LoadedModel, load_model

log = logging.getLogger(__name__)

ImageSource = Union[str, Path, bytes, np.ndarray, Image.Image]


@dataclass(frozen=True)
class Detection:
    """The verdict on one image: the one result record of the Python API, ``ssp predict``'s rows and
    the service's JSON.

    Attributes:
        source: The path, or a description of an in-memory image.
        p_fake: Probability that the image is AI-generated (None when it could not be scored).
        label: ``fake`` when p_fake >= threshold, else ``real`` (None on error).
        threshold: The decision threshold used.
        box: The simple patch (x, y, w, h) in the searched image's pixels; for whole-image models
            the full image.
        texture_score: The patch's texture diversity (-1 for whole-image models).
        searched_size: (width, height) of the image the box refers to (256x256 when an image
            smaller than the patch was resized first, as in the official code).
        error: Why the image could not be scored, in one sentence; None on success.
    """

    source: str
    p_fake: float | None
    label: str | None
    threshold: float
    box: tuple[int, int, int, int] | None = None
    texture_score: int | None = None
    searched_size: tuple[int, int] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain types, for JSON."""
        d = asdict(self)
        d["box"] = list(self.box) if self.box else None
        d["searched_size"] = list(self.searched_size) if self.searched_size else None
        return d

    def to_row(self) -> dict[str, Any]:
        """One flat row (the box as x, y, w, h; the source as ``path``), for tables and CSV."""
        x, y, w, h = self.box if self.box else (None, None, None, None)
        return {"path": self.source, "p_fake": self.p_fake, "label": self.label, "threshold": self.threshold,
                "x": x, "y": y, "w": w, "h": h, "texture_score": self.texture_score, "error": self.error}


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
        precision: ``auto`` (bf16 on CUDA, fp32 on CPU), ``fp32`` or ``bf16``.
        threshold: Decision threshold; None uses the checkpoint's (0.5 unless calibrated).
        patch: Patch selection (default seeded, deterministic) and any override of the
            checkpoint's patch size and candidate count.
        max_pixels: Images with more pixels are refused.
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
    ) -> None:
        self.loaded = loaded
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.threshold = loaded.threshold if threshold is None else float(threshold)
        self.preprocessor = Preprocessor.for_model(loaded.feed, patch)
        self.max_pixels = max_pixels
        self.model = place_model(loaded.model, self.device).eval()

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
            **self.preprocessor.settings(),
            "device": str(self.device),
            "precision": self.precision,
        }

    def decode(self, source: ImageSource) -> np.ndarray:
        """Any supported source -> RGB uint8 (H, W, 3); raises :class:`ImageDecodeError`."""
        if isinstance(source, Image.Image):
            return to_rgb_array(source)
        if isinstance(source, np.ndarray):
            if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
                raise ImageDecodeError(f"Array of shape {source.shape} and dtype {source.dtype} is not an RGB uint8 image (H, W, 3).")
            return source
        return load_rgb(source, max_pixels=self.max_pixels)

    def prepare(self, source: ImageSource) -> Prepared:
        """Decode and preprocess one image (CPU work, thread-safe)."""
        return self.preprocessor(self.decode(source))

    @torch.inference_mode()
    def score(self, prepared: Sequence[Prepared]) -> np.ndarray:
        """p_fake of preprocessed images, in one batch on the device."""
        if not prepared:
            return np.zeros(0, dtype=np.float64)
        pixels = torch.from_numpy(np.stack([p.pixels for p in prepared]))
        x = model_input(pixels, self.device, self.loaded.feed.mean, self.loaded.feed.std)
        with autocast(self.device, self.precision):
            logits = self.model(x)
        return torch.sigmoid(logits.float()).cpu().numpy().astype(np.float64)

    def detect_decoded(self, img: np.ndarray, source: ImageSource = "<image>") -> tuple[Prepared, Detection]:
        """Preprocess and score one decoded image: the model input and the verdict made from it, so
        a caller that shows the input (``ssp explain``) shows exactly what was scored."""
        prepared = self.preprocessor(img)
        return prepared, self.make_detection(source, prepared, float(self.score([prepared])[0]), None)

    def make_detection(self, source: ImageSource, prepared: Prepared | None, p: float | None, error: str | None) -> Detection:
        if prepared is None or p is None:
            return Detection(describe_source(source), None, None, self.threshold, error=error)
        label = "fake" if p >= self.threshold else "real"
        return Detection(describe_source(source), float(p), label, self.threshold, prepared.box, prepared.score, prepared.searched_size)

    def _prepare_or_error(self, source: ImageSource) -> tuple[Prepared | None, str | None]:
        try:
            return self.prepare(source), None
        except ImageDecodeError as exc:
            return None, str(exc)

    def predict_iter(self, sources: Iterable[ImageSource], *, batch_size: int = 32, workers: int = 2) -> Iterator[Detection]:
        """Stream detections for any number of images, in input order, with bounded memory.

        Decoding and patch selection run in ``workers`` threads; the model sees batches of
        ``batch_size``. Unreadable images yield a Detection with ``error`` set.
        """
        it = iter(sources)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            while chunk := list(itertools.islice(it, batch_size)):
                results = list(pool.map(self._prepare_or_error, chunk))
                good = [i for i, (prep, _) in enumerate(results) if prep is not None]
                probs = self.score([results[i][0] for i in good])
                p_by_index = dict(zip(good, probs.tolist()))
                for i, source in enumerate(chunk):
                    prep, err = results[i]
                    yield self.make_detection(source, prep, p_by_index.get(i), err)

    def predict(self, images: ImageSource | Sequence[ImageSource], *, batch_size: int = 32) -> Detection | list[Detection]:
        """Detect one image (returns a Detection) or a list of images (returns a list)."""
        if isinstance(images, (list, tuple)):
            return list(self.predict_iter(images, batch_size=batch_size))
        return next(self.predict_iter([images], batch_size=1))
