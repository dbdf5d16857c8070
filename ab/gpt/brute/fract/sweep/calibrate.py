"""`NNEval --plan`'s calibration: a few jailed training steps of one real model per calibration group.

Synthetic stacks (`probe.py`) are a poor stand-in for the time of a whole sweep: real models differ in
kernel size, normalisation, joins and drop-path, and tiny ones are dominated by per-step overhead. So the
plan times the sweep's own models, the way the sweep will run them: one model per calibration group (shape
class and conv layers, `plan.Entry.group`; the one with the median FLOPs), `CAL_STEPS` training steps in a
jail, with the policies the sweep would apply (`SweepPolicies`) and as many at once as the sweep's workers.
Per group it keeps the achieved training FLOP/s of the mean step after the first quarter (first steps carry
warm-up; a mean, not a median: with global drop-path half the steps run one column, and a median of such a
two-valued mix lands on either value); the per-trial overhead is the trial's wall time less its epoch.
Nothing is written to the results folder or the DB.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Callable

from ..tune.cost import TRAIN_FACTOR, drop_path_factor
from ..trial.data import lemur_norm, locate, prepare
from .evaluate import ModelEntry, SweepConfig, make_policies, sweep_gpus, trial_config, uses_cuda
from ..util.paths import lemur_root
from ..trial import Trial, TrialLimits
from ..trial.executors import LocalExecutor
from ..trial.gpus import slot_gpus

CAL_STEPS = 24  # training steps per calibration trial


def representatives(entries) -> dict[str, object]:
    """One entry per calibration group (`plan.Entry.group`): the one with the median FLOPs (ties by name)."""
    by_group: dict[str, list] = {}
    for e in entries:
        if e.spec and e.flops:
            by_group.setdefault(e.group, []).append(e)
    return {g: sorted(es, key=lambda e: (e.flops, e.name))[len(es) // 2] for g, es in by_group.items()}


def calibrate(entries, models_dir: Path, data_dir: str | None, *, batch: int, device: str, workers: int | str,
              threads: int | None, checkpointing: bool | str, cache_path: Path | None,
              echo: Callable[[str], None], trials_per_gpu: int | str = "auto",
              sweep: tuple[int, int, int] | None = None) -> tuple[dict[str, float], float, int]:
    """({calibration group: achieved training FLOP/s per worker}, per-trial overhead s, workers). `sweep`:
    (epochs, training images, seeds) of the planned sweep, which the policies' probes must pay off on."""
    reps = representatives(entries)
    data = prepare(locate(data_dir), lemur_root() / "out" / "cache").to_dict()
    cfg = SweepConfig(models=Path(models_dir), out=Path(tempfile.gettempdir()), epochs=1, batch=batch,
                      train_limit=CAL_STEPS * batch, test_limit=batch, workers=workers, threads=threads,
                      checkpointing=checkpointing, tune_cache=cache_path, register=False, quiet=True,
                      device=device, trials_per_gpu=trials_per_gpu)
    cuda = uses_cuda(cfg)
    todo = [ModelEntry(e.name, Path(models_dir) / f"{e.name}.py", e.spec, e.flops) for e in entries]
    policies, n_workers, n_threads = make_policies(cfg, todo, data, cuda, {}, echo, budget_of=sweep)
    jail_data = {k: data[k] for k in ("train_x", "train_y", "test_x")}
    rates: dict[str, float] = {}
    overheads: list[float] = []
    gpus = slot_gpus(sweep_gpus(cfg), policies.trials_per_gpu) if cuda else None
    with LocalExecutor(n_workers, TrialLimits(memory_gb=None if cuda else 16), data=jail_data, threads=n_threads,
                       cuda=cuda, gpus=gpus) as ex:
        pending: dict[Future, tuple[str, object, float]] = {}
        queue = sorted(reps.items(), key=lambda kv: (-kv[1].flops, kv[1].name))
        while queue or pending:
            while queue and len(pending) < n_workers:
                group, e = queue.pop(0)
                overrides, _ = policies.for_trial(e.spec, e.flops)
                conf = trial_config(cfg, 0, lemur_norm(), n_threads, "cuda" if cuda else "cpu", overrides)
                code = (Path(models_dir) / f"{e.name}.py").read_text()
                trial = Trial("train", code, conf, 600, labels=data["test_y"])
                pending[ex.submit(trial)] = (group, e, time.perf_counter())
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            fut = finished.pop()
            group, e, started = pending.pop(fut)
            res = fut.result()
            epoch = res.epochs[0] if res.epochs else {}
            step_s = epoch.get("mean_step_s") or epoch.get("step_s")
            if res.status != "trained" or not step_s:
                echo(f"calibration {group}: {e.name} did not train ({res.status}: {res.message[:80]}); "
                     f"its group has no estimate")
                continue
            images_per_s = batch / step_s
            rates[group] = TRAIN_FACTOR * e.flops * drop_path_factor(e.spec) * images_per_s
            overheads.append(max(0.0, time.perf_counter() - started - epoch["epoch_time_s"]))
    return rates, (statistics.median(overheads) if overheads else 0.0), n_workers
