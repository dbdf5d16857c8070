"""NNEval's end-of-run output at scale: counts, the best 10 and where the full table is, never every row."""
from __future__ import annotations

import csv

from ab.gpt.NNEval import SHOWN, TABLE, print_summary
from ab.gpt.brute.fract.sweep.evaluate import SweepOutcome
from ab.gpt.brute.fract.sweep.results import CONFIG_KEYS, run_record

CONFIG = {k: None for k in CONFIG_KEYS}


def record(i: int, acc: float | None, status: str = "trained") -> dict:
    epochs = [] if acc is None else [{"epoch": 1, "accuracy": acc, "epoch_time_s": 1.0, "images_per_s": 100.0,
                                      "peak_memory_mb": 50.0}]
    seed = {"seed": 0, "status": status, "message": "" if status == "trained" else "boom", "epochs": epochs,
            "params": 10}
    return run_record(f"Model{i:04d}", [seed], None, CONFIG, 1000)


def outcome(n: int) -> SweepOutcome:
    recs = [record(i, (i % 97) / 100) for i in range(n - 1)] + [record(n - 1, None, "diverged")]
    return SweepOutcome(records=recs, summary={"models": n, "success_rate": (n - 1) / n,
                                                "last_run": {"evaluated": n, "counts": {"trained": n - 1, "diverged": 1}}})


def test_large_run_prints_the_best_ten_and_writes_the_rest(tmp_path, capsys):
    print_summary(outcome(500), tmp_path)
    out = capsys.readouterr().out
    shown = [line for line in out.splitlines() if "Model0" in line]
    assert len(shown) == SHOWN
    assert "0.9600" in shown[0]  # best first
    assert f"{500 - SHOWN} more models: the full table is in {tmp_path / TABLE}" in out
    assert "this run: 500 evaluated (trained 499, diverged 1)" in out
    with open(tmp_path / TABLE, newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 501 and rows[0][:3] == ["model", "status", "accuracy"]
    assert rows[-1][1] == "diverged"  # failures after every trained model


def test_small_run_prints_every_row_and_writes_no_file(tmp_path, capsys):
    print_summary(outcome(4), tmp_path)
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if "Model0" in line]) == 4
    assert not (tmp_path / TABLE).exists() and "more models" not in out
