"""Helpers of the evaluation tests: a CLI runner, isolated LEMUR roots, model generation.
(A module of its own: test files import it, and conftest modules collide by name.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY = ["--channels", "8,16", "--norm", "bn", "--act", "relu", "--order", "conv-norm-act", "--dropout", "0",
        "--join", "mean", "--conv", "conv3x3", "--workers", "1", "-q"]
QUICK = ["--epochs", "1", "--train-limit", "384", "--test-limit", "128", "--threads", "1", "-q"]


def run_cli(module: str, *args: str, cwd: Path, env: dict | None = None, timeout: float = 300,
            check: bool = True) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                **(env or {})}
    full_env.pop("NN_GPT_FRACTAL_ROOT", None)
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_root(path: Path) -> Path:
    """An isolated LEMUR root: nn-dataset and our paths both resolve it from the working directory."""
    (path / "ab").mkdir(parents=True, exist_ok=True)
    (path / "README.md").write_text("test LEMUR root\n")
    return path


def generate(root: Path, out: Path, *args: str) -> list[str]:
    run_cli("ab.gpt.brute.fract.AlterNNFN", *TINY, *args, "--models", str(out), cwd=root)
    return sorted(p.stem for p in out.glob("*.py"))


RAISES = '''"""A model that passes the static checks and fails when built."""
import torch


def supported_hyperparameters():
    return {'lr', 'momentum'}


class Net(torch.nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        raise ValueError("this model cannot be built")

    def forward(self, x):
        return x

    def train_setup(self, prm):
        pass

    def learn(self, train_data):
        pass
'''
