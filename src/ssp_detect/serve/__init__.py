"""HTTP service and web page: ``create_app(detector)`` for an ASGI app, ``run_server`` to serve it.

Modules: ``app`` (the routes and error handlers), ``service`` (decoding uploads within a memory
budget and scoring them), ``batcher`` (model batches across requests), ``limits`` (what requests
may ask), ``middleware`` (Host, origin, in-flight, body and security-header guards), ``protocol``
(the request-header deadline), ``schemas`` (the JSON bodies).

The names below are imported on first use, so that ``ssp serve --help`` can read the defaults of
``limits.ServeLimits`` without importing FastAPI, uvicorn or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ssp_detect.serve.app import create_app, run_server, server_config
    from ssp_detect.serve.batcher import DynamicBatcher
    from ssp_detect.serve.limits import ServeLimits
    from ssp_detect.serve.middleware import AccessPolicy
    from ssp_detect.serve.service import DetectionService, MemoryBudget

_HOMES = {
    "AccessPolicy": "middleware",
    "DetectionService": "service",
    "DynamicBatcher": "batcher",
    "MemoryBudget": "service",
    "ServeLimits": "limits",
    "create_app": "app",
    "run_server": "app",
    "server_config": "app",
}
__all__ = [
    "AccessPolicy",
    "DetectionService",
    "DynamicBatcher",
    "MemoryBudget",
    "ServeLimits",
    "create_app",
    "run_server",
    "server_config",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"ssp_detect.serve.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'ssp_detect.serve' has no attribute {name!r}")
