"""Closed loop (`AlterNNFN --rounds R`): generate a round, evaluate it with NNEval, feed results back, repeat.

Each round's new models are copied with their manifest records to `<out>/.rounds/<k>/`, and NNEval
(`python -m ab.gpt.NNEval --models <that folder> --results <new_lemur> ...`, a subprocess) trains exactly those,
writing `new_lemur/runs/<Model>.json`. Generators that learn from results (the LLM plugin) read that folder
when they propose the next round; the loop tells them where it is and which round it is through the
generator options `new_lemur=PATH` and `round=K`.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Callable, Iterable

from ..util.atomic import append_line
from ..generation.generate import Outcome
from ..generation.manifest import MANIFEST, Manifest
from .results import load_run

EVAL_MODULE = "ab.gpt.NNEval"
ROUNDS_DIR = ".rounds"


@dataclass
class RoundResult:
    round: int
    accepted: list[str]
    invalid: int
    duplicates: int
    eval_rc: int | None = None  # None: nothing to evaluate
    results: dict[str, tuple[str, float | None]] = field(default_factory=dict)  # name -> (status, accuracy)

    @property
    def best(self) -> tuple[str, float] | None:
        scored = [(n, a) for n, (s, a) in self.results.items() if a is not None]
        return max(scored, key=lambda x: x[1]) if scored else None


def stage_round(out: Path, names: list[str], k: int) -> Path:
    """A folder holding just this round's model files and their manifest records (what NNEval reads)."""
    folder = Path(out) / ROUNDS_DIR / f"{k:03d}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    valid = {r["name"]: r for r in Manifest.load(out).valid()}
    for name in names:
        shutil.copy2(Path(out) / f"{name}.py", folder / f"{name}.py")
        if name in valid:
            append_line(folder / MANIFEST, json.dumps(valid[name], sort_keys=True))
    return folder


def nneval_command(models: Path, new_lemur: Path, extra: Iterable[str] = (), module: str = EVAL_MODULE) -> list[str]:
    return [sys.executable, "-m", module, "--models", str(models), "--results", str(new_lemur), *extra]


def run_nneval(models: Path, new_lemur: Path, extra: Iterable[str] = (), module: str = EVAL_MODULE,
               timeout: float | None = None) -> int:
    """Run NNEval on one folder in a subprocess (its output passes through); returns its exit code."""
    return subprocess.run(nneval_command(models, new_lemur, extra, module), timeout=timeout).returncode


def final_accuracy(run: dict) -> float | None:
    """Mean over seeds of each seed's last finished epoch's accuracy."""
    finals = [s["epochs"][-1]["accuracy"] for s in run.get("seeds") or []
              if s.get("epochs") and isinstance(s["epochs"][-1].get("accuracy"), (int, float))]
    return float(mean(finals)) if finals else None


def read_results(new_lemur: Path, names: list[str]) -> dict[str, tuple[str, float | None]]:
    out = {}
    for name in names:
        run = load_run(new_lemur, name)
        out[name] = ("missing", None) if run is None else (str(run.get("status")), final_accuracy(run))
    return out


def _records(out: Path) -> list[dict]:
    path = Path(out) / MANIFEST
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def run_rounds(rounds: int, propose: Callable[[int], Iterable], generate_round: Callable[[Iterable], Outcome],
               evaluate: Callable[[Path], int], out: Path, new_lemur: Path,
               say: Callable[[str], None] = print) -> list[RoundResult]:
    """`propose(k)` gives round k's proposals, `generate_round` validates and writes them, `evaluate(folder)`
    trains a round's folder and returns an exit code; results are read back from `new_lemur`."""
    history = []
    for k in range(1, rounds + 1):
        seen = len(_records(out))
        outcome = generate_round(propose(k))
        # count from the manifest: generators may record rejections of their own (e.g. unusable LLM output)
        new = [r.get("status") for r in _records(out)[seen:]]
        res = RoundResult(k, list(outcome.accepted), new.count("invalid"), new.count("duplicate"))
        if res.accepted:
            res.eval_rc = evaluate(stage_round(out, res.accepted, k))
            res.results = read_results(new_lemur, res.accepted)
        trained = sum(1 for s, _ in res.results.values() if s == "trained")
        best = f"; best {res.best[0]} {res.best[1]:.4f}" if res.best else ""
        say(f"round {k}/{rounds}: {len(res.accepted)} new, {res.invalid} invalid, {res.duplicates} duplicates; "
            f"evaluated {trained}/{len(res.accepted)} trained"
            + (f" (NNEval exit code {res.eval_rc})" if res.eval_rc else "") + best)
        history.append(res)
    return history
