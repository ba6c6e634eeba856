"""Plain helpers shared by the tests: tiny images, GenImage-layout trees, small checkpoints, short fits.

Import them as ``from tests.helpers import ...``; the pytest fixtures stay in ``conftest.py``.
"""

from __future__ import annotations

import importlib.util
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssp_detect.demo.build import PORTS
from ssp_detect.models.checkpoint import save_checkpoint
from ssp_detect.models.registry import create_model, get_spec

FIXTURES = Path(__file__).parent / "fixtures"

# Found, not imported: each package's own import needs its ncnn/Vulkan runtime, which the demo does not use.
MISSING_GENERATOR_PACKAGES = [p for p in PORTS if importlib.util.find_spec(p.replace("-", "_")) is None]
needs_generators = pytest.mark.skipif(
    bool(MISSING_GENERATOR_PACKAGES),
    reason=f"the demo's generator weights ship in {', '.join(MISSING_GENERATOR_PACKAGES)}, not installed here "
    "(scripts/install.sh installs them)",
)


def fixture_rgb(name: str) -> np.ndarray:
    """The RGB uint8 pixels of ``tests/fixtures/<name>``."""
    return np.asarray(Image.open(FIXTURES / name).convert("RGB"))


def reference_difference(output: np.ndarray, reference: str, image: np.ndarray, scale: int) -> np.ndarray:
    """|output - the reference fixture| per value, once both are checked to be ``image`` upscaled ``scale`` times."""
    expected = fixture_rgb(reference).astype(np.int16)
    assert output.shape == expected.shape == (scale * image.shape[0], scale * image.shape[1], 3)
    return np.abs(output.astype(np.int16) - expected)


def assert_deterministic_super_resolution(
    upscaled: tuple[np.ndarray, np.ndarray], image: np.ndarray, scale: int
) -> None:
    """Two upscales of ``image`` by ``scale`` are the same uint8 array, close to ``image`` when
    downscaled back (a super-resolution, not noise) and not a pixel repetition."""
    first, second = upscaled
    assert first.dtype == np.uint8 and first.shape == (scale * image.shape[0], scale * image.shape[1], 3)
    np.testing.assert_array_equal(first, second)
    size = (image.shape[1], image.shape[0])
    back = np.asarray(Image.fromarray(first).resize(size, Image.Resampling.BOX)).astype(int)
    assert np.abs(back - image.astype(int)).mean() < 4
    repeated = np.kron(image, np.ones((scale, scale, 1), dtype=np.uint8))
    assert np.abs(first.astype(int) - repeated).mean() > 0.5


def noisy_image(rng: np.random.Generator, size: tuple[int, int] = (64, 80), noise: float = 8.0) -> np.ndarray:
    """A smooth gradient plus Gaussian noise of the given strength, RGB uint8 (H, W, 3)."""
    h, w = size
    base = np.linspace(40, 200, w)[None, :, None] + np.linspace(0, 30, h)[:, None, None]
    img = base + rng.normal(0, noise, (h, w, 3)) if noise else base + np.zeros((h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def numpy_seeded_corners(img: np.ndarray, seed: int, patch_size: int, n: int) -> np.ndarray:
    """Seeded mode's candidate corners by their definition, with numpy's own generator: a CRC of
    every 8th pixel, then ``default_rng([seed, crc, H, W])`` draws the y's, then the x's."""
    h, w = img.shape[:2]
    rng = np.random.default_rng([seed, zlib.crc32(np.ascontiguousarray(img[::8, ::8]).data), h, w])
    ys = rng.integers(0, h - patch_size + 1, size=n)
    return np.stack([ys, rng.integers(0, w - patch_size + 1, size=n)], axis=1)


def write_image(path: Path, img: np.ndarray) -> Path:
    """Save an RGB array to path (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def make_genimage_tree(root: Path, subsets=("sdv4", "adm"), n: int = 6, seed: int = 0, splits=("train", "val")) -> Path:
    """A GenImage-layout tree where real images are noisy and fake images are smooth.

    Folder names are the official long names (``imagenet_ai_0419_sdv4``...).
    """
    from ssp_detect.data.layouts import GENIMAGE_SUBSETS

    rng = np.random.default_rng(seed)
    for subset in subsets:
        folder = GENIMAGE_SUBSETS.get(subset, subset)
        for split in splits:
            for i in range(n):
                write_image(root / folder / split / "nature" / f"r{i}.png", noisy_image(rng, noise=12.0))
                write_image(root / folder / split / "ai" / f"f{i}.png", noisy_image(rng, noise=0.0))
    return root


def make_checkpoint(path: Path, model: str = "ssp-lite", threshold: float = 0.5, seed: int = 0) -> Path:
    """Save a randomly initialised model as an ssp-detect checkpoint."""
    torch.manual_seed(seed)
    net = create_model(model)
    save_checkpoint(
        path,
        {
            "model": model,
            "state_dict": net.state_dict(),
            "threshold": threshold,
            "preprocess": get_spec(model).feed.to_dict(),
        },
    )
    return path


def _untrained(norm: torch.nn.BatchNorm2d) -> bool:
    """True while a BatchNorm layer holds its initial running statistics (mean 0, variance 1)."""
    return bool((norm.running_mean == 0).all() and (norm.running_var == 1).all())


def trained_like_checkpoint(path, name: str, seed: int = 0, **extra) -> str:
    """A checkpoint of ``name`` whose every weight is random, heads included (a zero head would make
    every p_fake 0.5 and every parity test pass), with BatchNorm statistics away from 0 and 1.

    BatchNorm layers that start from pretrained weights (``ssp-effnet``'s ImageNet backbone) keep the
    statistics that came with them: random ones would not fit the weights' scales (in ``ssp-effnet``
    they blow activations up to hundreds, and PyTorch's own float32 output then differs from float64
    by 1e-3)."""
    torch.manual_seed(seed)
    net = create_model(name)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Linear) and module.out_features == 1:
                module.weight.normal_(0, 3.0 / module.in_features**0.5)
            if isinstance(module, torch.nn.BatchNorm2d) and _untrained(module):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    save_checkpoint(
        path, {"model": name, "state_dict": net.state_dict(), "preprocess": get_spec(name).feed.to_dict(), **extra}
    )
    return str(path)


def train_test_predict(tmp_path: Path, model: str, lr: str) -> tuple[dict, str, list[dict]]:
    """Train ``model`` from the CLI on a small noisy-real / smooth-fake tree (3 epochs), then
    ``ssp test`` and ``ssp predict`` its best.pt; returns results.json, results.md and the
    predicted rows (one per image)."""
    import json

    from ssp_detect.cli import main

    tree = make_genimage_tree(tmp_path / "data", subsets=("sdv4",), n=12)
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(tree),
                "--model",
                model,
                "--batch-size",
                "8",
                "--epochs",
                "3",
                "--lr",
                lr,
                "--workers",
                "0",
                "--train-eval-samples",
                "8",
                "--val-fraction",
                "0.2",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "test",
                "--weights",
                str(out / "best.pt"),
                "--data",
                str(tree),
                "--workers",
                "0",
                "--no-progress",
                "--out",
                str(tmp_path / "t"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "predict",
                str(tree),
                "--recursive",
                "--weights",
                str(out / "best.pt"),
                "--format",
                "jsonl",
                "--output",
                str(tmp_path / "p.jsonl"),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    return json.loads((tmp_path / "t" / "results.json").read_text()), (tmp_path / "t" / "results.md").read_text(), rows


def fit_full_batch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float = 1e-2) -> float:
    """Adam on BCE-with-logits over one fixed batch for ``steps`` steps; returns the last loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        optimizer.step()
    return loss.item()


class Counting(torch.nn.Module):
    """A model with an op that ONNX lacks (bincount): it does not export."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(256, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = x.clamp(0, 255).round().to(torch.int64) + 256 * torch.arange(x.shape[0])[:, None, None, None]
        counts = torch.bincount(codes.reshape(-1), minlength=256 * x.shape[0]).reshape(x.shape[0], 256)
        return self.head(counts.float()).squeeze(1)
