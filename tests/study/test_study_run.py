"""A tiny study run end to end with real jails and real (subset) CIFAR-10 images: killed during its first
training stage, continued by the same command, then rerun as a no-op; its results.csv, findings and the
manifest that pins the model files."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from ab.gpt.brute.fract.sweep import results
from ab.gpt.brute.fract.generation.manifest import Manifest
from tests.conftest import REPO

TOY = """
[study]
name = "toy"
[space]
size = 2
min_level_count = 1
depth = [1]
columns = [1, 2]
channels = [4]
conv = ["conv3x3"]
norm = ["bn"]
act = ["relu"]
order = ["conv-norm-act"]
dropout = [0.0]
join = ["mean"]
[baselines]
cells_per_pair = 1
[protocol]
data = "{data}"
epochs = 2
batch = 16
train_limit = 48
test_limit = 32
[protocol.halving]
rungs = [1]
eta = 2
[protocol.seeds]
count = 2
top = 1
"""


def study_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ab.gpt.brute.fract.study", *args]


@pytest.fixture(scope="module")
def toy(tmp_path_factory, cifar_dir):
    folder = tmp_path_factory.mktemp("toy")
    (folder / "study.toml").write_text(TOY.format(data=cifar_dir))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # first run: killed (SIGKILL, the whole process group) once stage 1 has written its first record
    proc = subprocess.Popen(study_cmd("run", str(folder / "study.toml"), "-q"), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    runs = folder / "work" / "stage1" / "runs"
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline and not (runs.is_dir() and any(runs.glob("*.json"))):
        time.sleep(0.2)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
    second = subprocess.run(study_cmd("run", str(folder / "study.toml"), "-q"), cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=1200)
    stamps = {p: p.stat().st_mtime_ns for p in (folder / "work").rglob("runs/*.json")}
    started = time.monotonic()
    third = subprocess.run(study_cmd("run", str(folder / "study.toml"), "-q"), cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    return {"folder": folder, "killed": killed, "first": first, "second": second, "third": third,
            "third_s": time.monotonic() - started, "stamps": stamps}


def test_killed_run_continues_and_finishes(toy):
    assert toy["killed"], "the first run finished before it could be killed: the toy is too small to test resume"
    second = toy["second"]
    assert second.returncode == 0, second.stdout + second.stderr
    work = toy["folder"] / "work"
    for name in toy["first"]:  # stage-1 models finished before the kill are not trained again from scratch
        rec = results.load_run(work / "stage1", name[:-5])
        assert rec["status"] == "trained"
    stage1 = results.load_runs(work / "stage1")
    assert len(stage1) == 2 and all(r["schedule"]["state"] in ("stopped", "finished") for r in stage1)
    assert sum(r["schedule"]["state"] == "finished" for r in stage1) == 1  # eta 2: the better one goes on


def test_rerun_of_a_finished_study_trains_nothing(toy):
    third = toy["third"]
    assert third.returncode == 0, third.stdout + third.stderr
    assert " 0 epochs trained in this run" in third.stdout
    assert {p: p.stat().st_mtime_ns for p in toy["stamps"]} == toy["stamps"]  # no run record rewritten


def test_results_csv_has_every_model_seed_and_budget(toy):
    folder = toy["folder"]
    with open(folder / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) >= {"model", "kind", "seed", "epochs", "accuracy", "status", "params", "flops", "depth",
                            "columns", "norm", "act", "order", "dropout", "join", "drop_path"}
    breadth = [r for r in rows if r["stage"] == "breadth"]
    assert sorted(int(r["epochs"]) for r in breadth) == [1, 1, 2]  # both at rung 1, the survivor at 2
    seeds = [r for r in rows if r["stage"] == "seeds" and r["eval"] == "all" and r["epochs"] == "2"]
    # the top model plus the one pair: the C=2 fractal, its depth twin (2 ops) and its parameter twin (3 ops)
    kinds = sorted((r["kind"], r["seed"]) for r in seeds)
    assert kinds.count(("plain", "0")) == 2 and kinds.count(("plain", "1")) == 2
    assert {r["seed"] for r in seeds} == {"0", "1"}
    deep = [r for r in rows if r["eval"] == "deepest"]
    assert len(deep) == 2 and {r["columns"] for r in deep} == {"2"}
    for r in rows:
        if r["status"] == "trained":
            assert 0.0 <= float(r["accuracy"]) <= 1.0 and int(r["params"]) > 0


def test_seed_zero_of_stage_two_repeats_stage_one(toy):
    """The halving survivor trained 2 epochs in two rungs (resumed from its saved state) and again in one go
    for the seeds stage: same seed, same numbers."""
    with open(toy["folder"] / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    top = [r for r in rows if r["stage"] == "breadth" and r["epochs"] == "2"][0]
    again = [r for r in rows if r["stage"] == "seeds" and r["model"] == top["model"] and r["seed"] == "0"
             and r["epochs"] == "2" and r["eval"] == "all"][0]
    assert again["accuracy"] == top["accuracy"]


def test_findings_and_manifest_are_written(toy):
    folder = toy["folder"]
    md = (folder / "analysis" / "findings.md").read_text()
    assert md.startswith("# Findings: toy") and "## Answers" in md and "deepest column alone" in md
    assert (folder / "analysis" / "rank_stability.png").stat().st_size > 0
    assert (folder / "report" / "seeds" / "report.html").exists()
    pinned = {r["name"]: r["code_hash"] for r in Manifest.load(folder).valid()}
    assert len(pinned) == 4  # two sampled models and the pair's two plain twins
    for folder_ in (folder / "work" / "models", folder / "work" / "baselines"):
        for r in Manifest.load(folder_).valid():
            assert pinned[r["name"]] == r["code_hash"]
