"""Detectors: registry, SSP and its variants, the ResNet-50 baseline, ESSP, checkpoint I/O."""

from ssp_detect.models.checkpoint import CheckpointError
from ssp_detect.models.loading import LoadedModel, load_model
from ssp_detect.models.registry import ModelSpec, create_model, get_spec, list_models, register_model

__all__ = ["CheckpointError", "LoadedModel", "ModelSpec", "create_model", "get_spec", "list_models", "load_model", "register_model"]
