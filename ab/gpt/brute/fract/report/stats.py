"""Statistics over seeds and models: mean, standard deviation, Student-t 95% CI, Welch's t-test with Holm
correction, and the Pareto front. NaNs are dropped; too few values give NaN, never an exception."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy import stats as _st

CONFIDENCE = 0.95
ALPHA = 0.05


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); NaN for n < 2
    lo: float  # lower end of the confidence interval of the mean; NaN for n < 2
    hi: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


def clean(values: Iterable[float]) -> np.ndarray:
    a = np.asarray([float(v) for v in values if v is not None], dtype=float)
    return a[np.isfinite(a)]


def summarize(values: Iterable[float], confidence: float = CONFIDENCE) -> Summary:
    """Mean, std and the Student-t confidence interval of the mean."""
    a = clean(values)
    n = len(a)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(a.mean())
    if n < 2:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(a.std(ddof=1))
    half = float(_st.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def welch(a: Iterable[float], b: Iterable[float]) -> tuple[float, float]:
    """Welch's unequal-variance t-test, two-sided: (t, p). NaN unless both sides have 2+ values."""
    a, b = clean(a), clean(b)
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    if a.std(ddof=1) == 0 and b.std(ddof=1) == 0:  # no spread: equal means are identical, else certain
        return (0.0, 1.0) if a.mean() == b.mean() else (math.copysign(math.inf, a.mean() - b.mean()), 0.0)
    with warnings.catch_warnings():  # near-identical seeds (e.g. stuck at chance) only lose precision
        warnings.simplefilter("ignore", RuntimeWarning)
        res = _st.ttest_ind(a, b, equal_var=False)
    return float(res.statistic), float(res.pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, kept monotone, capped at 1). NaNs stay NaN and do
    not count as tests."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and not math.isnan(p)]
    out = [math.nan] * len(pvalues)
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def compare_to_best(groups: Sequence[tuple[str, Sequence[float]]], alpha: float = ALPHA) -> list[dict]:
    """Test the first group (the best) against each other one: Welch's t-test, Holm-corrected over the
    comparisons. Returns one dict per other group: name, diff (best mean - its mean), t, p, p_holm,
    significant (True/False, or None when untestable)."""
    if not groups:
        return []
    best = clean(groups[0][1])
    rows = []
    for name, values in groups[1:]:
        t, p = welch(best, values)
        rows.append({"name": name, "diff": float(best.mean() - clean(values).mean())
                     if len(best) and len(clean(values)) else math.nan, "t": t, "p": p})
    for row, adj in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = adj
        row["significant"] = None if math.isnan(adj) else bool(adj < alpha)
    return rows


def pareto_front(cost: Sequence[float], score: Sequence[float]) -> np.ndarray:
    """Boolean mask of points no other point beats: lower-or-equal cost and higher-or-equal score, one
    strictly. Points with a non-finite value are never on the front."""
    c, s = np.asarray(cost, dtype=float), np.asarray(score, dtype=float)
    ok = np.isfinite(c) & np.isfinite(s)
    mask = np.zeros(len(c), dtype=bool)
    best = -math.inf
    # sweep by cost ascending (ties: best score first); a point is on the front if it beats all cheaper
    for i in sorted(np.flatnonzero(ok), key=lambda i: (c[i], -s[i])):
        if s[i] > best:
            mask[i] = True
            best = s[i]
    return mask
