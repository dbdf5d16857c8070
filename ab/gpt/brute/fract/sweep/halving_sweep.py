"""`NNEval --schedule halving`: successive halving (halving.py), run rung by rung on the sweep's own trials.

The population is every model of the sweep (after --filter) that has no final record of another schedule:
fresh models and those whose record belongs to this halving run; --limit caps it (in discovery order, so a
rerun finds the same population). Each round asks `halving.step` what the records imply, trains the
rung's models to its budget with `evaluate._evaluate` (each resumes from its saved state in
`.work/<Model>/seed<k>/`, kept while the model may go on), which writes every finished epoch (stat files;
DB rows, content-keyed, so epochs a model already had are not added again) and then the model's record:

    runs/<Model>.json  "schedule": {"name": "halving", "rungs": [1, 3], "eta": 3, "min_keep": 1,
                                    "state": "running" | "stopped" | "finished", "stop": Stop.as_record() | null}

The decisions come from the records' accuracies alone; "state" is rewritten from them every round, so a
rerun after kill -9 at any point derives the same schedule and trains only what is missing. A model's work
folder is deleted once it is stopped or finished (except a killed trial's: it is retried on the next run,
from its saved state). The stat files' epoch_max is the full budget (--epochs) at every rung, so a model
that goes on keeps the same nn-dataset uid and its earlier epochs' files stay byte-identical.

Mixing schedules in one results folder: a halving run's records must match the rungs/eta/min_keep given
(a one-line error otherwise). `--schedule full` counts halving's stopped and finished models as done (their
state is gone: training them further would redo and re-register their early epochs) and continues models
a killed halving run left "running" up to --epochs.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable

import click

from . import results
from .results import WORK
from ..util.atomic import write_json
from .order import ORDERS
from .halving import Rungs, Schedule, Trial, parse_budgets, step, sweep_rungs, trial_from_run

NAME = "halving"


class RungsParam(click.ParamType):
    """`--rungs 1,3`: increasing positive epoch counts."""

    name = "rungs"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return parse_budgets(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


def rungs_of(cfg) -> Rungs:
    """The rungs of a sweep config: --rungs (the full budget --epochs appended) or make_rungs(epochs, eta)."""
    return sweep_rungs(cfg.epochs, cfg.eta, cfg.rungs, cfg.min_keep)


def schedule_record(rungs: Rungs, state: str, stop=None) -> dict:
    return {"name": NAME, "rungs": list(rungs.budgets), "eta": rungs.eta, "min_keep": rungs.min_keep,
            "state": state, "stop": stop.as_record() if stop is not None else None}


def schedule_of(rec: dict | None) -> dict | None:
    s = (rec or {}).get("schedule")
    return s if isinstance(s, dict) and s.get("name") == NAME else None


def _fresh(rec: dict | None, cfg) -> bool:
    """No usable record: none yet, or a failure --retry-failed asks to train again (from scratch)."""
    return rec is None or (cfg.retry_failed and rec["status"] not in ("trained", "killed"))


def _check_same(out: Path, s: dict, rungs: Rungs) -> None:
    if s.get("rungs") != list(rungs.budgets) or s.get("eta") != rungs.eta or s.get("min_keep") != rungs.min_keep:
        raise ValueError(f"{out} holds a halving run with rungs {','.join(map(str, s.get('rungs') or []))}, "
                         f"eta {s.get('eta')}, min-keep {s.get('min_keep')}: rerun with --epochs "
                         f"{(s.get('rungs') or ['?'])[-1]} --eta {s.get('eta')} --min-keep {s.get('min_keep')} "
                         f"--rungs {','.join(map(str, (s.get('rungs') or [])[:-1])) or 'N'}, or use another --results")


def select(cfg, entries: list, out: Path) -> tuple[list, list]:
    """(population, done): the halving population (empty when its schedule is complete) and the rest."""
    rungs = rungs_of(cfg)
    pop, rest, recs = [], [], {}
    for e in entries:
        rec = recs[e.name] = results.load_run(out, e.name)
        s = schedule_of(rec)
        if s is not None:
            _check_same(out, s, rungs)
        (pop if s is not None or _fresh(rec, cfg) or rec["status"] == "killed" else rest).append(e)
    if cfg.limit is not None:
        pop, rest = pop[:cfg.limit], rest + pop[cfg.limit:]
    return ([], rest + pop) if all(_settled(out, e.name, recs[e.name], cfg) for e in pop) else (pop, rest)


def _settled(out: Path, name: str, rec: dict | None, cfg) -> bool:
    """Stopped or finished, nothing to retry and no state left: the model needs nothing from this run."""
    return ((schedule_of(rec) or {}).get("state") in ("stopped", "finished") and not _fresh(rec, cfg)
            and rec["status"] != "killed" and not (out / WORK / name).exists())


def _trial(rec: dict | None, cfg) -> Trial:
    if _fresh(rec, cfg):
        return Trial()
    if rec["status"] == "killed":  # killed from outside on an earlier run: retried from its saved state
        return trial_from_run({**rec, "status": "trained"})
    return trial_from_run(rec)


def _sync(out: Path, sched: Schedule, recs: dict, rungs: Rungs) -> None:
    """Rewrite each record's schedule state from the decisions; drop the state of models that will not go on."""
    for name, rec in recs.items():
        if rec is None:
            continue
        stop = sched.stopped.get(name)
        state = "stopped" if stop else "finished" if name in sched.finished else "running"
        want = schedule_record(rungs, state, stop)
        if rec.get("schedule") != want:
            recs[name] = rec = {**rec, "schedule": want}
            write_json(results.run_file(out, name), rec)
        if state != "running" and rec["status"] != "killed":
            shutil.rmtree(out / WORK / name, ignore_errors=True)


def evaluate(cfg, population: list, out: Path, data, norm, cuda, record_cfg: dict, db, outcome, *, train: Callable,
             register: Callable) -> None:
    """Run the halving schedule of `population` to its end: each rung's trials go to `train`
    (evaluate._evaluate, whose other arguments these are), DB registration to `register` (evaluate._register)."""
    rungs = rungs_of(cfg)
    by_name = {e.name: e for e in population}
    names = list(by_name)
    recs: dict[str, dict | None] = {}
    trials: dict[str, Trial] = {}
    for n in names:
        rec = results.load_run(out, n)
        recs[n] = None if _fresh(rec, cfg) else rec
        trials[n] = _trial(rec, cfg)
    if db is not None:  # idempotent: a run killed between a record and its registration left rows out
        for n in names:
            if recs[n] is not None:
                register(db, out, n, outcome, lambda m: click.echo(m, err=True))
    touched: set[str] = set()
    trained = [0]

    def write_model(out_, name, code, spec, config, seeds, flops=None):
        rec = results.write_model(out_, name, code, spec, config, seeds, flops, schedule_record(rungs, "running"))
        recs[name], trials[name] = rec, trial_from_run(rec)  # a failure (killed too) is final in this run
        trained[0] += sum(len(s.get("epochs") or []) - int(s.get("resumed_epochs") or 0) for s in seeds)
        touched.add(name)
        return rec

    last_todo = None
    while True:
        sched = step(names, trials, rungs)
        _sync(out, sched, recs, rungs)
        if sched.done:
            break
        if sched.todo == last_todo:  # a trial that neither reached its budget nor failed: do not spin
            raise RuntimeError(f"halving: {', '.join(n for n, _ in sched.todo)} did not reach "
                               f"{sched.todo[0][1]} epoch(s) and did not fail")
        last_todo = sched.todo
        todo = ORDERS[cfg.order]([by_name[n] for n, _ in sched.todo])
        train(replace(cfg, epochs=sched.todo[0][1]), todo, out, data, norm, cuda, record_cfg, db, outcome,
              write_model=write_model, population=population)  # the same packing in every rung
    outcome.records = [recs[n] for n in names if n in touched]  # one final record per model, not one per rung
    outcome.skipped += len(names) - len(touched)
    outcome.trained_epochs += trained[0]


def report(cfg, entries: list, out: Path, outcome) -> dict:
    """The schedule's outcome over its whole population: models per rung, stops, compute vs the full budget."""
    rungs = rungs_of(cfg)
    recs = {e.name: r for e in entries if schedule_of(r := results.load_run(out, e.name)) is not None}
    sched = step(list(recs), {n: trial_from_run(r) for n, r in recs.items()}, rungs)
    per_rung = [{"rung": k, "budget": b, "models": len(sched.members[k]) if k < len(sched.members) else 0,
                 "stopped": sum(st.rung == k for st in sched.stopped.values()),
                 "failed": sum(st.rung == k and recs[n]["status"] != "trained" for n, st in sched.stopped.items())}
                for k, b in enumerate(rungs.budgets)]
    epochs = [sum(len(s["epochs"]) for s in r["seeds"]) for r in recs.values()]
    flops = [r["seeds"][0].get("flops") if r["seeds"] else None for r in recs.values()]
    full = [max(len(r["seeds"]), 1) * rungs.budgets[-1] for r in recs.values()]
    share = (lambda w: round(sum(e * x for e, x in zip(epochs, w)) / sum(n * x for n, x in zip(full, w)), 4)) \
        if recs else (lambda w: None)
    return {"name": NAME, "rungs": list(rungs.budgets), "eta": rungs.eta, "min_keep": rungs.min_keep,
            "models": len(recs), "stopped": len(sched.stopped), "finished": len(sched.finished),
            "running": len(recs) - len(sched.stopped) - len(sched.finished), "per_rung": per_rung,
            "epochs": sum(epochs), "full_epochs": sum(full), "epoch_share": share([1] * len(epochs)),
            "flops_share": share(flops) if recs and all(flops) else None,
            "trained_epochs": outcome.trained_epochs}


def describe(s: dict) -> list[str]:
    """The NNEval printout of `report`."""
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    stops = ", ".join(f"{r['stopped']} at rung {r['rung']} ({r['budget']} epoch{'s' * (r['budget'] != 1)}"
                      + (f", {r['failed']} failed" if r["failed"] else "") + ")" for r in s["per_rung"] if r["stopped"])
    lines = [f"halving (rungs {','.join(map(str, s['rungs']))}, eta {s['eta']}, min-keep {s['min_keep']}): "
             f"{s['models']} models; stopped {stops or 'none'}; {s['finished']} finished"
             + (f", {s['running']} still running" if s.get("running") else ""),
             f"compute: {s['epochs']} of {s['full_epochs']} epochs of the full schedule ({pct(s['epoch_share'])}), "
             f"FLOP-weighted {pct(s['flops_share'])}; {s['trained_epochs']} epochs trained in this run"]
    return lines
