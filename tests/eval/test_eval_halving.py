"""`NNEval --schedule halving` end to end through the real CLI (jailed training on the CIFAR subset): who is
stopped and why (ranked out, or failed), one stat file and one DB row per finished epoch, a sweep killed with
SIGKILL mid-rung that a rerun completes with the same numbers, training no epoch twice, `--schedule full` and
`--retry-failed` on a halving folder."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .evalkit import RAISES, REPO, make_root, run_cli

pytestmark = pytest.mark.slow

# 3 models, rungs 1,3: all train 1 epoch, the best 2 go on to 3 epochs (7 epochs of the full schedule's 9)
COMMON = ["--epochs", "3", "--train-limit", "768", "--test-limit", "128", "--threads", "1", "-q", "--run-order", "file"]
HALVING = ["--schedule", "halving", "--rungs", "1", "--eta", "2", "--min-keep", "2", *COMMON]
NUMBERS = ("epoch", "accuracy", "train_loss", "val_loss", "train_accuracy")


def nneval(root: Path, models: Path, cifar: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return run_cli("ab.gpt.NNEval", "--models", str(models), "--data-dir", str(cifar), *HALVING, *args, cwd=root, **kw)


def runs(root: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (root / "new_lemur" / "runs").glob("*.json")}


def numbers(rec: dict) -> list[list[tuple]]:
    """What training computed (deterministic per seed), without the timings."""
    return [[tuple(e[k] for k in NUMBERS) for e in s["epochs"]] for s in rec["seeds"]]


def stat_rows(root: Path) -> list[tuple]:
    with sqlite3.connect(root / "db" / "ab.nn.db") as c:
        return sorted(c.execute("SELECT nn, epoch, accuracy FROM stat").fetchall())


def stat_files(root: Path) -> dict[str, list[int]]:
    base = root / "new_lemur" / "stat" / "train"
    return {d.name.split("_acc_", 1)[1]: sorted(int(f.stem) for f in d.glob("*.json")) for d in base.iterdir()}


@pytest.fixture(scope="module")
def reference(tiny_models, cifar_dir, tmp_path_factory):
    """One uninterrupted halving sweep: (root, its stdout)."""
    root = make_root(tmp_path_factory.mktemp("halving-ref"))
    return root, nneval(root, tiny_models, cifar_dir).stdout


def test_halving_stops_the_worst_and_records_every_epoch_once(reference, tiny_models, cifar_dir):
    root, stdout = reference
    recs = runs(root)
    assert len(recs) == 3 and all(r["status"] == "trained" for r in recs.values())
    by_first = sorted(recs, key=lambda n: (-recs[n]["seeds"][0]["epochs"][0]["accuracy"], n))
    stopped, kept = by_first[-1], by_first[:2]
    s = recs[stopped]["schedule"]
    assert s["state"] == "stopped" and s["rungs"] == [1, 3] and s["eta"] == 2 and s["min_keep"] == 2
    assert s["stop"]["rung"] == 0 and s["stop"]["budget"] == 1 and s["stop"]["epochs"] == 1
    assert "ranked 3 of 3; the top 2 go on" in s["stop"]["reason"]
    assert len(recs[stopped]["seeds"][0]["epochs"]) == 1
    for n in kept:
        assert recs[n]["schedule"]["state"] == "finished" and recs[n]["schedule"]["stop"] is None
        assert [e["epoch"] for e in recs[n]["seeds"][0]["epochs"]] == [1, 2, 3]
    # one stat file and one DB row per finished epoch; epoch_max is the full budget at every rung
    assert stat_files(root) == {stopped: [1], **{n: [1, 2, 3] for n in kept}}
    for n, epochs in stat_files(root).items():
        for ep in epochs:
            trials = json.loads((root / "new_lemur" / "stat" / "train" / f"img-classification_cifar-10_acc_{n}" /
                                 f"{ep}.json").read_text())
            assert len(trials) == 1 and trials[0]["epoch_max"] == 3
    rows = stat_rows(root)
    assert len(rows) == 7 and len({r[:2] for r in rows}) == 7
    assert not (root / "new_lemur" / ".work").exists()
    assert "stopped 1 at rung 0 (1 epoch); 2 finished" in stdout
    assert "7 of 9 epochs of the full schedule (77.8%)" in stdout and "7 epochs trained in this run" in stdout
    summary = json.loads((root / "new_lemur" / "summary.json").read_text())["last_run"]["schedule"]
    assert summary["per_rung"] == [{"rung": 0, "budget": 1, "models": 3, "stopped": 1, "failed": 0},
                                   {"rung": 1, "budget": 3, "models": 2, "stopped": 0, "failed": 0}]

    # rerun: nothing to train, nothing rewritten; --schedule full leaves the stopped model as it is
    again = nneval(root, tiny_models, cifar_dir).stdout
    assert "0 evaluated" in again and "3 already done" in again and "0 epochs trained in this run" in again
    full = run_cli("ab.gpt.NNEval", "--models", str(tiny_models), "--data-dir", str(cifar_dir), "--epochs", "3",
                   "-q", cwd=root).stdout
    assert "0 evaluated" in full and "3 already done" in full
    assert runs(root) == recs and stat_rows(root) == rows
    # another schedule on the same folder: one line, exit 2, nothing touched
    bad = nneval(root, tiny_models, cifar_dir, "--rungs", "2", check=False)
    assert bad.returncode == 2 and "holds a halving run with rungs 1,3" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and runs(root) == recs


def _progress(out: Path) -> int:
    """Epochs saved so far: the records' plus those a work folder holds beyond its model's record."""
    recs = {p.stem: json.loads(p.read_text()) for p in (out / "runs").glob("*.json")} if (out / "runs").is_dir() else {}
    total = sum(len(r["seeds"][0]["epochs"]) for r in recs.values())
    for h in (out / ".work").glob("*/seed0/history.json"):
        n = h.parent.parent.name
        saved = len(json.loads(h.read_text())["history"])
        total += max(0, saved - (len(recs[n]["seeds"][0]["epochs"]) if n in recs else 0))
    return total


def test_kill_9_mid_rung_then_rerun_matches_an_uninterrupted_run(reference, tiny_models, cifar_dir, tmp_path):
    ref_root, _ = reference
    root = make_root(tmp_path / "lemur")
    out = root / "new_lemur"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ab.gpt.NNEval", "--models", str(tiny_models), "--data-dir",
                             str(cifar_dir), *HALVING], cwd=root, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def mid_rung_1() -> bool:  # rung 0 decided, and a model has trained epoch 2 of 3
        for h in out.glob(".work/*/seed0/history.json"):
            try:
                if len(json.loads(h.read_text())["history"]) == 2:
                    return True
            except (OSError, ValueError, KeyError):
                pass
        return False

    deadline = time.monotonic() + 240
    while not mid_rung_1() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _progress(out)
    assert 4 <= before < 7, before  # rung 0 (3 epochs) and epoch 2 of a model saved, not all done
    recs_then = runs(root)
    assert any(r["schedule"]["state"] == "running" for r in recs_then.values())
    shutil.copytree(root, tmp_path / "copy")  # for --schedule full below
    (root / "db" / "ab.nn.db").unlink()  # the rerun registers every record's epochs, those of stopped models too

    rerun = nneval(root, tiny_models, cifar_dir).stdout
    trained = int(rerun.split(" epochs trained in this run")[0].rsplit("; ", 1)[1])
    assert before + trained == 7, rerun  # nothing trained twice, nothing lost
    ref, now = runs(ref_root), runs(root)
    assert {n: (r["status"], r["schedule"], numbers(r)) for n, r in now.items()} == \
           {n: (r["status"], r["schedule"], numbers(r)) for n, r in ref.items()}
    assert stat_rows(root) == stat_rows(ref_root) and stat_files(root) == stat_files(ref_root)
    assert not (out / ".work").exists()

    # --schedule full on the killed halving run: the stopped model stays as it is (done), the running ones go
    # on to --epochs from their saved state; the same numbers, one DB row per epoch
    copy = tmp_path / "copy"
    proc = run_cli("ab.gpt.NNEval", "--models", str(tiny_models), "--data-dir", str(cifar_dir), *COMMON, cwd=copy)
    assert "2 evaluated (trained 2), 1 already done" in proc.stdout
    after = runs(copy)
    assert {n: numbers(r) for n, r in after.items()} == {n: numbers(r) for n, r in ref.items()}
    assert {n for n, r in after.items() if "schedule" in r} == {n for n, r in ref.items()
                                                               if r["schedule"]["state"] == "stopped"}
    assert stat_rows(copy) == stat_rows(ref_root)


def test_a_failure_stops_at_its_rung_and_retry_failed_retries_only_it(tiny_models, cifar_dir, tmp_path):
    root = make_root(tmp_path / "lemur")
    models = root / "models"
    models.mkdir()
    tiny = sorted(tiny_models.glob("*.py"))[0]
    shutil.copy(tiny, models)
    (models / "RaisesNet.py").write_text(RAISES)
    args = ["--models", str(models), "--data-dir", str(cifar_dir), "--schedule", "halving", "--epochs", "2",
            "--eta", "2", "--train-limit", "256", "--test-limit", "128", "--threads", "1", "-q", "--no-register"]
    first = run_cli("ab.gpt.NNEval", *args, cwd=root).stdout
    recs = runs(root)
    assert recs["RaisesNet"]["status"] == "error" and recs["RaisesNet"]["schedule"]["state"] == "stopped"
    assert recs["RaisesNet"]["schedule"]["stop"]["reason"] == "error after 0 epoch(s)"
    assert recs[tiny.stem]["schedule"]["state"] == "finished" and len(recs[tiny.stem]["seeds"][0]["epochs"]) == 2
    assert "stopped 1 at rung 0 (1 epoch, 1 failed); 1 finished" in first
    retry = run_cli("ab.gpt.NNEval", *args, "--retry-failed", cwd=root).stdout
    assert "1 evaluated (error 1), 1 already done" in retry and "0 epochs trained in this run" in retry
    assert runs(root)[tiny.stem] == recs[tiny.stem]
