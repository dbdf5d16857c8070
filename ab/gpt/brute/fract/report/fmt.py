"""Number formatting for the HTML report. NaN and None become an em dash."""
from __future__ import annotations

import math
from typing import Any

DASH = "—"


def missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pct(x: Any, digits: int = 2) -> str:
    """0.2345 -> '23.45%'."""
    return DASH if missing(x) else f"{100 * float(x):.{digits}f}%"


def acc(mean: Any, std: Any = None, lo: Any = None, hi: Any = None, digits: int = 2) -> str:
    """'23.45 ± 0.50% [22.1, 24.8]': mean ± std over seeds, then the 95% CI of the mean."""
    if missing(mean):
        return DASH
    text = f"{100 * float(mean):.{digits}f}"
    if not missing(std):
        text += f" ± {100 * float(std):.{digits}f}"
    text += "%"
    if not missing(lo) and not missing(hi):
        text += f" [{_clip(lo):.1f}, {_clip(hi):.1f}]"
    return text


def _clip(x: Any) -> float:
    """An accuracy bound in percent, clipped to 0..100 for display."""
    return min(100.0, max(0.0, 100 * float(x)))


def ci(lo: Any, hi: Any) -> str:
    return DASH if missing(lo) or missing(hi) else f"[{_clip(lo):.1f}, {_clip(hi):.1f}]%"


def si(x: Any) -> str:
    """3490 -> '3.49 k', 12_000_000 -> '12.0 M'."""
    if missing(x):
        return DASH
    x = float(x)
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g} {unit}"
    return f"{x:.0f}" if x.is_integer() else f"{x:.3g}"


def count(x: Any) -> str:
    return DASH if missing(x) else f"{int(x):d}"


def seconds(x: Any) -> str:
    return DASH if missing(x) else (f"{x:.2f} s" if x < 100 else f"{x / 60:.1f} min")


def mb(x: Any) -> str:
    return DASH if missing(x) else (f"{x:.0f} MB" if x < 10_000 else f"{x / 1024:.1f} GB")


def pvalue(p: Any) -> str:
    if missing(p):
        return DASH
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def raw(x: Any) -> str:
    """Machine-readable value for data-value attributes (empty when missing)."""
    if hasattr(x, "item"):  # numpy scalar -> Python number
        x = x.item()
    if missing(x):
        return ""
    if isinstance(x, float):
        return repr(x)
    return str(x)
