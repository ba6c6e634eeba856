"""Detectors: registry, SSP and its variants, the ResNet-50 baseline, ESSP, checkpoint I/O.

Importing this package registers the built-in models (each model module registers its own).
"""

from ssp_detect.models import baseline, cooccurrence, essp, ssp, strata  # noqa: F401  (registers the models)
from ssp_detect.models.checkpoint import CheckpointError
from ssp_detect.models.loading import LoadedModel, load_model
from ssp_detect.models.registry import ModelSpec, create_model, get_spec, list_models, register_model

__all__ = [
    "CheckpointError",
    "LoadedModel",
    "ModelSpec",
    "create_model",
    "get_spec",
    "list_models",
    "load_model",
    "register_model",
]
