"""The demo's report shows how many models the DB holds (it was blank although the rows existed)."""
import csv
import sqlite3

import pytest

from tests.eval.evalkit import make_root, run_cli

pytestmark = pytest.mark.slow


def test_demo_report_counts_the_db_registrations(tmp_path, small_cifar, monkeypatch):
    root = make_root(tmp_path / "root")
    monkeypatch.setenv("NN_GPT_FRACTAL_CIFAR", str(small_cifar))  # the demo trains on the whole folder
    run_cli("ab.gpt.brute.fract.demo", cwd=root, timeout=900)
    with sqlite3.connect(root / "db" / "ab.nn.db") as con:
        in_db = con.execute("SELECT COUNT(DISTINCT nn) FROM stat").fetchone()[0]
    with open(root / "out" / "report" / "tables" / "summary.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["key"] == "in_db")
    assert in_db == 6 and row["all"] == "6"
