"""The offline demo: its benchmark and ``ssp demo``, the whole pipeline run on it.

``build_demo(out_dir, size="small")`` writes a GenImage-style tree of real photo crops from installed
packages versus fakes of the same crops, one subset per generator in :data:`DEMO_SUBSETS` (Real-ESRGAN
x4plus for training; Real-ESRGAN anime, waifu2x, SPAN, Real-CUGAN and an autoencoder trained during the
build held out), a format-matched validation split and a provenance manifest; see
:mod:`ssp_detect.demo.build` (photos in :mod:`~ssp_detect.demo.sources`, the generator ports in
:mod:`~ssp_detect.demo.rrdbnet`, :mod:`~ssp_detect.demo.waifu2x`, :mod:`~ssp_detect.demo.span` and
:mod:`~ssp_detect.demo.realcugan`, the ncnn file reader in :mod:`~ssp_detect.demo.ncnn`, the
autoencoder in :mod:`~ssp_detect.demo.autoencoder`).
``run_demo(out, data)`` builds or reuses it, trains, tests and writes a report folder; see
:mod:`ssp_detect.demo.pipeline`.
"""

from typing import Any

from ssp_detect.demo.build import DEMO_SUBSETS, SIZE_PRESETS, build_demo
from ssp_detect.demo.errors import DemoBuildError

__all__ = ["DEMO_SUBSETS", "SIZE_PRESETS", "DemoBuildError", "build_demo", "run_demo"]


def __getattr__(name: str) -> Any:
    """``run_demo`` is imported when first asked for: it brings the whole engine (training, scikit-learn),
    which ``ssp --help`` and the benchmark builder do not need."""
    if name == "run_demo":
        from ssp_detect.demo.pipeline import run_demo

        return run_demo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
