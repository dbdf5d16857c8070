"""End to end through the real CLIs in subprocesses, on an isolated LEMUR root: generate, evaluate,
check files, DB rows (through nn-dataset's own `ab.nn.api.data`), summary, rerun, kill -9, failures,
parallel workers and a local Ray sweep."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ab.gpt.brute.fract.util.cli import gpu_driver_present

from .evalkit import QUICK, RAISES, REPO, generate, run_cli

pytestmark = pytest.mark.slow

LEMUR_KEYS = {"accuracy", "batch", "lr", "momentum", "duration", "duration_seconds", "epoch_max", "metric_acc",
              "transform", "uid", "task", "dataset", "metric", "model", "train_stat"}  # tiny models: no dropout
OUR_KEYS = {"amp", "checkpointing", "channels_last", "seed", "device", "params", "flops", "wall_s", "budget",
            "self_reported", "policies"}  # under "nn_gpt_fractal"; the jail's figures under its self_reported
RUN_KEYS = {"name", "status", "message", "seeds", "spec", "config"}
SEED_KEYS = {"seed", "status", "message", "epochs", "params", "flops"}
EPOCH_KEYS = {"epoch", "accuracy", "train_loss", "val_loss", "train_accuracy", "epoch_time_s", "images_per_s",
              "peak_memory_mb"}

def nneval(root: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return run_cli("ab.gpt.NNEval", *args, cwd=root, **kw)


def db_rows(root: Path, names: list[str], db: Path | None = None) -> dict:
    """Rows per model through nn-dataset's public API, run where nn-dataset resolves this LEMUR root."""
    code = ("import json, sys, sqlite3\n"
            "import ab.nn.api as api\n"
            "from ab.nn.util.Const import db_file\n"
            "names = json.loads(sys.argv[1])\n"
            "df = api.data(nn=tuple(names)) if len(names) > 1 else api.data(nn=names[0])\n"
            "rows = {n: len(df[df.nn == n]) if len(df) else 0 for n in names}\n"
            "prm_keys = sorted(set().union(*(p.keys() for p in df.prm))) if len(df) else []\n"
            "c = sqlite3.connect(db_file)\n"
            "tables = {t: c.execute(f'select count(*) from {t}').fetchone()[0] for t in "
            "('nn', 'stat', 'prm', 'train_stat')}\n"
            "print(json.dumps({'rows': rows, 'tables': tables, 'prm_keys': prm_keys}))\n")
    proc = run_cli_code(code, json.dumps(names), cwd=root)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_cli_code(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def model_names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.py"))


def check_results(out: Path, names: list[str], epochs: int = 1, seeds: int = 1) -> None:
    for n in names:
        run = json.loads((out / "runs" / f"{n}.json").read_text())
        assert set(run) == RUN_KEYS and run["status"] == "trained", run
        assert set(run["config"]) == {"lr", "momentum", "batch", "epochs", "transform", "amp", "checkpointing",
                                      "device"}
        assert len(run["seeds"]) == seeds
        for s in run["seeds"]:
            assert set(s) == SEED_KEYS and len(s["epochs"]) == epochs
            assert all(set(e) == EPOCH_KEYS and 0 <= e["accuracy"] <= 1 for e in s["epochs"])
        assert (out / "nn" / f"{n}.py").is_file()
        for epoch in range(1, epochs + 1):
            trials = json.loads((out / "stat" / "train" / f"img-classification_cifar-10_acc_{n}" /
                                 f"{epoch}.json").read_text())
            assert len(trials) == seeds and len({t["uid"] for t in trials}) == 1  # nn-dataset's uid: prm only
            assert sorted(t["nn_gpt_fractal"]["seed"] for t in trials) == sorted({t["nn_gpt_fractal"]["seed"] for t in trials})
            for t in trials:
                assert set(t) == LEMUR_KEYS | {"nn_gpt_fractal"} and set(t["nn_gpt_fractal"]) == OUR_KEYS
                assert t["model"] == n and t["epoch_max"] == epochs
                assert {"train_loss", "test_loss", "train_accuracy", "samples_per_second"} <= set(t["train_stat"])
                # nn-dataset's columns hold only the driver's figures; the model's claims sit under self_reported
                assert t["train_stat"]["train_loss"] is None and t["train_stat"]["samples_per_second"] > 0
                assert t["nn_gpt_fractal"]["self_reported"]["train_loss"] is not None
                assert t["nn_gpt_fractal"]["params"] > 0  # a byte-identical render: the template's own count
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


def test_sweep_registers_and_resumes_without_retraining(tiny_models, lemur_root, cifar_dir):
    shutil.copytree(tiny_models, lemur_root / "out" / "fractal")  # the default --models folder
    names = model_names(tiny_models)
    first = nneval(lemur_root, *QUICK, "--data-dir", str(cifar_dir))
    assert "created an empty LEMUR DB" in first.stderr
    assert "3 evaluated (trained 3)" in first.stdout and "success rate 100.0%" in first.stdout
    out = lemur_root / "new_lemur"
    check_results(out, names)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"] == 3 and summary["counts"]["trained"] == 3 and summary["success_rate"] == 1.0
    rows = db_rows(lemur_root, names)
    assert rows["rows"] == {n: 1 for n in names}
    assert rows["prm_keys"] == sorted(LEMUR_KEYS - {"accuracy", "duration", "uid", "train_stat"})
    assert {t: rows["tables"][t] for t in ("nn", "stat", "train_stat")} == {"nn": 3, "stat": 3, "train_stat": 3}

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.json") if p.name != "summary.json"}
    again = nneval(lemur_root, *QUICK, "--data-dir", str(cifar_dir))
    assert "0 evaluated" in again.stdout and "3 already done" in again.stdout
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}, "a finished model was rewritten"
    assert db_rows(lemur_root, names) == rows, "registering twice changed the DB"


def test_failures_are_recorded_and_the_sweep_continues(lemur_root, cifar_dir, tiny_models):
    models = lemur_root / "models"
    generate(lemur_root, models, "--depth", "1", "--columns", "1", "--norm", "none", "--limit", "1")
    diverging = model_names(models)[0]
    (models / "RaisesNet.py").write_text(RAISES)
    (models / "Unsafe.py").write_text("import os\n" + RAISES)
    shutil.copy(next(tiny_models.glob("*.py")), models)
    proc = nneval(lemur_root, "--models", str(models), *QUICK, "--epochs", "2", "--lr", "10",
                  "--data-dir", str(cifar_dir), "--no-register")
    runs = {r.stem: json.loads(r.read_text()) for r in (lemur_root / "new_lemur" / "runs").glob("*.json")}
    assert len(runs) == 4, proc.stdout
    assert runs[diverging]["status"] == "diverged" and "non-finite" in runs[diverging]["message"]
    assert runs["RaisesNet"]["status"] == "error" and "cannot be built" in runs["RaisesNet"]["message"]
    assert runs["Unsafe"]["status"] == "error" and runs["Unsafe"]["message"].startswith("static check")
    summary = json.loads((lemur_root / "new_lemur" / "summary.json").read_text())
    assert sum(summary["counts"].values()) == 4 and summary["counts"]["diverged"] >= 1
    assert "success rate" in proc.stdout


def test_kill_9_mid_run_then_rerun_completes(tiny_models, lemur_root, cifar_dir):
    import os

    names = model_names(tiny_models)[:2]
    args = ["--models", str(tiny_models), "--filter", "FractalNet-N1-*", "--epochs", "3", "--train-limit", "2048",
            "--test-limit", "128", "--threads", "1", "-q", "--data-dir", str(cifar_dir)]
    names = [n for n in model_names(tiny_models) if n.startswith("FractalNet-N1-")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ab.gpt.NNEval", *args], cwd=lemur_root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = lemur_root / "new_lemur" / ".work"
    deadline = time.monotonic() + 120
    while not list(work.glob("*/seed0/state.safetensors")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(0.3)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    nneval(lemur_root, *args)
    out = lemur_root / "new_lemur"
    check_results(out, names, epochs=3)
    rows = db_rows(lemur_root, names)
    assert rows["rows"] == {n: 3 for n in names} and rows["tables"]["stat"] == 6
    assert not work.exists()


def test_parallel_workers_and_seeds(tiny_models, lemur_root, cifar_dir):
    name = model_names(tiny_models)[0]
    proc = nneval(lemur_root, "--models", str(tiny_models), "--filter", name, *QUICK, "--workers", "2",
                  "--seeds", "2", "--seed", "5", "--data-dir", str(cifar_dir), "--db", str(lemur_root / "x.db"))
    assert "1 evaluated (trained 1)" in proc.stdout
    check_results(lemur_root / "new_lemur", [name], seeds=2)
    assert (lemur_root / "x.db").is_file() and not (lemur_root / "db" / "ab.nn.db").exists()


def test_ray_sweep(tiny_models, lemur_root, cifar_dir):
    names = model_names(tiny_models)[:2]
    proc = nneval(lemur_root, "--models", str(tiny_models), "--limit", "2", *QUICK, "--executor", "ray",
                  "--data-dir", str(cifar_dir), timeout=400)
    assert "2 evaluated (trained 2)" in proc.stdout, proc.stderr
    check_results(lemur_root / "new_lemur", names)
    assert db_rows(lemur_root, names)["rows"] == {n: 1 for n in names}


def test_bad_input_is_one_line_and_exit_2(lemur_root, tiny_models, tmp_path):
    proc = nneval(lemur_root, "--models", str(tiny_models), "--data-dir", str(tmp_path / "none"), check=False)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: no CIFAR-10 batches in")
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = nneval(lemur_root, "--models", str(tmp_path / "missing"), check=False)
    assert proc.returncode == 2 and "no models folder" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out-of-empty"
    proc = nneval(lemur_root, "--models", str(empty), "--results", str(out), check=False)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: no model files (*.py) in {empty}")
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()  # nothing written for a mistake
    proc = nneval(lemur_root, "--models", str(tiny_models), "--filter", "NoSuch*", "--results", str(out), check=False)
    assert proc.returncode == 2 and "--filter 'NoSuch*' matches none of the" in proc.stderr and not out.exists()


def test_a_cpu_sweep_without_registration_never_imports_torch(lemur_root, tiny_models, cifar_dir):
    """On a machine without a GPU driver, a driver with nothing to probe needs no torch (1.5 s of every
    start): its decisions come from the cache or the defaults, models train in the jails, and only nn-dataset's
    DB functions (registration) import it."""
    code = ("import atexit, runpy, sys\n"
            "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, file=sys.stderr))\n"
            "sys.argv = ['NNEval', *sys.argv[1:]]\n"
            "runpy.run_module('ab.gpt.NNEval', run_name='__main__')\n")
    proc = run_cli_code(code, "--models", str(tiny_models), "--data-dir", str(cifar_dir), "--limit", "1",
                        "--no-register", *QUICK, cwd=lemur_root)
    assert "1 evaluated (trained 1)" in proc.stdout, proc.stderr
    assert proc.stderr.strip().endswith("torch imported: " + str(gpu_driver_present())), proc.stderr
