"""NNEval on a real 3-node Ray cluster (head with 0 CPUs, two 1-CPU worker nodes) whose worker nodes cannot
see the driver's files: the LEMUR root's out/, new_lemur/, db/ and the data folder are empty tmpfs mounts in
their mount namespaces. Everything a trial needs goes through Ray; everything it yields comes back.

A clean sweep trains all models with stat files and DB rows on the driver side. A sweep that loses a worker
node (its processes killed by PID) mid-trial finishes its trials on the other node from their last epoch,
with the same per-epoch records as the clean sweep (fixed seed, one thread: deterministic), none lost or
duplicated. A driver killed with -9 leaves no trial running, and its rerun completes from the saved epochs.
"""
from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.distributed.cluster import LocalCluster, node_env
from tests.eval.evalkit import REPO, generate, make_root, run_cli
from tests.eval.test_eval_sweep import check_results, model_names

pytestmark = pytest.mark.slow

EPOCHS = 3
ARGS = ["--epochs", str(EPOCHS), "--train-limit", "512", "--test-limit", "128", "--threads", "1", "-q",
        "--executor", "ray", "--run-order", "file"]
PLACED = re.compile(r"^ray: (\S+) s0 on node (\w+) pid (\d+) from epoch (\d+)( \(dataset cached there now\))?$", re.M)
LOST = re.compile(r"^ray: (\S+) s0 lost \((\w+)\); restarting from epoch (\d+)$", re.M)
DATA_FILES = {"train_x.npy", "train_y.npy", "test_x.npy"}


@pytest.fixture(scope="module")
def lemur(tmp_path_factory) -> Path:
    """A LEMUR root with four tiny models of different sizes in out/fractal."""
    root = make_root(tmp_path_factory.mktemp("ray-root"))
    names = generate(root, root / "out" / "fractal", "--depth", "1-2", "--columns", "1-2", "--limit", "4")
    assert len(names) == 4
    for d in ("new_lemur", "db"):
        (root / d).mkdir()
    return root


@pytest.fixture(scope="module")
def cluster(lemur, cifar_dir, tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("ray-nodes"),
                     hide=[lemur / "out", lemur / "new_lemur", lemur / "db", Path(cifar_dir)])
    try:
        c.start(workers=2)
        yield c
    finally:
        c.stop()


def nneval(root: Path, cluster: LocalCluster, out: str, db: str, *more: str, cifar: Path) -> list[str]:
    return ["-m", "ab.gpt.NNEval", *ARGS, "--address", cluster.address, "--results", str(root / "new_lemur" / out),
            "--db", str(root / "db" / db), "--data-dir", str(cifar), *more]


def run_nneval(root, cluster, out, db, cifar) -> subprocess.CompletedProcess:
    args = nneval(root, cluster, out, db, cifar=cifar)
    return run_cli(args[1], *args[2:], cwd=root, env=node_env(), timeout=600)


def epochs_of(out: Path) -> dict[str, list[tuple]]:
    """Per model: (epoch, accuracy, train loss, val loss, train accuracy) of each finished epoch."""
    res = {}
    for f in sorted((out / "runs").glob("*.json")):
        run = json.loads(f.read_text())
        res[run["name"]] = [(e["epoch"], e["accuracy"], e["train_loss"], e["val_loss"], e["train_accuracy"])
                            for e in run["seeds"][0]["epochs"]]
    return res


def stat_epochs(out: Path, name: str) -> dict[int, list[float]]:
    folder = out / "stat" / "train" / f"img-classification_cifar-10_acc_{name}"
    return {int(p.stem): [t["accuracy"] for t in json.loads(p.read_text())] for p in folder.glob("*.json")}


def db_stats(db: Path) -> dict[str, list[tuple]]:
    """Per model: (epoch, accuracy) of its rows in nn-dataset's `stat` table."""
    with sqlite3.connect(db) as c:
        rows = c.execute("select nn, epoch, accuracy from stat order by nn, epoch").fetchall()
    out: dict[str, list[tuple]] = {}
    for nn, epoch, acc in rows:
        out.setdefault(nn, []).append((epoch, acc))
    return out


@pytest.fixture(scope="module")
def clean(lemur, cluster, cifar_dir):
    proc = run_nneval(lemur, cluster, "clean", "clean.db", cifar_dir)
    return lemur / "new_lemur" / "clean", proc


def test_sweep_runs_on_nodes_that_see_none_of_the_driver_files(lemur, cluster, clean, cifar_dir):
    out, proc = clean
    names = model_names(lemur / "out" / "fractal")
    assert "4 evaluated (trained 4)" in proc.stdout, proc.stderr
    check_results(out, names, epochs=EPOCHS)
    stats = db_stats(lemur / "db" / "clean.db")
    assert sorted(stats) == names and all([e for e, _ in v] == [1, 2, 3] for v in stats.values())
    placed = PLACED.findall(proc.stderr)
    assert sorted(p[0] for p in placed) == names and all(p[3] == "0" for p in placed)  # one placement each
    assert len({p[1] for p in placed}) == 2, "both worker nodes trained"
    assert sum(bool(p[4]) for p in placed) == 2, "the dataset was materialised once per node"

    # the worker nodes really lack the driver's files, and hold the dataset (never the labels) in their cache
    driver_cache = next((lemur / "out" / "cache").glob("cifar-10-*"))
    for name in ("worker1", "worker2"):
        raylet = min(cluster.pids(name) - {cluster.nodes[name].pid})
        seen = subprocess.run(["nsenter", "-t", str(raylet), "-m", "ls", "-A", str(lemur / "out"),
                               str(lemur / "new_lemur"), str(lemur / "db"), str(cifar_dir)],
                              capture_output=True, text=True, check=True).stdout
        assert not [ln for ln in seen.splitlines() if ln and not ln.endswith(":")], seen
        cached = [d for d in (cluster.base / name / "cache").iterdir() if d.is_dir()]
        assert len(cached) == 1
        assert {p.name for p in cached[0].glob("*.npy")} == DATA_FILES
        for f in DATA_FILES:
            assert (cached[0] / f).read_bytes() == (driver_cache / f).read_bytes()


def _placements(text: str, cluster: LocalCluster, where: dict) -> None:
    for model, _node, pid, _epoch, _cached in PLACED.findall(text):
        node = cluster.node_of(int(pid))
        if node is not None:
            where[model] = node


def _wait_for_epoch(proc, log: Path, out: Path, cluster: LocalCluster) -> tuple[str, str, int]:
    """(model, node, epochs done) of a trial that has at least one epoch at the driver and is not finished."""
    where: dict[str, str] = {}
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        _placements(log.read_text(), cluster, where)
        for model, node in where.items():
            try:
                done = len(json.loads((out / ".work" / model / "seed0" / "history.json").read_text())["history"])
            except (OSError, ValueError):
                continue
            if 1 <= done < EPOCHS:
                return model, node, done
        time.sleep(0.05)
    raise AssertionError(f"no trial with an epoch done seen in time: {log.read_text()}")


def _start(lemur, cluster, cifar_dir, name: str, log: Path) -> subprocess.Popen:
    with open(log, "a") as err:
        return subprocess.Popen([sys.executable, *nneval(lemur, cluster, name, f"{name}.db", cifar=cifar_dir)],
                                cwd=lemur, env={**node_env(), "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                                stderr=err, text=True)


def _jails(cluster: LocalCluster) -> list[int]:
    return [pid for name in cluster.nodes for pid in cluster.pids(name)
            if Path(f"/proc/{pid}/comm").exists() and Path(f"/proc/{pid}/comm").read_text().strip() == "bwrap"]


def _no_jails_left(cluster: LocalCluster, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _jails(cluster) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _jails(cluster)


def _same_as_clean(out: Path, clean_out: Path, db: Path, names: list[str]) -> None:
    check_results(out, names, epochs=EPOCHS)
    assert epochs_of(out) == epochs_of(clean_out)  # same epochs, same numbers, nothing lost or duplicated
    for n in names:
        assert stat_epochs(out, n) == stat_epochs(clean_out, n)
        assert all(len(v) == 1 for v in stat_epochs(out, n).values())
    assert db_stats(db) == db_stats(clean_out.parent.parent / "db" / "clean.db")
    assert not (out / ".work").exists()


def test_driver_kill_9_stops_the_trials_and_the_rerun_resumes(lemur, cluster, clean, cifar_dir, tmp_path):
    clean_out, _ = clean
    names = model_names(lemur / "out" / "fractal")
    out, log = lemur / "new_lemur" / "driver", tmp_path / "driver.log"
    proc = _start(lemur, cluster, cifar_dir, "driver", log)
    model, _node, _done = _wait_for_epoch(proc, log, out, cluster)
    proc.kill()
    proc.wait()
    _no_jails_left(cluster)  # the dead driver's tasks and their jails end
    saved = len(json.loads((out / ".work" / model / "seed0" / "history.json").read_text())["history"])
    rerun = _start(lemur, cluster, cifar_dir, "driver", log)
    stdout, _ = rerun.communicate(timeout=400)
    text = log.read_text()
    assert rerun.returncode == 0 and "evaluated (trained" in stdout, text
    again = [p for p in PLACED.findall(text) if p[0] == model]
    assert len(again) == 2 and int(again[1][3]) == saved >= 1, text  # the rerun went on after the saved epochs
    _same_as_clean(out, clean_out, lemur / "db" / "driver.db", names)


def test_a_lost_node_costs_no_epoch(lemur, cluster, clean, cifar_dir, tmp_path):
    """Kill one worker node's processes while it trains a model with an epoch done: that model finishes on
    the other node from that epoch; the records equal the clean run's."""
    clean_out, _ = clean
    names = model_names(lemur / "out" / "fractal")
    out, log = lemur / "new_lemur" / "lost", tmp_path / "driver.log"
    proc = _start(lemur, cluster, cifar_dir, "lost", log)
    model, node, done = _wait_for_epoch(proc, log, out, cluster)
    cluster.kill_node(node)
    stdout, _ = proc.communicate(timeout=400)
    text = log.read_text()
    assert proc.returncode == 0 and "4 evaluated (trained 4)" in stdout, text
    lost = [m for m in LOST.findall(text) if m[0] == model]
    assert lost and int(lost[0][2]) >= done, text  # restarted from its last epoch the driver had
    resumed = [p for p in PLACED.findall(text) if p[0] == model and p[3] != "0"]
    assert resumed and int(resumed[0][3]) == int(lost[0][2]), text
    _no_jails_left(cluster)  # the driver's end ends its workers and their jails
    _same_as_clean(out, clean_out, lemur / "db" / "lost.db", names)


def test_packing_counts_what_the_nodes_hold(cluster, monkeypatch):
    """Trials per node follow the CPU, GPU and memory each asks for; one that fits no node is refused."""
    import ray

    from ab.gpt.brute.fract.trial import TrialLimits
    from ab.gpt.brute.fract.trial.ray_executor import GIB, RayExecutor

    for k, v in node_env().items():
        if k.startswith("RAY_"):
            monkeypatch.setenv(k, v)

    def workers(**kw) -> int:
        ex = RayExecutor(TrialLimits(), address=cluster.address, **kw)
        try:
            return ex.workers
        finally:
            ex.close()

    alive = len(_alive_workers(cluster))
    assert workers(cpus=1) == alive
    assert workers(cpus=0.25, memory=GIB) == 4 * alive
    ray.init(address=cluster.address, logging_level="ERROR")
    memory = min(n["Resources"]["memory"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU"))
    ray.shutdown()
    assert workers(cpus=0.25, memory=int(memory * 0.45)) == 2 * alive  # memory is what limits
    with pytest.raises(ValueError, match="no node of the Ray cluster holds one trial"):
        workers(cpus=1, gpus=0.25)
    with pytest.raises(ValueError, match="no node of the Ray cluster holds one trial"):
        workers(cpus=1, memory=int(memory * 2))


def _alive_workers(cluster: LocalCluster) -> list[str]:
    return [n for n, p in cluster.nodes.items() if n != "head" and p.poll() is None]


def test_executor_streams_progress_epochs_and_failures(cluster, lemur, cifar_dir, tmp_path, monkeypatch):
    """RayExecutor as other parts call it: progress and epochs arrive as events while the trial runs (scored
    here, state kept here), and a model's error and a timeout come back as results."""
    from ab.gpt.brute.fract.trial import data
    from ab.gpt.brute.fract.trial import TrialLimits
    from ab.gpt.brute.fract.trial.ray_executor import RayExecutor
    from ab.gpt.brute.fract.trial.session import HISTORY, STATE
    from tests.trial.kit import INNOCENT, jail_data, model, train_trial

    for k, v in node_env().items():
        if k.startswith("RAY_"):
            monkeypatch.setenv(k, v)
    prepared = data.prepare(data.locate(cifar_dir), lemur / "out" / "cache").to_dict()  # hidden from the nodes
    ex = RayExecutor(TrialLimits(), data=jail_data(prepared), address=cluster.address, log=lambda line: None)
    try:
        events: list[tuple[str, dict]] = []
        trial = train_trial(INNOCENT, prepared, epochs=2)
        trial.state_dir = str(tmp_path)
        good = ex.submit(trial, lambda kind, d: events.append((kind, d)))
        raises = ex.submit(train_trial(model(learn="raise RuntimeError('boom in learn')"), prepared))
        hangs = ex.submit(train_trial(model(learn="while True:\n    pass"), prepared, timeout=5))
        res = good.result(timeout=300)
        assert res.status == "trained" and [e["epoch"] for e in res.epochs] == [1, 2], res
        kinds = [k for k, _ in events]
        assert "progress" in kinds and [d["epoch"] for k, d in events if k == "epoch"] == [1, 2]
        assert kinds.index("progress") < kinds.index("epoch")  # live, not replayed at the end
        assert all(0 <= e["accuracy"] <= 1 for e in res.epochs)
        assert (tmp_path / STATE).stat().st_size > 0
        assert len(json.loads((tmp_path / HISTORY).read_text())["history"]) == 2
        bad = raises.result(timeout=300)
        assert bad.status == "error" and "boom in learn" in bad.message, bad
        slow = hangs.result(timeout=300)
        assert slow.status == "timed-out", slow
    finally:
        ex.close()
