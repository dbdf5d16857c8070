"""Fixtures of the report tests: a small real sweep (built once per session) and the Chromium binary."""
from __future__ import annotations

import shutil

import pytest

from .sweep import make_sweep


@pytest.fixture(scope="session")
def real_sweep(tmp_path_factory):
    """(models_dir, results_dir) of a few tiny models and their plain baselines, trained 2 epochs x 2 seeds."""
    return make_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="session")
def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is not installed: the report's browser test needs Debian's 'chromium' package "
                    "(apt-get install -y chromium); the project's setup installs it before the tests")
    return path
