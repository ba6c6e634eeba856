"""ssp-detect: AI-generated image detection from a single simple patch (SSP).

>>> from ssp_detect import Detector
>>> detector = Detector.from_checkpoint("runs/demo/best.pt")  # doctest: +SKIP
>>> detector.predict("photo.jpg").p_fake  # doctest: +SKIP
"""

from ssp_detect.detector import Detection, Detector

__version__ = "0.1.0"
__all__ = ["Detection", "Detector", "__version__"]
