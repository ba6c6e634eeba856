"""Offline demo benchmark: real photo crops from installed packages versus Real-ESRGAN fakes.

``build_demo(out_dir, size="small")`` writes a GenImage-style tree with the subsets in
:data:`DEMO_SUBSETS`, a format-matched validation split and a provenance manifest; see
:mod:`ssp_detect.data.demo.build`.
"""

from ssp_detect.data.demo.build import DEMO_SUBSETS, SIZE_PRESETS, build_demo
from ssp_detect.data.demo.rrdbnet import DemoBuildError

__all__ = ["DEMO_SUBSETS", "SIZE_PRESETS", "DemoBuildError", "build_demo"]
