"""Fixtures for the evaluation tests: CIFAR-10 data (the shared real subset, or a generated stand-in in the
same pickle format), an isolated LEMUR root and tiny generated models."""
from __future__ import annotations

from pathlib import Path

import pytest

from .evalkit import SUBSET, generate, make_root, write_fake_cifar


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory) -> Path:
    if SUBSET.is_dir():
        return SUBSET
    return write_fake_cifar(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py")


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
