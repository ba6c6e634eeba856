"""Evaluation input decoded on the model's device: JPEG files travel from the DataLoader workers as
their bytes, are decoded in one batch by torchvision (nvJPEG on CUDA, libjpeg-turbo on the CPU), and
their simple patches are chosen there in one batch (:mod:`ssp_detect.data.device_patch`).

Workers read each file with :func:`~ssp_detect.data.decode.read_device_jpeg`, so errors and the
pixel limit are those of :func:`~ssp_detect.data.decode.load_rgb`. An 8-bit YCbCr or greyscale JPEG
that ends with its end-of-image marker and whose data are all there travels as its bytes with its
EXIF orientation, applied after the device decode; anything else (PNG, WebP, CMYK JPEG, a JPEG cut
short or damaged, one with data after its end, ...) goes through ``load_rgb`` in the worker, as in
:class:`~ssp_detect.data.dataset.DetectionDataset`: its pixels travel, or its error. Whether a JPEG's
data are all there is checked on the CPU, before any device decoder sees it (libjpeg-turbo reads
all of the entropy-coded data at 1/8 scale, strict: about 45% of a full CPU decode for a baseline
JPEG, 85-95% for a progressive one; ``benchmarks/decode_check.py``), so a
JPEG cut short (with or without an end marker) is refused with ``load_rgb``'s
:class:`~ssp_detect.data.decode.TruncatedImageError`, whatever a GPU decoder would make of it. When
a batch holds a JPEG that torchvision cannot decode, each is decoded alone and ``load_rgb`` decodes
what torchvision refuses: a corrupt file becomes one error record with its one-sentence message,
never a substitute image.

Quiet: torchvision's decoders are called without their Python warnings (0.29 marks them deprecated
in favour of TorchCodec, a DeprecationWarning), and a JPEG that makes libjpeg warn at all, even
harmlessly (extraneous bytes before a marker), is decoded on the CPU instead: the libjpeg inside
torchvision would print the warning on the standard error, where no filter reaches.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ssp_detect.data.dataset import empty_batch, item_rng, split_errors
from ssp_detect.data.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, load_rgb, read_device_jpeg
from ssp_detect.data.device_patch import chw_tensor, select_patches_on_device
from ssp_detect.data.layouts import Sample
from ssp_detect.data.preprocess import Preprocessor, patch_texture_level
from ssp_detect.errors import UsageError

log = logging.getLogger(__name__)


def orient_chw(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Turn a (C, H, W) tensor as EXIF ``orientation`` (1-8) says; the tensor form of
    :func:`~ssp_detect.data.decode.apply_orientation` (1 and unknown values: unchanged)."""
    turned = {
        2: lambda t: t.flip(2),
        3: lambda t: t.flip(1, 2),
        4: lambda t: t.flip(1),
        5: lambda t: t.transpose(1, 2),
        6: lambda t: t.rot90(-1, (1, 2)),
        7: lambda t: t.flip(1, 2).transpose(1, 2),
        8: lambda t: t.rot90(1, (1, 2)),
    }.get(orientation)
    return image if turned is None else turned(image).contiguous()


class EncodedImageDataset(Dataset):
    """Labelled image files as JPEG bytes or decoded pixels, for :class:`DeviceDecodedBatches`.

    Items are ``{"index", "label", "image", "orientation"}``, ``image`` uint8 and either 1-D (the
    bytes of a JPEG file, see the module docstring; ``orientation`` its EXIF orientation) or
    (3, H, W) (the pixels of any other image, as displayed; ``orientation`` 1), or
    ``{"index", "error"}`` for a file that cannot be read.

    Args:
        samples: The images and labels.
        max_pixels: Decompression-bomb limit.
    """

    def __init__(self, samples: Sequence[Sample], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.samples = list(samples)
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.samples[index].path
        try:
            jpeg = read_device_jpeg(path, max_pixels=self.max_pixels)
            if jpeg is not None:
                image, orientation = torch.frombuffer(bytearray(jpeg.data), dtype=torch.uint8), jpeg.orientation
            else:
                image, orientation = chw_tensor(load_rgb(path, max_pixels=self.max_pixels)), 1
        except ImageDecodeError as exc:
            return {"index": index, "error": str(exc)}
        return {"index": index, "label": self.samples[index].label, "image": image, "orientation": orientation}


def _decode_quietly(data: torch.Tensor | list[torch.Tensor], device: torch.device) -> Any:
    """torchvision's ``decode_jpeg`` without the warnings of torchvision's image module (its
    deprecation notice; the files were checked on the CPU before, see the module docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\.io")
        return decode_jpeg(data, device=device)


def collate_encoded(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Keep the good items' images as a list (their sizes differ) with their ``orientation`` list and
    ``label`` and ``index`` tensors; keep the failed ones as ``errors`` [(index, message)]."""
    good, errors = split_errors(items)
    return {
        "image": [it["image"] for it in good],
        "orientation": [it.get("orientation", 1) for it in good],
        "label": torch.tensor([it["label"] for it in good], dtype=torch.float32),
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "errors": errors,
    }


def decode_jpeg(data: torch.Tensor | list[torch.Tensor], *, device: torch.device) -> Any:
    """torchvision's ``decode_jpeg`` to RGB, imported on first use: importing torchvision imports
    ``torchvision.models``, its detection ops and ``torch._dynamo`` (about 1.5 s on 2 cores), which
    ``ssp test`` and ``ssp train`` do not need unless images are decoded on the device."""
    from torchvision.io import ImageReadMode
    from torchvision.io import decode_jpeg as torchvision_decode_jpeg

    return torchvision_decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def decode_jpegs(
    data: Sequence[torch.Tensor],
    paths: Sequence[str],
    device: torch.device,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    orientations: Sequence[int] | None = None,
) -> list[torch.Tensor | ImageDecodeError]:
    """Decode JPEG files' bytes to RGB uint8 (3, H, W) tensors on ``device``, as displayed.

    All in one torchvision call when it can; otherwise each alone, :func:`load_rgb` (on the CPU)
    decoding what torchvision refuses, and a file neither can read giving its
    :class:`ImageDecodeError` in place of pixels.

    Args:
        data: The files' bytes, uint8 1-D tensors on the CPU.
        paths: The files, for the CPU fallback and the error messages.
        device: Where to decode (nvJPEG on CUDA).
        max_pixels: Decompression-bomb limit of the CPU fallback.
        orientations: The files' EXIF orientations (:func:`read_device_jpeg`); None: all 1.
    """
    if not data:
        return []
    turns = list(orientations) if orientations is not None else [1] * len(data)
    try:
        batch = _decode_quietly(list(data), device)
        return [orient_chw(im, o) for im, o in zip(batch, turns, strict=True)]
    except RuntimeError as exc:
        log.debug("batched JPEG decoding failed (%s); decoding the %d files one by one", exc, len(data))
    decoded: list[torch.Tensor | ImageDecodeError] = []
    for one, path, orientation in zip(data, paths, turns, strict=True):
        try:
            decoded.append(orient_chw(_decode_quietly(one, device), orientation))
        except RuntimeError:
            try:
                decoded.append(chw_tensor(load_rgb(path, max_pixels=max_pixels)).to(device))
            except ImageDecodeError as exc:
                decoded.append(exc)
    return decoded


class DeviceDecodedBatches:
    """The batches of a DataLoader over :class:`EncodedImageDataset`, decoded and patch-selected on
    ``device``, in the form :func:`~ssp_detect.data.dataset.collate` gives them (``pixels`` uint8
    (B, 3, P, P) on ``device``; ``label``, ``index``, ``box``, ``score`` on the CPU; ``errors``),
    ready for :func:`~ssp_detect.engine.evaluate.predict_loader`.

    ``random`` patch mode draws each image's corners from the generator
    :class:`~ssp_detect.data.dataset.DetectionDataset` gives it at epoch 0.

    Args:
        loader: A loader over an :class:`EncodedImageDataset` with :func:`collate_encoded`.
        preprocessor: The patch settings (patch models only).
        device: Where to decode and choose the patches.

    Raises:
        UsageError: ``preprocessor`` is for a whole-image or crop model.
    """

    def __init__(self, loader: DataLoader, preprocessor: Preprocessor, device: torch.device) -> None:
        if preprocessor.input != "patch":
            fed = "the whole image resized" if preprocessor.input == "image" else "a crop"
            raise UsageError(
                f"Device decoding is for patch models; this model is fed {fed}, so decode in the workers "
                "(--decode workers)."
            )
        self.loader = loader
        self.dataset: EncodedImageDataset = loader.dataset
        self.preprocessor = preprocessor
        self.device = device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for encoded in self.loader:
            yield self.prepare(encoded)

    def prepare(self, encoded: dict[str, Any]) -> dict[str, Any]:
        """One batch of :func:`collate_encoded` -> one batch of model input, unreadable files in ``errors``."""
        images, kept, errors = self._decode(encoded)
        if not images:
            return empty_batch(errors)
        pre = self.preprocessor
        index = encoded["index"][kept]
        rngs = [item_rng(pre.seed, 0, int(i)) for i in index] if pre.mode == "random" else None
        chosen = select_patches_on_device(
            images, pre.patch_size, pre.mode, num_candidates=pre.num_candidates, seed=pre.seed, rngs=rngs
        )
        texture = torch.tensor(
            [patch_texture_level(s, pre.patch_size) for s in chosen.scores.tolist()], dtype=torch.float64
        )
        return {
            "pixels": chosen.patches,
            "label": encoded["label"][kept],
            "index": index,
            "box": chosen.boxes,
            "score": chosen.scores,
            "texture": texture,
            "upscaled": torch.tensor(chosen.resized, dtype=torch.bool),
            "truncated": torch.zeros(len(index), dtype=torch.bool),
            "errors": errors,
        }

    def _decode(self, encoded: dict[str, Any]) -> tuple[list[torch.Tensor], list[int], list[tuple[int, str]]]:
        """The batch's images on the device, their positions in the batch, and all its errors."""
        images: list[torch.Tensor | None] = [
            None if im.dim() == 1 else im.to(self.device, non_blocking=True) for im in encoded["image"]
        ]
        jpegs = [i for i, im in enumerate(encoded["image"]) if im.dim() == 1]
        paths = [self.dataset.samples[int(encoded["index"][i])].path for i in jpegs]
        errors = list(encoded["errors"])
        turns = [encoded["orientation"][i] for i in jpegs] if "orientation" in encoded else None
        decoded = decode_jpegs(
            [encoded["image"][i] for i in jpegs],
            paths,
            self.device,
            max_pixels=self.dataset.max_pixels,
            orientations=turns,
        )
        for i, result in zip(jpegs, decoded, strict=True):
            if isinstance(result, ImageDecodeError):
                errors.append((int(encoded["index"][i]), str(result)))
            else:
                images[i] = result
        kept = [i for i, im in enumerate(images) if im is not None]
        return [images[i] for i in kept], kept, errors
