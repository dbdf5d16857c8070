"""How long the autotuner may probe on the sweep at hand, and what a probe costs.

A probe pays for itself only on a sweep long enough: its figures make training faster only where a
variant beats the default by the decision margin (5 %) or more. So probing may take at most `FRACTION` of
the sweep's estimated wall time, and a probe for one shape-class bucket at most `FRACTION` of that bucket's
share. The estimate errs short on purpose, so that probing errs on the side of less: manifest FLOPs at an
optimistic rate (`RATE`), every step at least `MIN_STEP_S`, and all cores (CPU) or GPUs busy at once.
Below the budget a class gets the default variant (`autotune.default_variant`) and the packing its default,
and the decision's reason says so. The figures are pure functions of their inputs (tested with recorded
figures); `ProbeBudget` keeps what is left while the sweep's probes run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .cost import TRAIN_FACTOR, drop_path_factor

FRACTION = 0.05
# optimistic training FLOP/s per CPU core and per GPU: the CPU figure is above the best this project measured
# (bench_train: 497 GFLOP/s of bf16 training on 2 AMX cores); the GPU one about half an H100's bf16 peak
RATE = {"cpu": 250e9, "cuda": 400e12}
MIN_STEP_S = {"cpu": 0.002, "cuda": 0.0005}  # below what a training step of the narrowest net takes
# a probe's fixed cost per variant (building the stack, warm-up steps) and, for the packing probe, the
# fresh interpreters it starts (each imports torch)
SETUP_S = {"cpu": 0.15, "cuda": 0.5}
SPAWN_S = 3.0


def trial_seconds(flops: int | None, spec: dict | None, images: int, epochs: int, batch: int, device: str) -> float:
    """Optimistic training seconds of one trial on one core (CPU) or one GPU: steps x the longer of the step's
    FLOPs at `RATE` and `MIN_STEP_S`. A model without manifest FLOPs counts the minimum step time alone."""
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    steps = epochs * math.ceil(images / max(1, batch))
    work = TRAIN_FACTOR * (flops or 0) * batch * drop_path_factor(spec)
    return steps * max(work / RATE[kind], MIN_STEP_S[kind])


def sweep_seconds(trials: list[float], parallel: int) -> float:
    """Optimistic wall time of trials on `parallel` workers: their sum spread evenly, at least the longest."""
    return max(sum(trials) / max(1, parallel), max(trials, default=0.0))


def variant_probe_seconds(variants: int, rounds: int, min_s: float, device: str, step_s: float = 0.0) -> float:
    """Estimated seconds of one variant probe: per variant its set-up, two warm-up steps and `rounds`
    windows of at least `min_s` and two steps."""
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    return variants * (SETUP_S[kind] + 2 * step_s + rounds * max(min_s, 2 * step_s))


def packing_probe_seconds(packings: int, rounds: int, seconds: float) -> float:
    """Estimated seconds of the CPU packing probe: its processes' start, then `rounds` windows per packing."""
    return SPAWN_S + packings * rounds * seconds


@dataclass
class ProbeBudget:
    """Seconds of probing this sweep still allows (`math.inf`: no limit, as for an explicit tuning run)."""

    total_s: float
    sweep_s: float | None = None  # the sweep's estimated wall time the budget was set from
    spent_s: float = 0.0

    @classmethod
    def for_sweep(cls, sweep_s: float, fraction: float = FRACTION) -> "ProbeBudget":
        return cls(fraction * sweep_s, sweep_s)

    @classmethod
    def unlimited(cls) -> "ProbeBudget":
        return cls(math.inf)

    @property
    def left_s(self) -> float:
        return max(0.0, self.total_s - self.spent_s)

    def allows(self, cost_s: float, share_s: float | None = None, fraction: float = FRACTION) -> bool:
        """Whether a probe of `cost_s` fits what is left and, given the wall time of the part of the sweep its
        figures decide for (`share_s`), at most `fraction` of that part."""
        return cost_s <= self.left_s and (share_s is None or cost_s <= fraction * share_s)

    def spend(self, seconds: float) -> None:
        self.spent_s += seconds

    def refusal(self, what: str, cost_s: float, share_s: float | None = None) -> str:
        """Why a probe was not run, for the decision's reason."""
        if math.isinf(self.total_s):
            return f"not probed: probing {what} was not asked for"
        part = f", its classes' part ~{share_s:.1f} s" if share_s is not None else ""
        return (f"not probed: probing {what} would take ~{cost_s:.1f} s, more than {FRACTION:.0%} of the sweep's "
                f"~{self.sweep_s or 0:.0f} s estimated at optimistic rates{part}; {self.left_s:.1f} s of probing left")
