"""The names and defaults that the command line offers, in a module that imports nothing.

``ssp --help`` and every ``ssp <command> --help`` build their ``choices`` and default texts from
these, so help needs neither torch nor numpy (it starts in a fraction of a second). Each constant
belongs to the library module named beside it, which imports it from here and uses it as its own:
the command line cannot offer what the library refuses. Only constants live here, no logic.
"""

from __future__ import annotations

# data.patch: how the simple patch is chosen.
MODES: tuple[str, ...] = ("random", "seeded", "exhaustive")
# data.layouts: folder layouts of labelled data.
LAYOUTS: tuple[str, ...] = ("auto", "genimage", "forensynths", "folders", "csv")
# engine.runtime: numeric precision, and where evaluation images are decoded (in the DataLoader
# workers, or on the model's device, see ssp_detect.engine.evaluate.evaluate_model).
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
DECODERS: tuple[str, ...] = ("workers", "device")
# engine.backend: what runs the model after patch selection.
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime")
# predict_io: output formats of ``ssp predict``.
FORMATS: tuple[str, ...] = ("table", "csv", "json", "jsonl")
# data.degradations: JPEG libraries, and the names of its PIL resampling filters (INTERPOLATIONS there).
JPEG_METHODS: tuple[str, ...] = ("pil", "cv2")
INTERPOLATION_NAMES: tuple[str, ...] = ("nearest", "bilinear", "bicubic", "lanczos", "box")
# engine.cross_eval: metrics a cross-evaluation matrix can show.
CROSS_EVAL_METRICS: tuple[str, ...] = ("acc", "auc", "ap", "real_acc", "fake_acc", "best_acc")
# engine.robustness: the sweeps as (name, axis title, degradation kind, strengths; None = no degradation).
SWEEP_TABLE: tuple[tuple[str, str, str, tuple[float | None, ...]], ...] = (
    ("jpeg", "JPEG quality", "jpeg", (None, 95, 90, 75, 50, 30)),
    ("blur", "Gaussian blur sigma", "blur", (0, 0.5, 1, 2, 3)),
    ("scale", "Rescaling factor", "scale", (0.5, 0.75, 1.0, 1.5)),
    ("webp", "WebP quality", "webp", (None, 90, 75, 50)),
)
# demo.build: the sizes of the offline demo benchmark offered on the command line (ssp data build-demo,
# ssp demo), keys of its SIZE_PRESETS; ``tiny`` is for tests.
DEMO_SIZES: tuple[str, ...] = ("small", "medium", "large")
# verdict: half-width of the band around the threshold in which a verdict is "uncertain", in p_fake.
# Measured on the demo benchmark's validation photos (docs/results.md, "uncertain verdicts").
DEFAULT_UNCERTAIN_BAND = 0.05
# models.export: the formats `ssp export --format` writes (safetensors: models/safetensors_io.py).
EXPORT_FORMATS: tuple[str, ...] = ("onnx", "safetensors")
# data.decode: the largest image decoded, in pixels; a larger one is refused from its header.
DEFAULT_MAX_PIXELS = 100_000_000
