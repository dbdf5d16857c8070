"""Statistics against values worked out by hand (t quantiles from tables, Holm by its definition)."""
import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from ab.gpt.brute.fract.report.stats import compare_to_best, holm, pareto_front, summarize, welch


def test_summary_uses_sample_std_and_student_t():
    s = summarize([1.0, 2.0, 3.0])
    assert (s.n, s.mean, s.std) == (3, 2.0, 1.0)
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, df=2) from a t table
    assert s.lo == pytest.approx(2 - half) and s.hi == pytest.approx(2 + half)
    big = summarize(np.arange(100.0))  # large n: close to the normal quantile
    assert big.half_width == pytest.approx(1.9842169515086827 * np.arange(100.0).std(ddof=1) / 10)


def test_summary_of_few_values_and_nans():
    assert summarize([]).n == 0 and math.isnan(summarize([]).mean)
    one = summarize([0.5, float("nan"), None])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.std) and math.isnan(one.lo)
    same = summarize([0.3, 0.3, 0.3])
    assert same.std == 0 and same.lo == same.hi == pytest.approx(0.3)


def test_welch_matches_the_formula():
    a, b = [0.80, 0.82, 0.81, 0.83], [0.70, 0.75, 0.72]
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    t_expected = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 2)  # Welch-Satterthwaite
    t, p = welch(a, b)
    assert t == pytest.approx(t_expected)
    assert p == pytest.approx(2 * student_t.sf(abs(t_expected), df))
    assert welch(b, a)[0] == pytest.approx(-t_expected)


def test_welch_needs_two_values_each_and_handles_zero_spread():
    assert all(math.isnan(x) for x in welch([0.8], [0.7, 0.71]))
    assert welch([0.5, 0.5], [0.5, 0.5]) == (0.0, 1.0)
    assert welch([0.6, 0.6], [0.5, 0.5])[1] == 0.0


def test_holm_step_down():
    # sorted: 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> kept monotone: 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    adj = holm([0.01, float("nan"), 0.02])  # NaN is not a test: m = 2
    assert adj[0] == pytest.approx(0.02) and math.isnan(adj[1]) and adj[2] == pytest.approx(0.02)
    assert holm([]) == []


def test_compare_to_best_flags_only_clear_differences():
    best = [0.80, 0.81, 0.79, 0.80, 0.81]
    rows = compare_to_best([("best", best), ("close", [0.80, 0.79, 0.81, 0.80, 0.79]),
                            ("far", [0.60, 0.61, 0.59, 0.60, 0.62]), ("one-seed", [0.5])])
    by = {r["name"]: r for r in rows}
    assert by["far"]["significant"] is True and by["far"]["diff"] == pytest.approx(0.198)
    assert by["close"]["significant"] is False
    assert by["one-seed"]["significant"] is None and math.isnan(by["one-seed"]["p_holm"])
    assert by["far"]["p_holm"] == pytest.approx(min(1, 2 * by["far"]["p"]))  # two testable comparisons


def test_pareto_front():
    cost = [1, 2, 3, 4, 2, float("nan")]
    acc = [0.5, 0.7, 0.6, 0.9, 0.7, 0.99]
    # (3, 0.6) is beaten by (2, 0.7); the tie at cost 2 keeps one point; NaN cost is never on the front
    assert pareto_front(cost, acc).tolist() == [True, True, False, True, False, False]
    assert pareto_front([], []).tolist() == []
