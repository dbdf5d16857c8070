"""Helpers of the LEMUR round-trip tests: a LEMUR root laid out as nn-dataset's source checkout.

nn-dataset keeps models, metrics and stat files inside its own package folder (`ab/nn/nn`, `ab/nn/metric`,
`ab/nn/stat`), and rebuilds missing model and metric files there from the DB. Installed from the wheel,
that folder is site-packages; tests must not write there. `checkout(root)` builds `root/ab/nn/` with a
link to each part of the installed nn-dataset 2.2.11 (its code, loaders, transforms, metric base) and
empty `nn/`, `metric/`, `stat/` folders of its own, plus `root/ab/gpt` -> this repository's `ab/gpt`.
Run with cwd=root and PYTHONPATH=root, nn-dataset resolves every path inside root (as in a git clone of
nn-dataset). The data is the CIFAR-10 folder the tests use, at `root/data/cifar-10-batches-py`.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OWN = ("nn", "metric", "stat", "__pycache__")


def installed_nn() -> Path:
    import ab.nn

    return Path(ab.nn.__file__).resolve().parent


def checkout(root: Path, cifar: Path) -> Path:
    src = installed_nn()
    nn = root / "ab" / "nn"
    for d in ("nn", "metric", "stat/train"):
        (nn / d).mkdir(parents=True, exist_ok=True)
    (root / "ab" / "__init__.py").write_text("")
    (root / "README.md").write_text("LEMUR root for tests\n")
    for child in src.iterdir():
        if child.name not in OWN:
            (nn / child.name).symlink_to(child)
    (nn / "metric" / "base").symlink_to(src / "metric" / "base")
    (root / "ab" / "gpt").symlink_to(REPO / "ab" / "gpt")
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "cifar-10-batches-py").symlink_to(cifar)
    return root


def md5_file(cifar: Path, dest: Path) -> Path:
    """md5sum-format sums of a CIFAR folder (for a stand-in made by the tests; the shared subset's are
    recorded in lemur/subset.py)."""
    lines = [f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.name}" for p in sorted(cifar.iterdir())]
    dest.write_text("\n".join(lines) + "\n")
    return dest


def env(root: Path, sums: Path | None = None) -> dict:
    from ab.gpt.brute.fract.lemur.subset import MD5_ENV, site_dir

    e = {**os.environ, "PYTHONPATH": f"{site_dir()}{os.pathsep}{root}", "HF_HUB_OFFLINE": "1",
         "PYTHONUNBUFFERED": "1"}
    e.pop("NN_GPT_FRACTAL_ROOT", None)
    if sums:
        e[MD5_ENV] = str(sums)
    return e


def run(root: Path, args: list[str], sums: Path | None = None, timeout: float = 600,
        check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=root, env=env(root, sums), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc
