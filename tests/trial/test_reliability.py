"""Reliability of the trial layer and the sweep: jail refusal, sweep lock, killed trials, a really bounded
queue, work folders after the last epoch, protocol errors from a jail, a bounded stderr tail."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ab.gpt.brute.fract.trial import data
from ab.gpt.brute.fract.sweep import evaluate
from ab.gpt.brute.fract.sweep.evaluate import SweepConfig, run_sweep
from ab.gpt.brute.fract.trial import JailError, TrialLimits
from ab.gpt.brute.fract.trial.executors import LocalExecutor
from ab.gpt.brute.fract.trial.session import STDERR_TAIL

from .kit import INNOCENT, driver_uids, jail_data, model, model_processes, train_trial

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prepared(cifar_dir, tmp_path_factory):
    return data.prepare(data.locate(cifar_dir), tmp_path_factory.mktemp("cache")).to_dict()


@pytest.fixture
def root(tmp_path, monkeypatch):
    """An isolated LEMUR root as the current directory, with a models folder."""
    (tmp_path / "ab").mkdir()
    (tmp_path / "README.md").write_text("test root\n")
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NN_GPT_FRACTAL_ROOT", raising=False)
    return tmp_path


def sweep_config(root: Path, cifar_dir: Path, **over) -> SweepConfig:
    base = dict(models=root / "models", out=root / "new_lemur", epochs=1, train_limit=256, test_limit=64,
                threads=1, register=False, quiet=True, data_dir=str(cifar_dir), amp=False, checkpointing=False)
    return SweepConfig(**{**base, **over})


def nneval(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "ab.gpt.NNEval", *args], cwd=root, env=full, capture_output=True,
                          text=True, timeout=300)


def test_no_bwrap_means_one_line_and_no_model_code(root, cifar_dir, monkeypatch):
    (root / "models" / "Innocent.py").write_text(INNOCENT)
    monkeypatch.setenv("PATH", str(root / "empty"))
    with pytest.raises(JailError, match="bubblewrap .bwrap. is not installed"):
        LocalExecutor(1, TrialLimits())
    proc = nneval(root, "--models", "models", "--data-dir", str(cifar_dir), "--no-register", "-q",
                  env={"PATH": str(root / "empty")})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "refusing to run model code" in proc.stderr
    assert not (root / "new_lemur" / "runs").exists()  # no model ran, nothing was recorded


def test_a_second_sweep_on_the_same_results_folder_gets_one_line_and_exit_2(root, cifar_dir):
    (root / "models" / "Innocent.py").write_text(INNOCENT)
    out = root / "new_lemur"
    out.mkdir()
    with evaluate.exclusive(out):
        proc = nneval(root, "--models", "models", "--data-dir", str(cifar_dir), "--no-register", "-q")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "another NNEval run is using" in proc.stderr
    assert not (out / "runs").exists()


def test_a_model_killed_from_outside_is_recorded_as_killed_and_retried(root, cifar_dir):
    (root / "models" / "Sleeper.py").write_text(model(learn="import time\ntime.sleep(4)"))
    cfg = sweep_config(root, cifar_dir, static_check=False)  # (time.sleep is not on the static allowlist)
    killed: list[int] = []
    over = threading.Event()

    def killer() -> None:
        seen = None
        while not killed and not over.is_set():
            pids = model_processes(driver_uids(os.getpid()))  # this process's jails only
            seen = (seen or time.monotonic()) if pids else None
            if seen and time.monotonic() - seen > 0.5:  # inside learn()
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)

    t = threading.Thread(target=killer)
    t.start()
    try:
        first = run_sweep(cfg, say=lambda m: None)
    finally:
        over.set()
        t.join()
    assert killed, first.records
    rec = first.records[0]
    assert rec["status"] == "killed" and rec["message"] == "killed by SIGKILL", rec
    second = run_sweep(cfg, say=lambda m: None)  # killed is not done: retried
    assert [r["status"] for r in second.records] == ["trained"] and second.skipped == 0
    third = run_sweep(cfg, say=lambda m: None)
    assert third.records == [] and third.skipped == 1


def test_the_sweep_never_queues_a_trial_it_cannot_start(root, cifar_dir, monkeypatch):
    for k in range(3):
        (root / "models" / f"M{k}.py").write_text(model(init=f"self.k = {k}"))
    seen: list[tuple[int, int]] = []
    real = LocalExecutor.submit

    def submit(self, trial, on_event=None):
        seen.append((self.free(), self.workers))
        return real(self, trial, on_event)

    monkeypatch.setattr(LocalExecutor, "submit", submit)
    out = run_sweep(sweep_config(root, cifar_dir, workers=1), say=lambda m: None)
    assert [r["status"] for r in out.records] == ["trained"] * 3
    assert seen == [(1, 1)] * 3  # each submitted only when its jail was free


def test_a_trial_finished_before_an_interruption_leaves_no_work_folder(root, cifar_dir, prepared):
    (root / "models" / "Innocent.py").write_text(INNOCENT)
    cfg = sweep_config(root, cifar_dir)
    out = root / "new_lemur"
    # what a run killed right after the last epoch's state leaves behind
    conf = {**evaluate.trial_config(cfg, 0, data.lemur_norm(), 1, "cpu"), "name": "Innocent"}
    work = out / evaluate.WORK / "Innocent" / "seed0"
    work.mkdir(parents=True)
    real = evaluate.prepare(evaluate.locate(cfg.data_dir), root / "out" / "cache").to_dict()
    with LocalExecutor(1, TrialLimits(), data=jail_data(real)) as ex:
        trial = train_trial(INNOCENT, real)
        trial.config, trial.state_dir = conf, str(work)
        done = ex.submit(trial).result()
    assert done.status == "trained" and (work / "history.json").exists()
    res = run_sweep(cfg, say=lambda m: None)
    rec = res.records[0]
    assert rec["status"] == "trained"
    assert rec["seeds"][0]["epochs"][0]["accuracy"] == done.epochs[0]["accuracy"]
    assert not (out / evaluate.WORK).exists()
    # a run killed between writing the record and removing the folder: the rerun removes it
    (out / evaluate.WORK / "Innocent" / "seed0").mkdir(parents=True)
    again = run_sweep(cfg, say=lambda m: None)
    assert again.skipped == 1 and not (out / evaluate.WORK).exists()


FORGED = {
    "wrong logits shape": "struct.pack('>I', len(h := json.dumps({'type': 'epoch', 'epoch': 1, 'train_loss': 1.0, "
                          "'train_accuracy': 0.5, 'images': 1, 'train_time_s': 1.0, 'epoch_time_s': 1.0, "
                          "'peak_memory_mb': 1.0, 'gradient_norm': 1.0, 'diverged': False, 'sizes': [12, 0]}).encode())) "
                          "+ h + b'x' * 12",
    "NaN in a header": "struct.pack('>I', len(h := b'{\"type\": \"progress\", \"epoch\": NaN, \"batch\": 0, "
                       "\"batches\": 1, \"sizes\": []}')) + h",
    "oversized header": "struct.pack('>I', 2 ** 31) + b'x' * 64",
    "unexpected message": "struct.pack('>I', len(h := b'{\"type\": \"accuracy\", \"value\": 1.0, \"sizes\": []}')) + h",
}


@pytest.mark.parametrize("name", list(FORGED))
def test_a_malformed_message_fails_only_its_trial(name, prepared):
    code = model(init=("import json, os, struct\nframe = " + FORGED[name] +
                       "\nfor fd in range(3, 64):\n    try:\n        os.write(fd, frame)\n    except OSError:\n"
                       "        pass"))
    with LocalExecutor(1, TrialLimits(), data=jail_data(prepared)) as ex:
        alone = ex.submit(train_trial(INNOCENT, prepared)).result()
        bad = ex.submit(train_trial(code, prepared)).result()
        after = ex.submit(train_trial(INNOCENT, prepared)).result()
    assert bad.status == "error" and bad.message.startswith("protocol error"), bad
    assert after.status == "trained" and after.epochs == [
        {**e, **{k: after.epochs[0][k] for k in ("epoch_time_s", "train_time_s", "images_per_s",
                                                  "peak_memory_mb", "duration_ns", "wall_s", "samples_per_second",
                                                  "system", "first_step_s", "step_s", "mean_step_s")}}
        for e in alone.epochs]


def test_the_driver_keeps_only_a_bounded_tail_of_a_jails_stderr(prepared):
    code = model(init="import sys\nfor _ in range(4000):\n    sys.stderr.write('noise ' * 100 + '\\n')\n"
                      "sys.stderr.write('LAST LINE\\n')\nsys.stderr.flush()\nraise ValueError('done talking')")
    with LocalExecutor(1, TrialLimits(), data=jail_data(prepared)) as ex:
        res = ex.submit(train_trial(code, prepared)).result()
        tail = ex._jails[0].tail
        assert res.status == "error" and "done talking" in res.message
        time.sleep(0.5)
        assert tail.size <= STDERR_TAIL + 4096 and len(tail.text()) <= STDERR_TAIL
        assert "LAST LINE" in tail.text()
