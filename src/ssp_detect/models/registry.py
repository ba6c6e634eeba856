"""One registry of detectors, built by name.

Each entry pairs a builder with the preprocessing its weights need (what reaches the network: the
simple patch or the whole image, sizes, normalisation), so weights and transforms never drift
apart. ``create_model(name)`` builds; ``get_spec(name)`` says how to feed it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """How a registered model is built and fed.

    Attributes:
        name: Registry name.
        builder: Function returning a randomly initialised ``nn.Module`` (logit of *fake*).
        input: ``patch`` (the simplest patch of the image), ``image`` (the whole image resized)
            or ``crop`` (the centre ``image_size`` square at native resolution).
        patch_size: Side of the simple patch, for ``patch`` models.
        image_size: Side the whole image is resized to, for ``image`` models; side of the crop,
            for ``crop`` models.
        mean: Per-channel normalisation mean, on [0, 1] pixels.
        std: Per-channel normalisation std.
        paper: True when this is a model of the SSP paper (reproduces official checkpoints).
        description: One line for ``ssp models``.
    """

    name: str
    builder: Callable[[], nn.Module] = field(repr=False)
    input: Literal["patch", "image", "crop"] = "patch"
    patch_size: int = 32
    image_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    paper: bool = False
    description: str = ""

    def preprocess_config(self) -> dict[str, Any]:
        """The preprocessing fields, as plain types (stored in checkpoints)."""
        d = asdict(self)
        d.pop("builder")
        d.pop("description")
        return d


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry; a duplicate name is an error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"Model {spec.name!r} is already registered.")
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model.

    Raises:
        KeyError: with a sentence listing the known names.
    """
    _load_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"Unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]


def create_model(name: str, *, backbone_weights: str | Path | None = None) -> nn.Module:
    """Build a registered model with random weights, or a local backbone weights file.

    Args:
        name: A registered name (``ssp``, ``resnet50-baseline``, ...).
        backbone_weights: A local torchvision ResNet state dict for the backbone. Nothing is ever
            downloaded.
    """
    from ssp_detect.models.backbone import load_backbone_weights
    from ssp_detect.models.checkpoint import CheckpointError

    model = get_spec(name).builder()
    if backbone_weights is not None:
        backbone = getattr(model, "disc", None)
        if backbone is None:
            raise CheckpointError(f"Model {name!r} has no ResNet backbone, so backbone weights ({backbone_weights}) do not apply to it.")
        load_backbone_weights(backbone, backbone_weights)
    return model


def _load_builtin() -> None:
    # Importing the modules registers their models (once).
    from ssp_detect.models import baseline, cooccurrence, essp, ssp, strata  # noqa: F401
