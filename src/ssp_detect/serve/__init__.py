"""HTTP service and web page: ``create_app(detector)`` for an ASGI app, ``run_server`` to serve it.

Modules: ``app`` (the routes and error handlers), ``service`` (decoding uploads within a memory
budget and scoring them), ``batcher`` (model batches across requests), ``limits`` (what requests
may ask), ``middleware`` (Host, origin, in-flight, body and security-header guards), ``protocol``
(the request-header deadline), ``schemas`` (the JSON bodies).
"""

from ssp_detect.serve.app import create_app, run_server, server_config
from ssp_detect.serve.batcher import DynamicBatcher
from ssp_detect.serve.limits import ServeLimits
from ssp_detect.serve.middleware import AccessPolicy
from ssp_detect.serve.service import DetectionService, MemoryBudget

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
