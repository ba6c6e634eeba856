"""Shared pytest fixtures; the plain helpers they use live in ``tests/helpers.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import make_checkpoint


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def checkpoint_path(tmp_path_factory) -> Path:
    """A random ssp-lite checkpoint shared by the tests of a session."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")
