"""`NNEval --plan`: what a sweep will cost before it runs: FLOPs, a time estimate and the run order.

Per model (FLOPs of one 32x32 forward pass from the generator's manifest):
    training FLOPs = TRAIN_FACTOR (3: forward + backward) x forward FLOPs x training images x epochs x seeds
    evaluation FLOPs = forward FLOPs x test images x epochs x seeds
Time: FLOPs (training FLOPs scaled by the share global drop-path leaves, `drop_path_factor`, and by 4/3
when checkpointing recomputes the forward) over the FLOP/s this device achieved on a synthetic stack of
the model's shape class (the autotuner's probe), plus a fixed start-up overhead per trial; the wall time spreads the trials
over the workers longest first (the run order: descending FLOPs, ties by name). No training happens.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

from .order import longest_first
from ..tune.cost import TRAIN_FACTOR, drop_path_factor  # noqa: F401 (part of this module's interface)
from ..tune.synthetic import ShapeClass, shape_class_of_spec
from ..space.registry import build_registry
from ..generation.manifest import Manifest
from ..trial.data import TEST_FILE, TRAIN_FILES, DataError, _read_batch, locate
from . import results
from .evaluate import discover
from .calibrate import calibrate as run_calibration
from ..util.cli import parse_device
from ..trial.gpus import select, visible_gpus

CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000


@dataclass(frozen=True)
class Entry:
    """One model as the plan sees it: the manifest's name, forward FLOPs at 32x32, parameters, spec."""

    name: str
    flops: int | None
    params: int | None = None
    spec: dict | None = None

    @property
    def shape(self) -> ShapeClass | None:
        return shape_class_of_spec(self.spec) if self.spec else None

    @property
    def group(self) -> str | None:
        """The calibration group: the shape class and the column op's conv layers (a 5x5 conv has 2.8x the
        FLOPs of a 3x3 one but runs at a higher FLOP rate, so one rate per class misjudges both)."""
        shape = self.shape
        if shape is None:
            return None
        convs = [n for n in (self.spec or {}).get("layers") or () if n in conv_layers()]
        return shape.key + (f"/{'+'.join(convs)}" if convs else "")


@lru_cache(maxsize=1)
def conv_layers() -> frozenset[str]:
    """Names of the registered conv-slot layers (plugins' included)."""
    try:
        return frozenset(build_registry().options_for("conv"))
    except Exception:  # a broken plugin must not break the plan: group by shape class alone
        return frozenset()


@dataclass
class Row:
    name: str
    shape: str | None
    params: int | None
    flops: int | None  # forward, one image
    train_flops: int | None
    eval_flops: int | None
    est_s: float | None  # the whole trial: every epoch and seed, plus the per-trial overhead
    epoch_s: float | None = None  # one epoch of every seed, without the overhead


@dataclass
class Plan:
    rows: list[Row]  # in run order
    epochs: int
    seeds: int
    train_images: int
    test_images: int
    workers: int
    rates: dict[str, float] = field(default_factory=dict)  # calibration group -> achieved FLOP/s per worker
    overhead_s: float = 0.0
    gpus: int = 0  # the workers share this many GPUs (0: CPU workers)

    @property
    def gpu_hours(self) -> float | None:
        """GPUs x wall time: what the sweep holds of a GPU machine."""
        return self.gpus * self.wall_s / 3600 if self.gpus else None

    @property
    def total_flops(self) -> int:
        return sum((r.train_flops or 0) + (r.eval_flops or 0) for r in self.rows)

    @property
    def total_train_flops(self) -> int:
        return sum(r.train_flops or 0 for r in self.rows)

    @property
    def compute_s(self) -> float:
        return sum(r.est_s or 0.0 for r in self.rows)

    @property
    def wall_s(self) -> float:
        """Longest-first list scheduling of the trials' estimates over the workers."""
        return list_schedule([r.est_s or 0.0 for r in self.rows], self.workers)

    @property
    def unknown(self) -> list[str]:
        return [r.name for r in self.rows if r.est_s is None]


def list_schedule(durations: list[float], workers: int) -> float:
    """Wall time of trials handed out in this order, each to the worker that frees up first."""
    loads = [0.0] * max(1, workers)
    for d in durations:
        heapq.heapreplace(loads, loads[0] + d)
    return max(loads)


def run_order(entries: list[Entry]) -> list[Entry]:
    """The order the sweep hands models out in (`sweep_order.longest_first`: forward FLOPs descending,
    unknown FLOPs last, ties in file order)."""
    return longest_first(entries)


def make_plan(entries: list[Entry], epochs: int, seeds: int = 1, train_images: int = CIFAR_TRAIN,
              test_images: int = CIFAR_TEST, rate: Callable[[Entry], float | None] | None = None, workers: int = 1,
              overhead_s: float = 0.0, checkpointing: bool = False) -> Plan:
    """The plan; `rate(entry)` gives achieved training FLOP/s per worker for the entry's calibration group
    (`Entry.group`; None: FLOPs only). With `checkpointing` the time estimate counts the forward pass that
    backward recomputes."""
    if epochs < 1 or seeds < 1 or train_images < 1 or test_images < 0 or workers < 1:
        raise ValueError("epochs, seeds, workers and training images must be >= 1")
    rows, rates = [], {}
    for e in run_order(entries):
        shape = e.shape
        if e.flops is None:
            rows.append(Row(e.name, shape.key if shape else None, e.params, None, None, None, None))
            continue
        train = TRAIN_FACTOR * e.flops * train_images * epochs * seeds
        ev = e.flops * test_images * epochs * seeds
        est = epoch_s = None
        group = e.group
        if rate is not None and group is not None and group not in rates:
            r = rate(e)
            rates[group] = float(r) if r else None
        if rate is not None and group is not None and rates.get(group):
            work = train * drop_path_factor(e.spec)
            if checkpointing:  # backward runs each checkpointed forward again
                work *= (TRAIN_FACTOR + 1) / TRAIN_FACTOR
            est = (work + ev) / rates[group] + overhead_s * seeds
            epoch_s = (work + ev) / rates[group] / epochs
        rows.append(Row(e.name, shape.key if shape else None, e.params, e.flops, train, ev, est, epoch_s))
    return Plan(rows, epochs, seeds, train_images, test_images, workers, rates, overhead_s)


def entries_from_manifest(models_dir: Path, names: list[str] | None = None) -> list[Entry]:
    """Entries of the manifest's valid records (optionally only `names`, in that order)."""
    recs = {r["name"]: r for r in Manifest.load(Path(models_dir)).valid()}
    chosen = names if names is not None else list(recs)
    return [Entry(n, recs[n].get("flops"), recs[n].get("params"), recs[n].get("spec")) if n in recs
            else Entry(n, None) for n in chosen]


def count_images(batches_dir: Path) -> tuple[int, int]:
    """(training images, test images) in a cifar-10-batches-py folder."""
    train = sum(len(_read_batch(Path(batches_dir) / f)[1]) for f in TRAIN_FILES)
    return train, len(_read_batch(Path(batches_dir) / TEST_FILE)[1])


def _si(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    for p, s in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= p:
            return f"{x / p:.2f} {s}{unit}"
    return f"{x:.0f} {unit}".rstrip()


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    h, rem = divmod(int(round(s)), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s" if m else f"{s:.1f}s"


def table_rows(plan: Plan) -> list[list[str]]:
    return [[str(i), r.name, r.shape or "-", _si(r.params), _si(r.flops, "FLOP"), _si(r.train_flops, "FLOP"),
             _dur(r.est_s)] for i, r in enumerate(plan.rows, 1)]


def render(plan: Plan, echo: Callable[[str], None] = print, width: int = 160) -> None:
    """The plan as a table (rich when installed, else plain columns) and the totals."""
    head = ["#", "model", "shape class", "params", "forward", "training", "est. time"]
    rows = table_rows(plan)
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"NNEval plan: {len(rows)} models x {plan.seeds} seed(s) x {plan.epochs} epoch(s)")
        for h in head:
            table.add_column(h, overflow="fold", justify="right" if h not in ("model", "shape class") else "left")
        for row in rows:
            table.add_row(*row)
        console = Console(width=width, record=True)
        with console.capture() as cap:
            console.print(table)
        echo(cap.get().rstrip("\n"))
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
        for row in [head] + rows:
            echo("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    for group, r in sorted(plan.rates.items()):
        echo(f"calibration {group}: {_si(r, 'FLOP/s')} achieved per worker")
    echo(f"total: {_si(plan.total_flops, 'FLOP')} ({_si(plan.total_train_flops, 'FLOP')} training) on "
         f"{plan.train_images} training + {plan.test_images} test images; compute {_dur(plan.compute_s)}, "
         f"wall ~{_dur(plan.wall_s)} with {plan.workers} worker(s)"
         + (f" on {plan.gpus} GPU(s) = {plan.gpu_hours:.2f} GPU-hours" if plan.gpus else "")
         + (f"; no estimate for {len(plan.unknown)} model(s) without manifest FLOPs" if plan.unknown else ""))


TRIAL_OVERHEAD_S = 1.0  # per trial: handing the model to a worker, importing it, loading data, writing results


def plan_sweep(models: Path, out: Path, pattern: str | None = None, limit: int | None = None,
               retry_failed: bool = False, epochs: int = 5, seeds: int = 1, batch: int = 16,
               train_limit: int | None = None, test_limit: int | None = None, data_dir: str | None = None,
               device: str = "auto", workers: int | str = 1, checkpointing: bool | str = False,
               calibrate: bool = True, cache_path: Path | None = None, threads: int | None = None,
               overhead_s: float = TRIAL_OVERHEAD_S, echo: Callable[[str], None] = print,
               trials_per_gpu: int | str = "auto") -> Plan:
    """The plan of the sweep `NNEval` would run with these options (the same models, filter, limit and
    resume rule), calibrated on this device unless `calibrate` is off. Trains nothing."""
    found = discover(models, pattern)
    todo = [e for e in found
            if (rec := results.load_run(out, e.name)) is None or (retry_failed and rec["status"] != "trained")]
    if limit is not None:
        todo = todo[:limit]
    if len(todo) < len(found):
        echo(f"{len(found) - len(todo)} model(s) already done or beyond --limit are not in the plan")
    try:
        n_train, n_test = count_images(locate(data_dir, download=False))
    except DataError as e:
        n_train, n_test = CIFAR_TRAIN, CIFAR_TEST
        echo(f"image counts of full CIFAR-10 assumed ({e})")
    n_train = min(n_train, train_limit) if train_limit else n_train
    n_test = min(n_test, test_limit) if test_limit else n_test
    entries = entries_from_manifest(models, [e.name for e in todo])
    rate = None
    if calibrate and not any(e.flops and e.spec for e in entries):
        calibrate = False
    if calibrate:
        try:
            rates, overhead_s, workers = run_calibration(
                entries, models, data_dir, batch=batch, device=device, workers=workers, threads=threads,
                checkpointing=checkpointing, cache_path=cache_path, echo=echo, trials_per_gpu=trials_per_gpu,
                sweep=(epochs, n_train, seeds))
        except DataError as e:
            echo(f"no calibration ({e}); FLOPs only")
            rates = None
        if rates is not None:
            rate = lambda e: rates.get(e.group)  # noqa: E731 (achieved FLOP/s; None: not calibrated)
    if workers == "auto":
        workers = 1
    gpus = gpu_count(device) if calibrate else 0
    # the calibration timed steps with the sweep's own checkpointing decisions: no further scaling
    plan = make_plan(entries, epochs, seeds, n_train, n_test, rate, workers, overhead_s if calibrate else 0.0,
                     checkpointing is True and rate is None)
    plan.gpus = gpus
    return plan


def gpu_count(device: str) -> int:
    """The local GPUs a sweep with this --device trains on (0: the CPU)."""
    return len(select(parse_device(device), visible_gpus()))
