"""The evaluation sweep behind `python -m ab.gpt.NNEval`: train every generated model not yet evaluated.

The driver (this process) never imports model code. For each model it reads the file, runs the static
checks (`codecheck`), copies the checked code into the trial's work folder and hands it to an executor,
whose sandbox workers train it (`NNAlterFractalNet.train_model_file`). As trials finish, the driver
alone writes `new_lemur/` (atomically, `results.py`, `lemur/stats.py`) and registers into the DB
(`lemur/register.py`), one
model at a time, so parallel workers cannot lose or duplicate rows.

Resume: a model whose `runs/<Model>.json` exists is done and is skipped (its DB rows are re-checked).
Unfinished trials keep their state in `new_lemur/.work/<Model>/seed<k>/` (the sandbox run directory), so a
rerun after any interruption, kill -9 included, continues after the last finished epoch.
"""
from __future__ import annotations

import fnmatch
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from . import codecheck, results
from .atomic import write_text
from .data import lemur_norm, locate, prepare
from .executors import LocalExecutor, RayExecutor, classify
from .manifest import Manifest
from .NNAlterFractalNet import BEST, MODEL_FILE, PROGRESS
from .paths import lemur_root
from .sandbox import Limits

WORK = ".work"


@dataclass
class SweepConfig:
    models: Path
    out: Path
    filter: str | None = None
    limit: int | None = None
    epochs: int = 5
    batch: int = 16
    lr: float = 0.01
    momentum: float = 0.9
    dropout: float = 0.2
    transform: str = "norm_flip"
    seeds: int = 1
    seed: int = 0
    amp: bool | str = "auto"
    checkpointing: bool = True
    channels_last: bool = False
    device: str = "auto"
    data_dir: str | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    db: Path | None = None
    register: bool = True
    fetch_lemur_db: bool = False
    workers: int = 1
    executor: str = "local"
    address: str | None = None
    timeout: float = 3600.0
    memory_gb: float = 16.0
    threads: int | None = None
    save_best: bool = False
    retry_failed: bool = False
    quiet: bool = False


@dataclass
class ModelEntry:
    name: str
    path: Path
    spec: dict | None = None
    flops: int | None = None


@dataclass
class SweepOutcome:
    records: list[dict] = field(default_factory=list)  # run records of the models evaluated now
    skipped: int = 0
    registered_rows: int = 0
    db_note: str = ""
    stat_errors: list[str] = field(default_factory=list)  # models not registered: a stat file is corrupt
    summary: dict = field(default_factory=dict)
    wall_s: float = 0.0


def discover(models_dir: Path, pattern: str | None = None) -> list[ModelEntry]:
    """Models in generation order: the manifest's valid records whose file is intact, then other *.py files."""
    from .generate import file_intact

    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise FileNotFoundError(f"no models folder {models_dir}; generate models first "
                                f"(python -m ab.gpt.brute.fract.AlterNNFN) or pass --models")
    entries: dict[str, ModelEntry] = {}
    for rec in Manifest.load(models_dir).valid():
        if file_intact(models_dir, rec):
            entries[rec["name"]] = ModelEntry(rec["name"], models_dir / f"{rec['name']}.py", rec.get("spec"),
                                              rec.get("flops"))
    for p in sorted(models_dir.glob("*.py")):
        if p.stem not in entries and p.name != "__init__.py" and not p.name.startswith("."):
            entries[p.stem] = ModelEntry(p.stem, p)
    out = list(entries.values())
    if pattern:
        out = [e for e in out if fnmatch.fnmatchcase(e.name, pattern)]
    return out


def trial_config(cfg: SweepConfig, seed: int, work_dir: Path, data: dict, norm, threads: int | None) -> dict:
    return {"epochs": cfg.epochs, "batch": cfg.batch, "lr": cfg.lr, "momentum": cfg.momentum, "dropout": cfg.dropout,
            "transform": cfg.transform, "seed": seed, "amp": cfg.amp, "checkpointing": cfg.checkpointing,
            "channels_last": cfg.channels_last, "device": cfg.device, "threads": threads,
            "train_limit": cfg.train_limit, "test_limit": cfg.test_limit, "data": data, "norm": norm,
            "work_dir": str(work_dir), "save_best": cfg.save_best}


def failed_seed(seed: int, status: str, message: str) -> dict:
    return {"seed": seed, "status": status, "message": message, "epochs": [], "params": None}


class Bars:
    """A sweep bar plus one bar per running trial, fed from the trials' progress.json files."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.quiet = quiet
        self.sweep = tqdm(total=total, desc="sweep", unit="model", disable=quiet, dynamic_ncols=True)
        self.trials: dict[str, tqdm] = {}

    def poll(self, running: dict[str, Path]) -> None:
        if self.quiet:
            return
        import json

        for key, work in running.items():
            try:
                p = json.loads((work / PROGRESS).read_text())
            except (OSError, ValueError):
                continue
            bar = self.trials.get(key)
            if bar is None:
                bar = self.trials[key] = tqdm(total=p["epochs"] * p["batches"], desc=key[:48], unit="batch",
                                              leave=False, dynamic_ncols=True)
            done = (p["epoch"] - 1) * p["batches"] + p["batch"] if p["epoch"] else 0
            bar.set_postfix_str(f"epoch {p['epoch']}/{p['epochs']}", refresh=False)
            bar.update(max(0, done - bar.n))  # a resumed trial starts past zero

    def finish_trial(self, key: str) -> None:
        bar = self.trials.pop(key, None)
        if bar is not None:
            bar.close()

    def model_done(self, status: str) -> None:
        self.sweep.update(1)
        self.sweep.set_postfix_str(status, refresh=True)

    def close(self) -> None:
        for bar in self.trials.values():
            bar.close()
        self.sweep.close()


def _executor(cfg: SweepConfig, limits: Limits, run_dir: Path, cuda: bool):
    if cfg.executor == "ray":
        return RayExecutor(limits, run_dir, address=cfg.address, gpus=cuda)
    return LocalExecutor(cfg.workers, limits, run_dir)


def run_sweep(cfg: SweepConfig, say: Callable[[str], None] = print) -> SweepOutcome:
    started = time.perf_counter()
    out = Path(cfg.out).absolute()  # workers run in another directory
    outcome = SweepOutcome()
    entries = discover(cfg.models, cfg.filter)
    out.mkdir(parents=True, exist_ok=True)
    todo: list[ModelEntry] = []
    done: list[ModelEntry] = []
    for e in entries:
        rec = results.load_run(out, e.name)
        finished = rec is not None and not (cfg.retry_failed and rec["status"] != "trained")
        (done if finished else todo).append(e)
    if cfg.limit is not None:
        todo = todo[:cfg.limit]
    outcome.skipped = len(done)

    import torch

    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    record_cfg = {**asdict(cfg), "device": "cuda" if cuda else "cpu"}
    data = None
    if todo:  # bad data input fails here, before anything is created
        data = prepare(locate(cfg.data_dir), lemur_root() / "out" / "cache").to_dict()
    db = None
    if cfg.register:
        from .lemur.register import LemurDB

        db = LemurDB(cfg.db or lemur_root() / "db" / "ab.nn.db", fetch=cfg.fetch_lemur_db)
        outcome.db_note = db.note
        if db.note:
            say(db.note)
        for e in done:  # idempotent: finishes a registration a killed run may have missed
            _register(db, out, e.name, outcome, say)
    if todo:
        _evaluate(cfg, todo, out, data, lemur_norm(), cuda, record_cfg, db, outcome)
    outcome.wall_s = round(time.perf_counter() - started, 1)
    last = {"evaluated": len(outcome.records), "skipped": outcome.skipped,
            "counts": results.counts(outcome.records), "success_rate": results.success_rate(outcome.records),
            "wall_s": outcome.wall_s, "db": str(db.path) if db else None,
            "config": {k: record_cfg[k] for k in results.CONFIG_KEYS + ("dropout", "seeds", "seed", "channels_last",
                                                                        "train_limit", "test_limit", "executor",
                                                                        "workers")}}
    outcome.summary = results.write_summary(out, last)
    return outcome


def _trials(cfg: SweepConfig, todo: list[ModelEntry], run_dir: Path, finish: Callable):
    """(entry, seed, work dir, code) for each trial to run; models failing the static checks finish at once."""
    for e in todo:
        code = e.path.read_text()
        findings = codecheck.check_source(code) + codecheck.check_contract(code)
        seeds = [cfg.seed + k for k in range(cfg.seeds)]
        if findings:
            msg = "static check: " + "; ".join(map(str, findings[:3]))
            finish(e, code, [failed_seed(s, "error", msg) for s in seeds])
            continue
        for s in seeds:
            work = run_dir / e.name / f"seed{s}"
            work.mkdir(parents=True, exist_ok=True)
            model_file = work / MODEL_FILE  # the checked code itself: later edits of e.path do not leak in
            if not model_file.exists() or model_file.read_text() != code:
                write_text(model_file, code)
            yield e, s, work, code


def _evaluate(cfg, todo, out, data, norm, cuda, record_cfg, db, outcome) -> None:
    run_dir = out / WORK
    run_dir.mkdir(parents=True, exist_ok=True)
    workers = cfg.workers if cfg.executor == "local" else 1
    threads = cfg.threads or (1 if cfg.executor == "ray" and not cuda else max(1, (os.cpu_count() or 1) // workers))
    # no address-space limit on CUDA: the driver maps far more virtual memory than it uses
    limits = Limits(timeout_s=cfg.timeout, cpu_s=int(cfg.timeout * max(threads, 1)) + 120,
                    memory_gb=1e6 if cuda else cfg.memory_gb)
    bars = Bars(len(todo), cfg.quiet)
    pending: dict[Future, tuple[ModelEntry, int, Path]] = {}
    seeds_of: dict[str, list[dict]] = {}
    codes: dict[str, str] = {}

    def finish(e: ModelEntry, code: str, seeds: list[dict]) -> None:
        _finish(out, e, code, seeds, record_cfg, db, outcome, bars)

    trials = _trials(cfg, todo, run_dir, finish)
    executor = None
    try:
        while True:
            # keep a short queue per worker, so progress polling and work folders stay proportional to it
            for e, s, work, code in trials:
                if executor is None:
                    executor = _executor(cfg, limits, run_dir, cuda)
                codes[e.name] = code
                seeds_of.setdefault(e.name, [])
                conf = {**trial_config(cfg, s, work, data, norm, threads), "device": "cuda" if cuda else "cpu",
                        "name": e.name}
                pending[executor.submit(str(work / MODEL_FILE), conf, cfg.timeout)] = (e, s, work)
                if len(pending) >= 2 * executor.workers:
                    break
            if not pending:
                break
            done, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
            bars.poll({f"{e.name} s{s}": w for e, s, w in pending.values()})
            for fut in done:
                e, s, work = pending.pop(fut)
                bars.finish_trial(f"{e.name} s{s}")
                reply = fut.result()
                res = reply["result"] if reply["ok"] else failed_seed(s, classify(reply["error"]), reply["error"])
                seeds_of[e.name].append(res)
                if len(seeds_of[e.name]) == cfg.seeds:
                    seed_results = sorted(seeds_of.pop(e.name), key=lambda r: r["seed"])
                    _keep_best(cfg, out, e.name, run_dir)
                    finish(e, codes.pop(e.name), seed_results)
                    shutil.rmtree(run_dir / e.name, ignore_errors=True)
    except BaseException:
        # interrupted: leave the trials' state for a rerun; local workers stop once they see the driver gone
        bars.close()
        if executor is not None:
            executor.abort()
        raise
    bars.close()
    if executor is not None:
        executor.close()
    try:
        run_dir.rmdir()
    except OSError:
        pass


def _keep_best(cfg: SweepConfig, out: Path, name: str, run_dir: Path) -> None:
    if not cfg.save_best:
        return
    for best in (run_dir / name).glob(f"seed*/{BEST}"):
        dest = out / "ckpt" / f"{name}_{best.parent.name}.pt"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(best, dest)


def _register(db, out: Path, name: str, outcome: SweepOutcome, say: Callable[[str], None]) -> None:
    """Register one model; a corrupt stat file is reported for that model and the sweep goes on."""
    from .lemur.register import StatFileError

    try:
        outcome.registered_rows += db.register(out, name)
    except StatFileError as e:
        outcome.stat_errors.append(str(e))
        say(f"error: {e}")


def _finish(out, entry: ModelEntry, code: str, seeds: list[dict], record_cfg: dict, db, outcome, bars) -> None:
    rec = results.write_model(out, entry.name, code, entry.spec, record_cfg, seeds, entry.flops)
    if db is not None:
        _register(db, out, entry.name, outcome, lambda m: tqdm.write(m, file=sys.stderr))
    outcome.records.append(rec)
    bars.model_done(rec["status"])
