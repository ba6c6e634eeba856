"""HTTP service and web page: ``create_app(detector)`` for an ASGI app, ``run_server`` to serve it."""

from ssp_detect.serve.app import DetectionService, DynamicBatcher, ServeLimits, create_app, run_server

__all__ = ["DetectionService", "DynamicBatcher", "ServeLimits", "create_app", "run_server"]
