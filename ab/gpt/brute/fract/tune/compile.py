"""`--compile auto|on|off`: torch.compile only where its one-off cost pays back.

The cost is measured once per shape class on a synthetic stack (`probe.compile_cost`: seconds added to the
first training step, and the compiled step's speedup) and cached. `auto` turns compilation on only when the
expected training time is at least `FACTOR` times the compile time and the expected saving exceeds it.
Generated fractal blocks draw drop-path masks in Python, so a real model can recompile per mask pattern
and gain less than the synthetic stack: the record keeps the figures the decision used.
"""
from __future__ import annotations

from . import probe
from .cache import TuneCache
from .device import cache_key
from .synthetic import ShapeClass

FACTOR = 10.0  # training must take at least this many times the compile time
MIN_SPEEDUP = 1.05
MODES = ("auto", "on", "off")


def decide(mode: str, expected_train_s: float | None, cost: dict | None) -> tuple[bool, str]:
    """(compile, reason) for one trial; `cost` as `probe.compile_cost` returns it."""
    if mode not in MODES:
        raise ValueError(f"--compile {mode!r}: use one of {', '.join(MODES)}")
    if mode != "auto":
        return mode == "on", f"--compile {mode}"
    if not cost or expected_train_s is None:
        return False, "auto: no compile measurement or no time estimate"
    c, speedup = float(cost["compile_s"]), float(cost["speedup"])
    saving = expected_train_s * (1 - 1 / speedup) if speedup > 0 else 0.0
    figures = f"training ~{expected_train_s:.0f} s, compile {c:.1f} s, speedup {speedup:.2f}x"
    if speedup < MIN_SPEEDUP:
        return False, f"auto off: compiled steps not faster ({figures})"
    if expected_train_s < FACTOR * c:
        return False, f"auto off: training < {FACTOR:g} x compile time ({figures})"
    if saving <= c:
        return False, f"auto off: saving {saving:.0f} s <= compile time ({figures})"
    return True, f"auto on: saves ~{saving - c:.0f} s ({figures})"


def measured_cost(shape: ShapeClass, batch: int, device, variant: str = "fp32",
                  cache: TuneCache | None = None) -> tuple[dict, bool]:
    """(cost, cached): the compile cost of the class, measured once per machine and cached."""
    cache = cache or TuneCache()
    key = f"{cache_key(device, shape.key, batch)} | {variant}"
    return cache.get_or_measure("compile", key, lambda: probe.compile_cost(shape, batch, device, variant))
