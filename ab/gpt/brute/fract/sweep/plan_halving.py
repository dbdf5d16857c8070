"""`NNEval --plan --schedule halving`: the cost of the halving schedule, from the full plan's per-model figures.

The rungs are the sweep's (`halving.sweep_rungs`). Rung k holds n_k models: n_0 = every model of the plan,
n_{k+1} = `Rungs.keep(n_k)` (no failures assumed). Each model of rung k trains budget_k - budget_{k-1}
epochs (it resumes from its saved state) in one trial, which pays the per-trial overhead once.

Which models go on is unknown before training, so every figure is a `Span`: expected (each model equally
likely to go on: n_k x the mean per-epoch cost), low (the n_k cheapest go on at every rung) and high (the
n_k most expensive). Wall time: a rung's trials are list-scheduled over the workers in the sweep's order
(as `Plan.wall_s`), rungs one after another (a rung is decided only when all its trials are done). The
expected wall of a rung schedules n_k trials of the mean cost, clamped into [low, high]; a rung that
holds every model is exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .halving import Rungs
from .plan import Plan, _dur, _si, list_schedule
from . import results
from .halving_sweep import schedule_of


@dataclass(frozen=True)
class Span:
    expected: float
    low: float
    high: float

    def __add__(self, other: Span) -> Span:
        return Span(self.expected + other.expected, self.low + other.low, self.high + other.high)

    def share(self, whole: float) -> Span | None:
        return Span(self.expected / whole, self.low / whole, self.high / whole) if whole else None


@dataclass(frozen=True)
class RungCost:
    rung: int
    budget: int  # epochs a model has when the rung is decided
    models: int
    epochs: int  # epochs each model trains in this rung (per seed)
    flops: Span | None  # None: a model has no manifest FLOPs
    compute_s: Span | None  # None: a model has no time estimate
    wall_s: Span | None


@dataclass(frozen=True)
class HalvingPlan:
    rungs: Rungs
    per_rung: tuple[RungCost, ...]
    full: Plan  # the full schedule's plan these figures come from

    @property
    def epochs(self) -> int:
        return sum(r.models * r.epochs for r in self.per_rung) * self.full.seeds

    @property
    def full_epochs(self) -> int:
        return len(self.full.rows) * self.full.epochs * self.full.seeds

    @property
    def epoch_share(self) -> float | None:
        return self.epochs / self.full_epochs if self.full_epochs else None

    def _total(self, attr: str) -> Span | None:
        spans = [getattr(r, attr) for r in self.per_rung]
        return None if any(s is None for s in spans) else sum(spans[1:], spans[0])

    @property
    def flops(self) -> Span | None:
        return self._total("flops")

    @property
    def compute_s(self) -> Span | None:
        return self._total("compute_s")

    @property
    def wall_s(self) -> Span | None:
        return self._total("wall_s")

    @property
    def flops_share(self) -> Span | None:
        return self.flops.share(self.full.total_flops) if self.flops else None

    @property
    def compute_share(self) -> Span | None:
        return self.compute_s.share(self.full.compute_s) if self.compute_s else None

    @property
    def wall_share(self) -> Span | None:
        return self.wall_s.share(self.full.wall_s) if self.wall_s else None


def rung_sizes(n: int, rungs: Rungs) -> list[int]:
    """Models in each rung when none fails: n, keep(n), keep(keep(n)), ..."""
    sizes = []
    for _ in rungs.budgets:
        sizes.append(n)
        n = rungs.keep(n)
    return sizes


def _span(costs: list[float], n: int, epochs: int, overhead: float) -> Span:
    """Cost of n of these models training `epochs` each, one trial each."""
    ranked = sorted(costs)
    low = sum(ranked[:n]) * epochs + n * overhead
    if n == len(costs):
        return Span(low, low, low)
    high = sum(ranked[len(ranked) - n:]) * epochs + n * overhead
    return Span(n * (sum(costs) / len(costs) * epochs + overhead), low, high)


def _wall(costs: list[float], n: int, epochs: int, overhead: float, workers: int) -> Span:
    """Wall time of n of these models' trials (`costs` in the sweep's order) over the workers."""
    def schedule(chosen: set[int]) -> float:
        return list_schedule([c * epochs + overhead for i, c in enumerate(costs) if i in chosen], workers)

    by_cost = sorted(range(len(costs)), key=lambda i: (costs[i], i))
    low = schedule(set(by_cost[:n]))
    high = schedule(set(by_cost[len(by_cost) - n:]))
    mean = list_schedule([sum(costs) / len(costs) * epochs + overhead] * n, workers) if costs else 0.0
    return Span(min(max(mean, low), high), low, high)


def estimate(plan: Plan, rungs: Rungs) -> HalvingPlan:
    """The halving schedule of the plan's models under these rungs (the last budget must be the plan's epochs)."""
    if rungs.budgets[-1] != plan.epochs:
        raise ValueError(f"the rungs end at {rungs.budgets[-1]} epochs but the plan is for {plan.epochs}")
    flops = [None if r.train_flops is None else (r.train_flops + r.eval_flops) / plan.epochs for r in plan.rows]
    secs = [r.epoch_s for r in plan.rows]
    overhead = plan.overhead_s * plan.seeds
    known_flops = None not in flops
    known_secs = None not in secs
    out, prev = [], 0
    for k, (budget, n) in enumerate(zip(rungs.budgets, rung_sizes(len(plan.rows), rungs))):
        e, prev = budget - prev, budget
        out.append(RungCost(k, budget, n, e, _span(flops, n, e, 0.0) if known_flops else None,
                            _span(secs, n, e, overhead) if known_secs else None,
                            _wall(secs, n, e, overhead, plan.workers) if known_secs else None))
    return HalvingPlan(rungs, tuple(out), plan)


def _fmt(span: Span | None, one: Callable[[float], str]) -> str:
    if span is None:
        return "-"
    if math.isclose(span.low, span.high, rel_tol=1e-9, abs_tol=1e-9):
        return one(span.expected)
    return f"{one(span.expected)} [{one(span.low)} to {one(span.high)}]"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def describe(hp: HalvingPlan) -> list[str]:
    """The printed halving estimate: one line per rung and the totals against the full schedule."""
    r, p = hp.rungs, hp.full
    lines = [f"halving plan (rungs {','.join(map(str, r.budgets))}, eta {r.eta}, min-keep {r.min_keep}; no failures "
             f"assumed): expected [low to high: the cheapest or the most expensive models go on]; the table and "
             f"total above are the full schedule, its order is rung 0's"]
    for c in hp.per_rung:
        lines.append(f"rung {c.rung}: budget {c.budget} epoch(s), {c.models} model(s) x {c.epochs} epoch(s): "
                     f"{_fmt(c.flops, lambda x: _si(x, 'FLOP'))}, compute {_fmt(c.compute_s, _dur)}, "
                     f"wall ~{_fmt(c.wall_s, _dur)}")
    epochs = f"{hp.epochs} of {hp.full_epochs} epochs" + (f" ({_pct(hp.epoch_share)})" if hp.epoch_share else "")
    lines.append(f"halving total: {epochs}, FLOP-weighted {_fmt(hp.flops_share, _pct)}; "
                 f"compute {_fmt(hp.compute_s, _dur)} of {_dur(p.compute_s) if hp.compute_s else '-'} "
                 f"({_fmt(hp.compute_share, _pct)}); wall ~{_fmt(hp.wall_s, _dur)} of ~"
                 f"{_dur(p.wall_s) if hp.wall_s else '-'} ({_fmt(hp.wall_share, _pct)}) with {p.workers} worker(s)")
    return lines


def render(hp: HalvingPlan, echo: Callable[[str], None] = print) -> None:
    for line in describe(hp):
        echo(line)


def halving_records(out: Path) -> list[str]:
    """Models with a halving run's record in `out`: the plan leaves them out and estimates a fresh run only."""
    return [r.get("name") for r in results.load_runs(out) if schedule_of(r) is not None]
