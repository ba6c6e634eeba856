"""HTTP service and web page: ``create_app(detector)`` for an ASGI app, ``run_server`` to serve it.

Modules: ``app`` (the routes and error handlers), ``service`` (decoding uploads and scoring them),
``batcher`` (model batches across requests), ``limits`` (what a request may ask), ``schemas``
(the JSON bodies).
"""

from ssp_detect.serve.app import create_app, run_server
from ssp_detect.serve.batcher import DynamicBatcher
from ssp_detect.serve.limits import ServeLimits
from ssp_detect.serve.service import DetectionService

__all__ = ["DetectionService", "DynamicBatcher", "ServeLimits", "create_app", "run_server"]
