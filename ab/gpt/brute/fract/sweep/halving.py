"""Successive halving (`--schedule halving`, in the spirit of ASHA) as pure, resumable logic.

Every model first trains to the first rung's budget (epochs); of the models in a rung, the best 1/eta by
accuracy at that budget go on to the next rung's budget, and so on up to the full budget. Rungs are
synchronous: a rung is decided once every model in it has reached its budget or failed, so the outcome
does not depend on the order trials finish in.

Nothing here holds state: `step(models, trials, rungs)` derives the whole schedule from what the run
records say (epochs finished, accuracy per epoch, status). A killed sweep calls it again on the records it
finds and gets the same decisions and the trials still to run; ties break by name, so the same records
always give the same schedule.

    rungs = make_rungs(max_epochs=3, eta=3)          # Rungs(budgets=(1, 3), eta=3)
    s = step(names, {name: Trial(...)}, rungs)
    s.todo        # [(name, epochs to reach)]: run these (a model extends its own finished epochs)
    s.stopped     # {name: Stop}: where and why a model stopped (record it in the model's run record)
    s.finished    # models that reached the full budget
    s.done        # nothing left to run
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Rungs:
    budgets: tuple[int, ...]  # epochs a model has trained when its rung is decided, increasing
    eta: int  # 1/eta of a rung goes on
    min_keep: int = 1  # at least this many go on from each rung

    def __post_init__(self) -> None:
        if not self.budgets or any(b < 1 for b in self.budgets) or list(self.budgets) != sorted(set(self.budgets)):
            raise ValueError(f"rung budgets {self.budgets} must be increasing positive epoch counts, e.g. 1,3")
        if self.eta < 2:
            raise ValueError(f"eta={self.eta} must be >= 2 (eta=1 would keep every model: use the full schedule)")
        if self.min_keep < 1:
            raise ValueError(f"min_keep={self.min_keep} must be >= 1")

    def keep(self, n: int) -> int:
        """How many of n models in a rung go on."""
        return min(n, max(self.min_keep, n // self.eta))

    def as_dict(self) -> dict:
        return asdict(self)


def make_rungs(max_epochs: int, eta: int = 3, min_epochs: int = 1, min_keep: int = 1) -> Rungs:
    """Budgets min_epochs * eta**k below max_epochs, then max_epochs: (1, 3) for 3 epochs, (1, 3, 5) for 5."""
    if max_epochs < 1 or min_epochs < 1:
        raise ValueError(f"epochs must be >= 1 (max_epochs={max_epochs}, min_epochs={min_epochs})")
    if eta < 2:
        raise ValueError(f"eta={eta} must be >= 2")
    budgets, b = [], min_epochs
    while b < max_epochs:
        budgets.append(b)
        b *= eta
    budgets.append(max_epochs)
    return Rungs(tuple(budgets), eta, min_keep)


def parse_budgets(text: str) -> tuple[int, ...]:
    """'1,3' -> (1, 3): increasing positive epoch counts, else a ValueError saying what to write."""
    try:
        budgets = tuple(int(x) for x in str(text).split(","))
    except ValueError:
        raise ValueError(f"{text!r} is not a list of epoch counts separated by commas; give increasing "
                         f"integers, e.g. 1,3") from None
    if any(b < 1 for b in budgets) or list(budgets) != sorted(set(budgets)):
        raise ValueError(f"{text!r}: give increasing positive epoch counts, e.g. 1,3")
    return budgets


def parse_rungs(text: str, eta: int, min_keep: int = 1) -> Rungs:
    """`--rungs 1,3,5` -> Rungs; a one-line error naming the bad value otherwise."""
    return Rungs(parse_budgets(text), eta, min_keep)


def rungs_below(epochs: int, budgets: tuple[int, ...], eta: int, min_keep: int = 1) -> Rungs:
    """Rungs from the budgets below the full one, `epochs`, which is appended (unless already last)."""
    if budgets and budgets[-1] > epochs:
        raise ValueError(f"--rungs {','.join(map(str, budgets))} goes past --epochs {epochs}: "
                         f"give the budgets below the full one (it is added), e.g. --rungs 1")
    return Rungs(tuple(budgets) + (() if budgets and budgets[-1] == epochs else (epochs,)), eta, min_keep)


def sweep_rungs(epochs: int, eta: int = 3, budgets: tuple[int, ...] | None = None, min_keep: int = 1) -> Rungs:
    """A sweep's rungs: `--rungs` budgets below `epochs` (appended) when given, else make_rungs(epochs, eta)."""
    if not budgets:
        return make_rungs(epochs, eta, min_keep=min_keep)
    return rungs_below(epochs, tuple(budgets), eta, min_keep)


@dataclass(frozen=True)
class Trial:
    """What the run records say about one model: accuracy per finished epoch (index 0 = epoch 1, None when
    not finite) and a status; any status but "trained" is final (diverged, out-of-memory, timed-out, error)."""

    accuracies: tuple[float | None, ...] = ()
    status: str = "trained"

    @property
    def epochs(self) -> int:
        return len(self.accuracies)

    @property
    def failed(self) -> bool:
        return self.status != "trained"

    def accuracy_at(self, epoch: int) -> float | None:
        return self.accuracies[epoch - 1] if self.epochs >= epoch else None


@dataclass(frozen=True)
class Stop:
    """Where and why a model stopped before the full budget."""

    rung: int  # index of the rung it was in
    budget: int  # that rung's epoch budget
    epochs: int  # epochs it finished
    reason: str

    def as_record(self) -> dict:
        return {"schedule": "halving", **asdict(self)}


@dataclass
class Schedule:
    rungs: Rungs
    rung: int = 0  # the rung being worked on (len(budgets) when done)
    todo: list[tuple[str, int]] = field(default_factory=list)
    stopped: dict[str, Stop] = field(default_factory=dict)
    finished: list[str] = field(default_factory=list)
    members: list[list[str]] = field(default_factory=list)  # the models in each rung reached so far

    @property
    def done(self) -> bool:
        return not self.todo


def _score(t: Trial, budget: int) -> float:
    acc = t.accuracy_at(budget)
    return -math.inf if acc is None else acc


def step(models: list[str], trials: dict[str, Trial], rungs: Rungs) -> Schedule:
    """The schedule the records imply: decided rungs, stopped models and the trials to run next."""
    if len(set(models)) != len(models):
        raise ValueError("model names must be unique")
    sched = Schedule(rungs)
    alive = list(models)
    last = len(rungs.budgets) - 1
    for k, budget in enumerate(rungs.budgets):
        sched.rung = k
        sched.members.append(list(alive))
        get = lambda m: trials.get(m, Trial())  # noqa: E731
        pending = [m for m in alive if not get(m).failed and get(m).epochs < budget]
        for m in alive:  # a failure is final, whichever rung it happened in
            t = get(m)
            if t.failed and m not in sched.stopped:
                sched.stopped[m] = Stop(k, budget, t.epochs, f"{t.status} after {t.epochs} epoch(s)")
        if pending:
            sched.todo = [(m, budget) for m in pending]
            return sched
        ok = [m for m in alive if not get(m).failed]
        if k == last:
            sched.finished = ok
            sched.rung = k + 1
            return sched
        n = len(alive)
        keep = rungs.keep(n)
        ranked = sorted(ok, key=lambda m: (-_score(get(m), budget), m))
        for r, m in enumerate(ranked[keep:], start=keep + 1):
            acc = get(m).accuracy_at(budget)
            sched.stopped[m] = Stop(k, budget, get(m).epochs,
                                    f"rung {k} ({budget} epoch(s)): accuracy {'-' if acc is None else f'{acc:.4f}'} "
                                    f"ranked {r} of {n}; the top {keep} go on")
        alive = ranked[:keep]
    return sched  # pragma: no cover - the last rung always returns


def ranking(models: list[str], trials: dict[str, Trial], rungs: Rungs) -> list[str]:
    """Models best first: those that got further first, then by accuracy at the budget of their last rung."""
    sched = step(models, trials, rungs)
    reached: dict[str, int] = {}
    for k, members in enumerate(sched.members):
        for m in members:
            reached[m] = k

    def key(m: str):
        k = reached[m]
        t = trials.get(m, Trial())
        return (-k, t.failed, -_score(t, rungs.budgets[k]), m)

    return sorted(models, key=key)


def epochs_run(models: list[str], trials: dict[str, Trial], weights: dict[str, float] | None = None) -> float:
    """Compute spent: finished epochs per model, weighted (e.g. by training FLOPs per epoch) if given."""
    return sum(trials.get(m, Trial()).epochs * (weights or {}).get(m, 1.0) for m in models)


def trial_from_run(record: dict) -> Trial:
    """A Trial from a sweep run record (`new_lemur/runs/<Model>.json` or the runner's result): accuracy per
    epoch averaged over the seeds that finished it; the model's status."""
    seeds = record.get("seeds") or [record]
    n = min((len(s.get("epochs") or []) for s in seeds), default=0)
    accs = []
    for i in range(n):
        vals = [s["epochs"][i].get("accuracy") for s in seeds]
        accs.append(None if any(v is None for v in vals) else sum(vals) / len(vals))
    return Trial(tuple(accs), record.get("status", "trained"))
