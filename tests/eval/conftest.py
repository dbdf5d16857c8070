"""Fixtures for the evaluation tests: an isolated LEMUR root and tiny generated models (data: `cifar_dir`)."""
from __future__ import annotations

from pathlib import Path

import pytest

from .evalkit import generate, make_root


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """Three tiny fractal variants (N 1-2, C 1-2, 8-16 channels), generated once by the real CLI."""
    root = make_root(tmp_path_factory.mktemp("gen-root"))
    out = root / "models"
    names = generate(root, out, "--depth", "1-2", "--columns", "1-2", "--limit", "3")
    assert len(names) == 3
    return out


@pytest.fixture
def lemur_root(tmp_path) -> Path:
    return make_root(tmp_path / "lemur")
