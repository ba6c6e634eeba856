"""ssp-detect: AI-generated image detection from a single simple patch (SSP).

>>> from ssp_detect import Detector
>>> detector = Detector.from_checkpoint("runs/demo/best.pt")  # doctest: +SKIP
>>> detector.predict("photo.jpg").p_fake  # doctest: +SKIP

``Detector`` and ``Detection`` are imported on first use: they need torch, and ``ssp --help`` does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ssp_detect.detector import Detection, Detector

__version__ = "0.1.0"
__all__ = ["Detection", "Detector", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Detection", "Detector"):
        from ssp_detect import detector

        return getattr(detector, name)
    raise AttributeError(f"module 'ssp_detect' has no attribute {name!r}")
