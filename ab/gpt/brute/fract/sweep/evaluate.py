"""The evaluation sweep behind `python -m ab.gpt.NNEval`: train every generated model not yet evaluated.

The driver (this process) never imports model code. For each model it reads the file, runs the static
checks (`codecheck`, a first filter for clear early errors; the jail is the security boundary) and hands
the code text to an executor, which trains it in a bubblewrap jail (`trial/`). The jail sees the
training images and labels and the test images, never the test labels: the driver scores the logits it
sends back. As trials finish, the driver alone writes `new_lemur/` (atomically, `results.py`,
`lemur/stats.py`) and registers into the DB (`lemur/register.py`), one model at a time, so parallel trials
cannot lose or duplicate rows. Only one sweep at a time may use a results folder (a lock; a second gets a
one-line error).

Resume: a model whose `runs/<Model>.json` exists is done and is skipped (its DB rows are re-checked), except
one whose trial was killed from outside (status killed), which is retried, and one a halving sweep left
"running" (`--schedule halving` has its own rung-aware rule: sweep/halving_sweep.py). Unfinished trials keep the state
their jail sent after each epoch in `new_lemur/.work/<Model>/seed<k>/` (safetensors + the epochs so far,
written by the driver), so a rerun after any interruption, kill -9 included, continues after the last
finished epoch.
"""
from __future__ import annotations

import fnmatch
import json
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from ..util import folder_lock
from . import results
from .results import WORK
from ..trial.data import lemur_norm, locate, prepare
from ..generation.manifest import Manifest
from ..util.paths import lemur_root
from ..generation import codecheck
from .order import ORDERS
from ..trial import Trial, TrialLimits, TrialResult
from ..trial.executors import LocalExecutor, RayExecutor
from ..trial.jail import require_bwrap
from ..trial.protocol import config_hash
from ..trial.session import BEST, HISTORY, STATE
from ..tune.policies import SweepPolicies, checkpointing_record
from ..generation.generate import file_intact
from ..generation.template import render
from ..space.registry import build_registry
from ..space.spec import ArchSpec
from . import halving_sweep
from ..lemur.register import LemurDB, StatFileError
from ..util.cli import parse_device
from ..trial.gpus import Gpu, select, slot_gpus, visible_gpus
from ..tune import gpu_packing
from ..tune.synthetic import dominant_shape



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
    amp: bool | str = "auto"  # True, False or "auto" (tuned per shape class on this machine)
    checkpointing: bool | str = "auto"  # auto: decided per model from its activation memory
    channels_last: bool | str = "auto"
    compile: str = "auto"  # torch.compile: auto, on, off
    tune_cache: Path | None = None  # the per-machine tuning cache (None: tune.cache.default_path())
    device: str = "auto"  # auto, cpu, cuda (every visible GPU), cuda:N or cuda:0,2
    trials_per_gpu: int | str = "auto"  # trials sharing one GPU, or "auto" (tune/gpu_packing.py)
    data_dir: str | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    db: Path | None = None
    register: bool = True
    fetch_lemur_db: bool = False
    workers: int | str = 1  # local jailed trials at once, or "auto" (the tuner's CPU packing)
    executor: str = "local"
    address: str | None = None
    gpus_per_trial: float | None = None  # Ray: GPU share of a trial (None: 1 / trials per GPU on CUDA, else 0)
    cpus_per_trial: float = 1.0  # Ray: CPUs of a trial
    memory_per_trial_gb: float | None = None  # Ray: memory reserved per trial (None: an estimate)
    order: str = "longest"  # longest (manifest FLOPs, descending) or file
    timeout: float = 3600.0
    memory_gb: float = 16.0
    threads: int | None = None
    save_best: bool = False
    retry_failed: bool = False
    schedule: str = "full"  # full: every model gets `epochs`; halving: sweep/halving_sweep.py
    eta: int = 3  # halving: the best 1/eta of a rung go on
    rungs: tuple[int, ...] | None = None  # halving: budgets before the full one (None: make_rungs)
    min_keep: int = 1  # halving: at least this many go on from a rung
    eval_column: str | None = None  # "deepest": score a fractal net's deepest column alone (training unchanged)
    quiet: bool = False
    static_check: bool = True  # the first filter; off only to show the jail holds without it
    unsafe_no_jail: bool = False  # debugging only


class SweepBusy(OSError):
    """Another sweep holds the results folder."""


@dataclass
class ModelEntry:
    name: str
    path: Path
    spec: dict | None = None
    flops: int | None = None
    params: int | None = None
    rendered: bool = False  # the file is byte-identical to the trusted template's render of `spec`

    def trusted(self) -> dict | None:
        """params and FLOPs the driver may record as its own: only for a byte-identical render."""
        return {"params": self.params, "flops": self.flops} if self.rendered else None


def is_render(spec: dict | None, code: str, registry) -> bool:
    """Whether `code` is exactly what the template renders for `spec` (any failure: it is not)."""
    if not spec:
        return False
    try:
        return render(ArchSpec.from_dict(spec), registry) == code
    except Exception:  # noqa: BLE001 - a spec the template cannot render is simply not a trusted render
        return False


@dataclass
class SweepOutcome:
    records: list[dict] = field(default_factory=list)  # run records of the models evaluated now
    skipped: int = 0
    registered_rows: int = 0
    db_note: str = ""
    stat_errors: list[str] = field(default_factory=list)  # models not registered: a stat file is corrupt
    summary: dict = field(default_factory=dict)
    wall_s: float = 0.0
    trained_epochs: int = 0  # --schedule halving: epochs trained in this run (resumed ones not counted)


def discover(models_dir: Path, pattern: str | None = None) -> list[ModelEntry]:
    """Models in generation order: the manifest's valid records whose file is intact, then other *.py files."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise FileNotFoundError(f"no models folder {models_dir}; generate models first "
                                f"(python -m ab.gpt.brute.fract.AlterNNFN) or pass --models")
    entries: dict[str, ModelEntry] = {}
    registry = None
    for rec in Manifest.load(models_dir).valid():
        if file_intact(models_dir, rec):
            path = models_dir / f"{rec['name']}.py"
            if rec.get("spec") and registry is None:
                registry = build_registry()
            entries[rec["name"]] = ModelEntry(rec["name"], path, rec.get("spec"), rec.get("flops"), rec.get("params"),
                                              is_render(rec.get("spec"), path.read_text(), registry))
    for p in sorted(models_dir.glob("*.py")):
        if p.stem not in entries and p.name != "__init__.py" and not p.name.startswith("."):
            entries[p.stem] = ModelEntry(p.stem, p)
    out = list(entries.values())
    if not out:
        raise FileNotFoundError(f"no model files (*.py) in {models_dir}; generate models first "
                                f"(python -m ab.gpt.brute.fract.AlterNNFN --models {models_dir}) or pass --models")
    if pattern:
        out = [e for e in out if fnmatch.fnmatchcase(e.name, pattern)]
        if not out:
            raise FileNotFoundError(f"--filter {pattern!r} matches none of the {len(entries)} models in "
                                    f"{models_dir}; model names look like {next(iter(entries))}")
    return out


def trial_config(cfg: SweepConfig, seed: int, norm, threads: int | None, device: str,
                 policies: dict | None = None) -> dict:
    """The runner's config of one trial; `policies` are the driver's resolved `auto` decisions."""
    conf = {"epochs": cfg.epochs, "batch": cfg.batch, "lr": cfg.lr, "momentum": cfg.momentum, "dropout": cfg.dropout,
            "transform": cfg.transform, "seed": seed, "amp": cfg.amp, "checkpointing": cfg.checkpointing,
            "channels_last": cfg.channels_last, "compile": cfg.compile == "on", "device": device, "threads": threads,
            "train_limit": cfg.train_limit, "test_limit": cfg.test_limit, "norm": [list(v) for v in norm],
            "save_best": cfg.save_best, "eval_batch": 256, "eval_column": cfg.eval_column, **(policies or {})}
    conf["config_hash"] = config_hash(conf)
    return conf


def failed_seed(seed: int, status: str, message: str) -> dict:
    return {"seed": seed, "status": status, "message": message, "epochs": [], "params": None}


def seed_result(name: str, seed: int, conf: dict, res: TrialResult, resumed: int, policies: dict | None = None,
                checkpointing_mode: bool | str = "auto", trusted: dict | None = None) -> dict:
    """One seed's record: the driver's decisions and measurements as such; what only the jail could say
    (params of a file that is not a trusted render, an `auto` choice made inside) under `self_reported`."""
    info = res.value or {}
    claims: dict = {}

    def decided(key: str) -> bool | str:
        if isinstance(conf.get(key), bool):
            return conf[key]
        claims[key] = bool(info.get(key, False))  # `auto` left to the jail: its own word
        return "auto"

    params = (trusted or {}).get("params")
    if params is None:
        claims["params"] = info.get("params")
    return {"name": name, "seed": seed, "status": res.status, "message": res.message,
            "params": params, "flops": (trusted or {}).get("flops"), "device": conf["device"],
            "amp": decided("amp"), "checkpointing": decided("checkpointing"),
            "channels_last": conf["channels_last"] is True, "threads": conf["threads"],
            "resumed_epochs": resumed, "epochs": res.epochs, "budget": res.budget, "self_reported": claims,
            "policies": {**(policies or {}), **checkpointing_record(checkpointing_mode, info),
                         "compile": bool(info.get("compile", False)),  # as the trial reports it did
                         **compile_seconds(conf, res.epochs, resumed)}}


def compile_seconds(conf: dict, epochs: list[dict], resumed: int) -> dict:
    """With torch.compile, what it cost: the first step of the first epoch run now, less a normal step."""
    if not conf.get("compile") or len(epochs) <= resumed:
        return {}
    e = epochs[resumed]
    if e.get("first_step_s") is None or e.get("step_s") is None:
        return {}
    return {"compile_s": round(max(0.0, e["first_step_s"] - e["step_s"]), 2)}


class Bars:
    """A sweep bar plus one bar per running trial, fed from the trials' progress events."""

    def __init__(self, total: int, quiet: bool, epochs: int = 1) -> None:
        self.quiet, self.epochs = quiet, epochs
        self.sweep = tqdm(total=total, desc="sweep", unit="model", disable=quiet, dynamic_ncols=True)
        self.trials: dict[str, tqdm] = {}
        self.latest: dict[str, dict] = {}  # written by executor threads, read by poll()

    def event(self, key: str):
        def on_event(kind: str, data: dict) -> None:
            if kind == "progress":
                self.latest[key] = dict(data)
        return on_event

    def poll(self) -> None:
        if self.quiet:
            return
        for key, p in list(self.latest.items()):
            bar = self.trials.get(key)
            if bar is None:
                bar = self.trials[key] = tqdm(total=self.epochs * p["batches"], desc=key[:48], unit="batch",
                                              leave=False, dynamic_ncols=True)
            done = max(0, (p["epoch"] - 1) * p["batches"] + p["batch"]) if p["epoch"] else 0
            bar.set_postfix_str(f"epoch {p['epoch']}/{self.epochs}", refresh=False)
            bar.update(max(0, done - bar.n))  # a resumed trial starts past zero

    def finish_trial(self, key: str) -> None:
        self.latest.pop(key, None)
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


def exclusive(out: Path):
    """One sweep at a time per results folder: two would each think the other's trials are theirs."""
    return folder_lock.hold(out, SweepBusy(f"another NNEval run is using {out}; wait for it to finish or "
                                           f"choose another --results"))


def run_sweep(cfg: SweepConfig, say: Callable[[str], None] = print) -> SweepOutcome:
    out = Path(cfg.out).absolute()
    entries = discover(cfg.models, cfg.filter)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out):
        return _sweep(cfg, entries, out, say)


def _sweep(cfg: SweepConfig, entries: list[ModelEntry], out: Path, say) -> SweepOutcome:
    started = time.perf_counter()
    outcome = SweepOutcome()
    todo: list[ModelEntry] = []
    done: list[ModelEntry] = []
    for e in entries:
        rec = results.load_run(out, e.name)
        finished = rec is not None and rec["status"] != "killed" and not (cfg.retry_failed and rec["status"] != "trained")
        finished = finished and (rec.get("schedule") or {}).get("state") != "running"  # halving may go on
        (done if finished else todo).append(e)
        if finished:  # a run killed between its record and its clean-up left the work folder
            shutil.rmtree(out / WORK / e.name, ignore_errors=True)
    if cfg.limit is not None:
        todo = todo[:cfg.limit]
    todo = ORDERS[cfg.order](todo)
    if cfg.schedule == "halving":  # the whole halving population, decided rung by rung from the records

        todo, done = halving_sweep.select(cfg, entries, out)
    outcome.skipped = len(done)

    cuda = uses_cuda(cfg)
    record_cfg = {**asdict(cfg), "device": "cuda" if cuda else "cpu"}
    if cuda and cfg.executor == "local":
        record_cfg["gpus"] = [g.label for g in sweep_gpus(cfg)]
    data = None
    if todo:  # bad data input fails here, before anything is created
        data = prepare(locate(cfg.data_dir), lemur_root() / "out" / "cache").to_dict()
    db = None
    if cfg.register:
        db = LemurDB(cfg.db or lemur_root() / "db" / "ab.nn.db", fetch=cfg.fetch_lemur_db)
        outcome.db_note = db.note
        if db.note:
            say(db.note)
        for e in done:  # idempotent: finishes a registration a killed run may have missed
            _register(db, out, e.name, outcome, say)
    if todo:
        evaluate = partial(_evaluate, say=say) if cfg.schedule != "halving" else \
            partial(halving_sweep.evaluate, train=partial(_evaluate, say=say), register=_register)  # rungs run on _evaluate
        evaluate(cfg, todo, out, data, lemur_norm(), cuda, record_cfg, db, outcome)
    try:
        (out / WORK).rmdir()
    except OSError:
        pass
    outcome.wall_s = round(time.perf_counter() - started, 1)
    last = {"evaluated": len(outcome.records), "skipped": outcome.skipped,
            "counts": results.counts(outcome.records), "success_rate": results.success_rate(outcome.records),
            "wall_s": outcome.wall_s, "db": str(db.path) if db else None,
            "config": {k: record_cfg[k] for k in results.CONFIG_KEYS + ("dropout", "seeds", "seed", "channels_last",
                                                                        "train_limit", "test_limit", "executor",
                                                                        "workers")}}
    if cfg.schedule == "halving":
        last["schedule"] = halving_sweep.report(cfg, entries, out, outcome)
    outcome.summary = results.write_summary(out, last)
    return outcome


def _trials(cfg: SweepConfig, todo: list[ModelEntry], run_dir: Path, finish: Callable):
    """(entry, seed, work dir, code) for each trial to run; models failing the static checks finish at once.
    The code is read once here: later edits of the file do not change what is trained and recorded."""
    for e in todo:
        code = e.path.read_text()
        findings = (codecheck.check_source(code) + codecheck.check_contract(code)) if cfg.static_check else []
        seeds = [cfg.seed + k for k in range(cfg.seeds)]
        if findings:
            msg = "static check: " + "; ".join(map(str, findings[:3]))
            finish(e, code, [failed_seed(s, "error", msg) for s in seeds])
            continue
        for s in seeds:
            work = run_dir / e.name / f"seed{s}"
            work.mkdir(parents=True, exist_ok=True)
            yield e, s, work, code


def saved_progress(work: Path, conf: dict) -> tuple[list[dict], bytes | None]:
    """(epochs so far, state) a killed run left for this trial, if made under the same config."""
    try:
        saved = json.loads((work / HISTORY).read_text())
        state = (work / STATE).read_bytes()
    except (OSError, ValueError):
        return [], None
    history = saved.get("history") if isinstance(saved, dict) else None
    if saved.get("config_hash") != conf["config_hash"] or not isinstance(history, list) or \
            len(history) > conf["epochs"]:
        return [], None
    return history, state


def uses_cuda(cfg: SweepConfig) -> bool:
    """Whether the sweep's trials train on GPUs (a Ray sweep: on the nodes' GPUs, whatever the driver has)."""
    choice = parse_device(cfg.device)
    if choice.kind == "cpu":
        return False
    if cfg.executor == "ray" and cfg.gpus_per_trial is not None:
        return cfg.gpus_per_trial > 0
    return choice.kind == "cuda" or bool(visible_gpus())


def sweep_gpus(cfg: SweepConfig) -> list[Gpu]:
    """The local GPUs the sweep's jails use (--device), [] on the CPU; ValueError for a GPU not here."""
    if cfg.executor != "local":
        return []
    return select(parse_device(cfg.device), visible_gpus())


def ray_gpus_per_trial(cfg: SweepConfig, cuda: bool, trials_per_gpu: int) -> float:
    """Ray's GPU share of one trial: --gpus-per-trial, else 1/K of the --trials-per-gpu decision (0 on CPU)."""
    if not cuda:
        return 0.0
    return float(cfg.gpus_per_trial) if cfg.gpus_per_trial is not None else 1.0 / max(1, trials_per_gpu)


def _executor(cfg: SweepConfig, limits: TrialLimits, run_dir: Path, cuda: bool, data: dict, threads: int,
              workers: int = 1, trials_per_gpu: int = 1):
    jail_data = {k: data[k] for k in ("train_x", "train_y", "test_x")}  # never the test labels
    if cfg.executor == "ray":
        gpus = ray_gpus_per_trial(cfg, cuda, trials_per_gpu)
        memory = int(cfg.memory_per_trial_gb * 2**30) if cfg.memory_per_trial_gb else None
        return RayExecutor(limits, data=jail_data, address=cfg.address, gpus=gpus,
                           cpus=cfg.cpus_per_trial, memory=memory, threads=threads)
    gpus = slot_gpus(sweep_gpus(cfg), trials_per_gpu) if cuda else None
    return LocalExecutor(workers, limits, scratch=None, data=jail_data, threads=threads, cuda=cuda,
                         unsafe_no_jail=cfg.unsafe_no_jail, gpus=gpus)


def make_policies(cfg: SweepConfig, todo: list[ModelEntry], data: dict, cuda: bool, record_cfg: dict,
                  say: Callable[[str], None], population: list[ModelEntry] | None = None,
                  budget_of: tuple[int, int, int] | None = None) -> tuple[SweepPolicies, int, int]:
    """The sweep's policy resolver and its (workers, threads); `--workers auto` is decided here and noted
    in the run's config record. `population` (default `todo`) is what the packing is decided for: a halving
    rung passes the whole schedule's models, so a model trains with the same threads in every rung (the
    thread count changes a kernel's summation order, and so the numbers). The probes' budget is set from
    the population's estimated training time, or from `budget_of` (epochs, training images, seeds) when the
    sweep the decisions are for is another (the plan's calibration)."""
    import numpy as np

    train_images = len(np.load(data["train_x"], mmap_mode="r", allow_pickle=False))
    if cfg.train_limit:
        train_images = min(train_images, cfg.train_limit)
    pol = SweepPolicies(cfg.amp, cfg.channels_last, cfg.compile, cfg.checkpointing, "cuda" if cuda else "cpu",
                        cfg.batch, cfg.epochs, train_images, cfg.tune_cache, say, seeds=cfg.seeds, budget_of=budget_of)
    cores = len(os.sched_getaffinity(0))
    population = population or todo
    gpus = sweep_gpus(cfg) if cuda else []
    if gpus:  # the driver's probes run on the sweep's first GPU
        import torch  # heavy: a CPU sweep whose decisions are all cached never imports it

        torch.cuda.set_device(gpus[0].index)
    pol.prepare([(e.spec, e.flops) for e in population])
    if cuda and (gpus or cfg.executor == "ray"):
        probe_on = gpus or (visible_gpus()[:1] if cfg.executor == "ray" else [])  # Ray: the driver's GPU
        per_gpu, rec = decide_trials_per_gpu(cfg, pol, population, probe_on, say)
        pol.trials_per_gpu = per_gpu
        record_cfg["trials_per_gpu"], record_cfg["gpu_packing"] = per_gpu, rec
    if gpus:
        torch.cuda.empty_cache()  # what the driver's probes cached goes back to the trials
    if cfg.executor == "ray":
        return pol, 1, cfg.threads or max(1, int(cfg.cpus_per_trial))
    if gpus:  # K trials on each GPU; the CPU cores shared among all of them
        workers = len(gpus) * pol.trials_per_gpu
        threads = max(1, cores // workers)
        record_cfg["workers"] = workers
    elif cfg.workers == "auto":
        workers, threads, rec = pol.packing([(e.spec, e.flops) for e in population], cores)
        if workers > len(population) * cfg.seeds:  # fewer trials than workers: give each the cores
            workers = len(population) * cfg.seeds
            threads = max(1, cores // workers)
        record_cfg["workers"], record_cfg["packing"] = workers, rec
    else:
        workers, threads = int(cfg.workers), max(1, cores // int(cfg.workers))
    pol.workers = workers
    return pol, workers, cfg.threads or threads


def decide_trials_per_gpu(cfg: SweepConfig, pol: SweepPolicies, population: list[ModelEntry], gpus: list[Gpu],
                          say: Callable[[str], None]) -> tuple[int, dict]:
    """(trials per GPU, record): --trials-per-gpu K, or auto: the packing probe of the sweep's dominant shape
    class on the first of `gpus` (the sweep's; for Ray, the driver's own), cached per GPU model; a Ray driver
    without a GPU keeps 1."""
    if cfg.trials_per_gpu != "auto":
        k = int(cfg.trials_per_gpu)
        return k, {"trials_per_gpu": k, "reason": f"--trials-per-gpu {k}"}
    if cfg.executor == "ray" and cfg.gpus_per_trial is not None:
        return 1, {"trials_per_gpu": 1, "reason": f"--gpus-per-trial {cfg.gpus_per_trial:g}"}
    if not gpus:
        return 1, {"trials_per_gpu": 1, "reason": "auto: no local GPU to probe; 1 trial per GPU"}
    trials = len(population) * cfg.seeds
    if trials <= len(gpus):
        return 1, {"trials_per_gpu": 1, "reason": f"auto: {trials} trial(s) on {len(gpus)} GPU(s), nothing to pack"}
    shape = dominant_shape([(e.spec, e.flops) for e in population])
    variant = pol.variant_for(shape)
    device = f"cuda:{gpus[0].index}"
    if gpu_packing.cached(shape, cfg.batch, variant, device, pol.cache) is None \
            and not pol.budget.allows(gpu_packing.PROBE_S):  # a sweep too short for the probe to pay
        why = pol.budget.refusal("trials per GPU", gpu_packing.PROBE_S)
        say(f"trials per GPU auto: 1 ({why})")
        return 1, {"trials_per_gpu": 1, "reason": f"auto: 1 trial per GPU, {why}", "shape": shape.key}
    entry, cached = gpu_packing.measure(shape, cfg.batch, variant, device, pol.cache)
    if not cached:
        pol.budget.spend(float(entry.get("probe_s") or gpu_packing.PROBE_S))
    d = gpu_packing.decide(gpu_packing.figures(entry), int(entry["peak_bytes"]), gpus[0].memory)
    k = min(d["trials_per_gpu"], -(-trials // len(gpus)))  # no slot left idle
    say(f"trials per GPU auto: {d['reason']} (class {shape.key}, {variant}"
        + (", cached)" if cached else f", probed in {entry.get('probe_s', 0):.0f} s)"))
    return k, {"trials_per_gpu": k, "reason": d["reason"], "shape": shape.key, "variant": variant,
               "measured": entry["measured"], "peak_bytes": entry["peak_bytes"]}


def _evaluate(cfg, todo, out, data, norm, cuda, record_cfg, db, outcome, say=print, write_model=None,
              population=None) -> None:
    """Train `todo`; each model's files are written by `write_model` (results.write_model's signature) and its
    work folder deleted, unless `write_model` is given: then the caller keeps and cleans up the state.
    `population`: the models the CPU packing is decided for (`make_policies`), default `todo`."""
    run_dir = out / WORK
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.executor == "local" and not cfg.unsafe_no_jail:
        require_bwrap()  # no jail, no sweep: say so before any probing
    policies, workers, threads = make_policies(cfg, todo, data, cuda, record_cfg, say, population)
    # no address-space limit on CUDA: the driver maps far more virtual memory than it uses (the per-trial
    # cgroup, where there is one, counts only what is resident: it holds on CUDA too)
    limits = TrialLimits(cpu_s=int(cfg.timeout * max(threads, 1)) + 120, memory_gb=None if cuda else cfg.memory_gb)
    bars = Bars(len(todo), cfg.quiet, cfg.epochs)
    pending: dict[Future, tuple[ModelEntry, int, Path, dict, int, dict]] = {}
    seeds_of: dict[str, list[dict]] = {}
    codes: dict[str, str] = {}
    device = "cuda" if cuda else "cpu"
    n_train = len(np.load(data["train_y"], mmap_mode="r", allow_pickle=False))  # what each epoch trains on
    n_train = min(n_train, cfg.train_limit) if cfg.train_limit else n_train

    def finish(e: ModelEntry, code: str, seeds: list[dict]) -> None:
        _finish(out, e, code, seeds, record_cfg, db, outcome, bars, write_model or results.write_model)

    def settle(e: ModelEntry, s: int, conf: dict, res: TrialResult, resumed: int, pol: dict) -> None:
        seeds_of[e.name].append(seed_result(e.name, s, conf, res, resumed, pol, cfg.checkpointing, e.trusted()))
        if len(seeds_of[e.name]) == cfg.seeds:
            seed_results = sorted(seeds_of.pop(e.name), key=lambda r: r["seed"])
            _keep_best(cfg, out, e.name, run_dir)
            finish(e, codes.pop(e.name), seed_results)
            if write_model is None:
                shutil.rmtree(run_dir / e.name, ignore_errors=True)

    trials = _trials(cfg, todo, run_dir, finish)
    executor = None
    try:
        while True:
            # a trial is handed over only when a jail is free for it: nothing waits in a queue
            while executor is None or executor.free() > 0:
                item = next(trials, None)
                if item is None:
                    break
                e, s, work, code = item
                codes[e.name] = code
                seeds_of.setdefault(e.name, [])
                overrides, pol = policies.for_trial(e.spec, e.flops)
                conf = {**trial_config(cfg, s, norm, threads, device, overrides), "name": e.name}
                history, state = saved_progress(work, conf)
                diverged = bool(history) and (history[-1].get("accuracy") is None or history[-1].get("train_loss") is None)
                if history and (len(history) == cfg.epochs or diverged):
                    # finished before the run was interrupted: nothing left to train
                    res = TrialResult("diverged" if diverged else "trained",
                                      f"non-finite loss in epoch {history[-1]['epoch']}" if diverged else "",
                                      {}, history)
                    settle(e, s, conf, res, len(history), pol)
                    continue
                if executor is None:
                    executor = _executor(cfg, limits, run_dir, cuda, data, threads, workers, policies.trials_per_gpu)
                trial = Trial("train", code, conf, cfg.timeout, labels=data["test_y"], resume=state,
                              history=history, state_dir=str(work), train_images=n_train)
                pending[executor.submit(trial, bars.event(f"{e.name} s{s}"))] = (e, s, work, conf, len(history), pol)
            if not pending:
                break
            done, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
            bars.poll()
            for fut in done:
                e, s, work, conf, resumed, pol = pending.pop(fut)
                bars.finish_trial(f"{e.name} s{s}")
                settle(e, s, conf, fut.result(), resumed, pol)
    except BaseException:
        # interrupted: leave the trials' state for a rerun; the jails die with their driver
        bars.close()
        if executor is not None:
            executor.abort()
        raise
    bars.close()
    if executor is not None:
        executor.close()


def _keep_best(cfg: SweepConfig, out: Path, name: str, run_dir: Path) -> None:
    if not cfg.save_best:
        return
    for best in (run_dir / name).glob(f"seed*/{BEST}"):
        dest = out / "ckpt" / f"{name}_{best.parent.name}.safetensors"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(best, dest)


def _register(db, out: Path, name: str, outcome: SweepOutcome, say: Callable[[str], None]) -> None:
    """Register one model; a corrupt stat file is reported for that model and the sweep goes on."""
    try:
        outcome.registered_rows += db.register(out, name)
    except StatFileError as e:
        outcome.stat_errors.append(str(e))
        say(f"error: {e}")


def _finish(out, entry: ModelEntry, code: str, seeds: list[dict], record_cfg: dict, db, outcome, bars,
            write_model=results.write_model) -> None:
    rec = write_model(out, entry.name, code, entry.spec, record_cfg, seeds, entry.flops)
    if db is not None:
        _register(db, out, entry.name, outcome, lambda m: tqdm.write(m, file=sys.stderr))
    outcome.records.append(rec)
    bars.model_done(rec["status"])
