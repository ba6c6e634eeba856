"""One registry of detectors, built by name.

Each entry pairs a builder with the :class:`~ssp_detect.data.preprocess.InputSpec` its weights need
(what reaches the network: the simple patch, the whole image or a crop, sizes, normalisation), so
weights and transforms never drift apart. ``create_model(name)`` builds a model to train: random
weights, or, for a model whose spec names :class:`BackboneWeights`, its backbone's pretrained weights
from an installed package; ``empty_model(name)`` builds the structure alone, for weights that a
checkpoint provides (no random initialisation, no pretrained weights read);
``get_spec(name)`` says how to feed it. The model modules register themselves when
:mod:`ssp_detect.models` is imported; this module imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ssp_detect.data.preprocess import FedBy, InputSpec
from ssp_detect.errors import SSPError


@dataclass(frozen=True)
class BackboneWeights:
    """Pretrained weights that a model's backbone starts from when it is created for training.

    They come from a local file only, found in an installed package: nothing is ever downloaded.

    Attributes:
        description: What they are, for logs and model cards.
        locate: Returns the file's path; raises a CheckpointError that says what to install when
            the file is missing.
    """

    description: str
    locate: Callable[[], Path] = field(repr=False)


@dataclass(frozen=True)
class ModelSpec(FedBy):
    """How a registered model is built and fed.

    Attributes:
        name: Registry name.
        builder: Function returning a randomly initialised ``nn.Module`` (logit of *fake*).
        feed: How the model is fed (input kind, sizes, normalisation).
        paper: True when this is a model of the SSP paper (reproduces official checkpoints).
        description: One line for ``ssp models``.
        pretrained: The weights its backbone (``disc``) starts from in :func:`create_model`; None:
            random weights.
        onnxruntime_when_auto: Whether ``--backend auto`` runs it on ONNX Runtime on the CPU; False for
            a model that PyTorch scores faster (measured with ``benchmarks.backends`` and whole
            ``ssp predict`` runs); ``--backend onnxruntime`` still runs it there.
    """

    name: str
    builder: Callable[[], nn.Module] = field(repr=False)
    feed: InputSpec = InputSpec()
    paper: bool = False
    description: str = ""
    pretrained: BackboneWeights | None = None
    onnxruntime_when_auto: bool = True


class UnknownModelError(SSPError, KeyError):
    """A model name that is not registered; a KeyError too, as :func:`get_spec` raised before."""


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry; a duplicate name is an error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"Model {spec.name!r} is already registered.")
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model.

    Raises:
        UnknownModelError: with a sentence listing the known names (also a KeyError).
    """
    if name not in _REGISTRY:
        raise UnknownModelError(f"Unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]


def create_model(name: str, *, backbone_weights: str | Path | None = None, pretrained: bool = True) -> nn.Module:
    """Build a registered model to train: random weights, the backbone's from a local file where given.

    Args:
        name: A registered name (``ssp``, ``resnet50-baseline``, ...).
        backbone_weights: A local state dict for the backbone (a torchvision ResNet's for the ResNet
            models, an EfficientNet-Lite0's for ``ssp-effnet``); its classifier is not copied.
            Nothing is ever downloaded.
        pretrained: Without ``backbone_weights``, start the backbone from the spec's
            :class:`BackboneWeights` where it names some (``ssp-effnet``: ImageNet weights from an
            installed package); False keeps random weights.

    Raises:
        CheckpointError: the weights file is missing or does not fit, in one sentence.
    """
    from ssp_detect.models.checkpoint import CheckpointError, load_backbone_weights

    spec = get_spec(name)
    model = spec.builder()
    if backbone_weights is None and pretrained and spec.pretrained is not None:
        backbone_weights = spec.pretrained.locate()
    if backbone_weights is not None:
        backbone = getattr(model, "disc", None)
        if backbone is None:
            raise CheckpointError(
                f"Model {name!r} has no ResNet backbone, so backbone weights ({backbone_weights}) do not apply to it."
            )
        load_backbone_weights(backbone, backbone_weights)
    return model


def empty_model(name: str) -> nn.Module:
    """A registered model's structure without weights: every parameter and buffer on the ``meta``
    device (no memory, no random initialisation). For loading a complete state dict with
    ``load_state_dict(state, assign=True)``, which puts the checkpoint's own tensors in place
    (:func:`~ssp_detect.models.loading.load_model`): initialising a ResNet-50 at random first costs
    about half a second on 2 CPU cores, all of it overwritten.
    """
    with torch.device("meta"):
        return get_spec(name).builder()
