"""Shared pytest fixtures; the plain helpers they use live in ``tests/helpers.py``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import make_checkpoint


@pytest.fixture(autouse=True, scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    """The auto backend's ONNX exports go to a folder of the test session, never the user's cache."""
    folder = tmp_path_factory.mktemp("ssp-cache")
    before = os.environ.get("SSP_CACHE")
    os.environ["SSP_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("SSP_CACHE", None)
    else:
        os.environ["SSP_CACHE"] = before


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def checkpoint_path(tmp_path_factory) -> Path:
    """A random ssp-lite checkpoint shared by the tests of a session."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module on one torch thread: its networks are small, and two OpenMP threads run about ten
    times slower when other processes share the two cores of a CI machine; results do not depend on it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
