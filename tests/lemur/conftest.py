"""Fixtures of the LEMUR round-trip tests: one small sweep, made by our CLIs in a source-checkout root."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .lemurkit import checkout, md5_file, run

TINY = ["--channels", "8,16", "--norm", "bn", "--act", "relu", "--order", "conv-norm-act", "--join", "mean",
        "--conv", "conv3x3", "--depth", "2", "--columns", "2", "--workers", "1", "-q"]


@pytest.fixture(scope="session")
def cifar_sums(cifar_dir, tmp_path_factory) -> Path | None:
    """None for the shared subset (its sums are recorded in lemur/subset.py); for the stand-in, its sums."""
    from ab.gpt.brute.fract.lemur.subset import SUBSET_MD5, md5

    if all(md5(cifar_dir / f) == s for f, s in SUBSET_MD5.items()):
        return None
    return md5_file(cifar_dir, tmp_path_factory.mktemp("sums") / "cifar.md5")


@pytest.fixture(scope="session")
def sweep(tmp_path_factory, cifar_dir):
    """Three models (dropout 0, 0.2 and Larsson's schedule), 2 epochs x 2 seeds, registered into ours.db."""
    root = checkout(tmp_path_factory.mktemp("sweep"), cifar_dir)
    run(root, ["-m", "ab.gpt.brute.fract.AlterNNFN", *TINY, "--dropout", "0,0.2,larsson"])
    run(root, ["-m", "ab.gpt.NNEval", "--epochs", "2", "--seeds", "2", "--train-limit", "384", "--test-limit", "128",
               "--threads", "1", "-q", "--db", str(root / "ours.db"), "--data-dir", str(cifar_dir)])
    names = sorted(p.stem for p in (root / "new_lemur" / "nn").glob("*.py"))
    assert len(names) == 3
    return root, names


@pytest.fixture
def lemur_user(tmp_path, cifar_dir, sweep):
    """A fresh source-checkout root whose DB is a copy of the sweep's (what a LEMUR user gets from us). The
    whole subset: nn-dataset's trainer refuses a model whose accuracy after the epoch is near chance."""
    root = checkout(tmp_path / "user", cifar_dir)
    (root / "db").mkdir()
    shutil.copy(sweep[0] / "ours.db", root / "db" / "ab.nn.db")
    return root
