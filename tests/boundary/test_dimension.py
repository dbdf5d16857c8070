"""Box-counting dimension on shapes of known dimension (tolerances stated per test)."""
import numpy as np

from ab.gpt.brute.fract.boundary import dimension


def test_straight_line_is_one():  # tolerance 0.02
    m = np.zeros((512, 512), bool)
    m[200, :] = True
    d = dimension.box_dimension(m).dimension
    assert abs(d - 1.0) < 0.02


def test_diagonal_line_is_one():  # tolerance 0.05
    m = np.eye(512, dtype=bool)
    assert abs(dimension.box_dimension(m).dimension - 1.0) < 0.05


def test_filled_square_border_is_one():  # tolerance 0.05, border found from scores' sign
    s = np.ones((512, 512))
    s[100:400, 150:450] = -1.0
    d = dimension.map_dimension(s).dimension
    assert abs(d - 1.0) < 0.05


def _koch(level):
    pts = np.array([0.0 + 0j, 1.0 + 0j])
    rot = np.exp(1j * np.pi / 3)
    for _ in range(level):
        a, b = pts[:-1], pts[1:]
        d = (b - a) / 3
        new = np.stack([a, a + d, a + d + d * rot, a + 2 * d], axis=1).ravel()
        pts = np.append(new, pts[-1])
    return pts


def test_koch_curve_is_log4_over_log3():  # tolerance 0.06
    pts = _koch(7)
    n = 2048
    t = np.linspace(0, 1, 8, endpoint=False)
    dense = (pts[:-1, None] + (pts[1:] - pts[:-1])[:, None] * t).ravel()
    m = np.zeros((n // 3 + 4, n), bool)
    m[(dense.imag * (n - 1)).astype(int) + 2, (dense.real * (n - 1)).astype(int)] = True
    d = dimension.box_dimension(m, sizes=[2, 4, 8, 16, 32, 64, 128]).dimension
    assert abs(d - np.log(4) / np.log(3)) < 0.06


def test_random_set_is_two():  # tolerance 0.08
    rng = np.random.default_rng(0)
    m = rng.random((512, 512)) < 0.5
    assert abs(dimension.box_dimension(m, min_size=2).dimension - 2.0) < 0.08
    # border of random signs fills the plane too
    assert abs(dimension.map_dimension(rng.standard_normal((512, 512))).dimension - 2.0) < 0.08


def test_border_mask_2x2():
    s = np.array([[-1, -1, 1], [-1, -1, 1], [-1, -1, -1]], float)
    np.testing.assert_array_equal(dimension.border_mask(s), [[False, True], [False, True]])


def test_no_border_gives_nan_and_median_skips_it():
    flat = -np.ones((64, 64))
    assert np.isnan(dimension.map_dimension(flat).dimension)
    s = np.ones((256, 256))
    s[:, :128] = -1
    med, res = dimension.median_dimension([flat, s, s])
    assert abs(med - 1.0) < 0.02 and len(res) == 3
