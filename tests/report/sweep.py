"""A small real sweep for the report tests: generate a few tiny models with matched plain baselines, train
each briefly with K seeds on the shared CIFAR-10 subset, and leave NNEval's results layout behind.
(--amp off: bf16 autocast is several times slower on this CPU; the sweep only has to be real and quick.)
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "cifar-10-subset"  # the real subset beside the checkout
EPOCHS, SEEDS, TRAIN, TEST = 2, 2, 128, 128
LAYERS = ["--depth", "1", "--channels", "8", "--conv", "conv3x3", "--norm", "bn", "--act", "relu",
          "--order", "conv-norm-act", "--dropout", "0", "-q"]
# two fractal variants (C = 1, 2) and their matched plain baselines: 2 ops (the C = 2 variant's deepest
# column alone) and 5 ops; AlterNNFN --baselines would add 10, 20 and 40 ops, too slow for a unit test
FRACTAL = [*LAYERS, "--columns", "1-2", "--join", "mean", "--limit", "2"]
PLAIN = [*LAYERS, "--kind", "plain", "--plain-layers", "2,5"]


def run_module(module: str, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def make_sweep(root: Path) -> tuple[Path, Path]:
    models, results = root / "models", root / "new_lemur"
    for args in (FRACTAL, PLAIN):
        r = run_module("ab.gpt.brute.fract.AlterNNFN", *args, "--models", str(models))
        assert r.returncode == 0, r.stderr
    # NN_GPT_FRACTAL_ROOT keeps NNEval's DB registration inside the test folder
    r = run_module("ab.gpt.NNEval", "--models", str(models), "--results", str(results), "--epochs", str(EPOCHS),
                   "--seeds", str(SEEDS), "--train-limit", str(TRAIN), "--test-limit", str(TEST),
                   "--data-dir", str(DATA), "--amp", "off", "-q", env={"NN_GPT_FRACTAL_ROOT": str(root)})
    assert r.returncode == 0, r.stderr[-3000:]
    return models, results
