"""Readout on hand-made trajectories."""
import numpy as np
import pytest

from ab.gpt.brute.fract.boundary import readout


def test_normalise_and_clip():
    v = readout.normalise(np.array([[2.0, 1.0, np.inf, np.nan, 4e7]]), clip=1e6)
    np.testing.assert_array_equal(v, [[1.0, 0.5, 1e6, 1e6, 1e6]])


def test_sum_score_signs_and_values():
    steps = 30
    conv = np.linspace(4.0, 1.0, steps)  # normalised: 1 .. 0.25
    div = 4.0 * np.geomspace(1, 100, steps)  # normalised: 1 .. 100
    s = readout.score(np.stack([conv, div]), "sum", window=5)
    v0, v1 = conv / 4.0, div / 4.0
    assert s[0] == pytest.approx(-v0.sum())
    assert s[1] == pytest.approx((1.0 / v1).sum())


def test_window_decides_convergence():
    # falls below 1 only over the last 3 steps: converged for window 3, not for window 10
    t = np.array([1.0] * 7 + [2.0] * 10 + [0.1] * 3)
    assert readout.score(t, "sum", window=3)[0] < 0
    assert readout.score(t, "sum", window=10)[0] > 0


def test_final_and_probe():
    t = np.array([[10.0, 1.0, 0.01], [10.0, 1e3, 1e9]])
    a = readout.scores_all(t, window=1, probe_step=1)
    np.testing.assert_allclose(a["final"], [-(1 + 3), 1 + 6])  # 0.001 -> -4; clipped 1e6 -> 7
    np.testing.assert_allclose(a["probe"], [-(1 + 1), 1 + 2])  # step 1: 0.1 and 100
    assert a["converged"].tolist() == [True, False]


def test_diverged_reciprocal_sum_bounded_for_zero_losses():
    t = np.array([1.0, 0.0, 1e9])  # contains an exact zero and a blow-up
    s = readout.score(t, "sum", window=1, clip=1e6)[0]
    assert np.isfinite(s) and s > 0
