"""Shared fixtures: the repo root, CIFAR-10 data, a registry with built-ins only, and a CLI runner."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from xdist.scheduler import LoadScopeScheduling

REPO = Path(__file__).resolve().parents[1]
SUBSET = REPO.parent / "shared" / "data" / "cifar-10-subset" / "cifar-10-batches-py"


def write_stand_in_cifar(folder: Path, per_batch: int = 200, seed: int = 0) -> Path:
    """A learnable stand-in in the official pickle format: noise plus a colour that depends on the label."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, per_batch)
        tint = np.stack([labels * 25, 255 - labels * 25, (labels % 3) * 100], 1)[:, :, None]
        data = np.clip(rng.integers(0, 96, (per_batch, 3, 1024)) + tint * 0.6, 0, 255).astype(np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": [int(v) for v in labels],
                         "data": data.reshape(per_batch, 3072)}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch}, f)
    return folder


def write_shortened_cifar(src: Path, folder: Path, per_batch: int) -> Path:
    """The first `per_batch` images of each batch of a real CIFAR-10 folder, in the same pickle format."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(src / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        short = {k: (v[:per_batch] if k in ("data", "labels", "filenames", b"data", b"labels", b"filenames") else v)
                 for k, v in batch.items()}
        with open(folder / name, "wb") as f:
            pickle.dump(short, f)
    (folder / "batches.meta").write_bytes((src / "batches.meta").read_bytes())
    return folder


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory) -> Path:
    """The shared real subset (real images), or the stand-in where a checkout has no shared/ beside it."""
    if SUBSET.is_dir():
        return SUBSET
    return write_stand_in_cifar(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py")


@pytest.fixture(scope="session")
def small_cifar(cifar_dir, tmp_path_factory) -> Path:
    """200 real images per batch (1,000 to train on, 200 to test): for end-to-end runs that train on a whole
    folder (the demo) where the images' count changes nothing they check."""
    return write_shortened_cifar(cifar_dir, tmp_path_factory.mktemp("small-cifar") / "cifar-10-batches-py", 200)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def registry():
    from ab.gpt.brute.fract.space.registry import build_registry

    return build_registry(third_party=False)


def run_module(module: str, *args: str, cwd: Path | None = None, env: dict | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m module args` as a user would, capturing output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_module


@pytest.fixture(scope="session", autouse=True)
def tune_cache(tmp_path_factory) -> Path:
    """One per-machine tuning cache for the whole test session (not the user's): each shape class is
    probed once, on this machine, by the first sweep that needs it."""
    base = tmp_path_factory.getbasetemp()
    # under pytest-xdist every worker has its own basetemp below one shared folder: share the cache there
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "tune" / "tune.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("NN_GPT_FRACTAL_TUNE_CACHE")
    os.environ["NN_GPT_FRACTAL_TUNE_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("NN_GPT_FRACTAL_TUNE_CACHE", None)
    else:
        os.environ["NN_GPT_FRACTAL_TUNE_CACHE"] = old


# How the suite is spread over pytest-xdist workers (`--dist loadscope`, Makefile): each module is one unit of
# work, so its module-scoped fixtures (a generated space, a trained sweep, a Ray cluster) are built once rather
# than once per worker; folders whose modules share an expensive session fixture are one unit. (xdist's own
# `xdist_group` marks do not reach its scheduler under pytest 9, so the units are made here, by scheduler.)
UNIT_FOLDERS = {"lemur", "report", "llm"}
# Units that take longest start first (measured wall seconds of a 2-core run, largest first), so that no
# long unit starts last and leaves the other worker idle; the rest follow in collection order.
LONGEST_FIRST = ("tests/lemur", "tests/test_generate_cli.py", "tests/distributed/test_ray_cluster.py",
                 "tests/study/test_study_run.py", "tests/eval/test_eval_sweep.py", "tests/llm",
                 "tests/eval/test_eval_halving.py", "tests/report", "tests/boundary/test_cnn.py",
                 "tests/eval/test_eval_policies.py", "tests/trial/test_budgets.py", "tests/trial/test_hostile_models.py",
                 "tests/trial/test_reliability.py", "tests/tune/test_memory.py")


def unit_of(nodeid: str) -> str:
    """The unit of work of a test: its folder for UNIT_FOLDERS, else its module."""
    parts = nodeid.split("::", 1)[0].split("/")
    return "/".join(parts[:2]) if len(parts) > 2 and parts[1] in UNIT_FOLDERS else "/".join(parts)


class UnitScheduling(LoadScopeScheduling):
    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    return UnitScheduling(config, log) if config.getvalue("dist") == "loadscope" else None


def pytest_collection_modifyitems(config, items):
    rank = {u: k for k, u in enumerate(LONGEST_FIRST)}
    first_seen: dict[str, int] = {}
    for item in items:
        first_seen.setdefault(unit_of(item.nodeid), len(first_seen))
    items.sort(key=lambda it: (rank.get(unit_of(it.nodeid), len(rank)), first_seen[unit_of(it.nodeid)]))
