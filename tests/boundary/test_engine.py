"""Batched hand-written engine vs per-network autograd reference."""
import numpy as np
import pytest
import torch

from ab.gpt.brute.fract.boundary import engine, problem

N, W, STEPS = 24, 16, 30
LR0 = np.array([0.5, 5.0, 40.0, 2.0, 300.0])
LR1 = np.array([1.0, 20.0, 3.0, 60.0, 0.5])
OFF0 = np.array([0.0, 0.2, -0.3, 0.0, 0.1])
OFF1 = np.array([0.0, -0.5, 0.0, 0.4, 0.0])


def _reference(pb, b, order, **opts):
    per = pb.per_pixel
    X, y = (pb.X[b], pb.y[b]) if per else (pb.X, pb.y)
    W1, W2 = (pb.W1[b], pb.W2[b]) if per else (pb.W1, pb.W2)
    return engine.reference_train(X, y, W1 + OFF0[b], W2 + OFF1[b], LR0[b], LR1[b], STEPS, order=order, **opts)


def _compare(got, ref, rtol):
    # float64 rounding differs by summation order; chaotic (diverging) runs amplify it, hence rtol.
    fg, fr = np.isfinite(got), np.isfinite(ref)
    # same divergence: the first non-finite step agrees within one step (overflow at the edge)
    first = lambda f: int(np.argmin(f)) if not f.all() else len(f)
    assert abs(first(fg) - first(fr)) <= 1
    assert np.all(fg[: first(fg)]) and not np.any(fg[first(fg):])  # engine: +inf once diverged
    both = fg & fr
    if rtol is not None:
        np.testing.assert_allclose(got[both], ref[both], rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("opts", [
    {},
    {"momentum": 0.9},
    {"norm": True},
    {"skip": True},
    {"activation": "relu"},
    {"activation": "identity", "momentum": 0.5},
    {"activation": "relu", "norm": True, "skip": True, "momentum": 0.3},
])
@pytest.mark.parametrize("batch", [None, 8])
def test_batched_matches_autograd_float64(opts, batch):
    pb = problem.make_problem(N, W, seed=3)
    order = problem.batch_order(N, batch, STEPS, seed=3)
    spec = engine.Spec(steps=STEPS, order=order, dtype=torch.float64, **opts)
    got = engine.train(pb, LR0, LR1, OFF0, OFF1, spec, chunk=2)  # uneven chunks on purpose
    for b in range(len(LR0)):
        _compare(got[b], _reference(pb, b, order, **opts), 1e-7)


def test_per_pixel_problems_match_reference():
    idx = np.arange(len(LR0)) * 7
    pb = problem.make_problem(N, W, seed=1, pixel_index=idx)
    assert pb.per_pixel and not np.allclose(pb.X[0], pb.X[1])
    order = problem.batch_order(N, 8, STEPS, seed=1)
    spec = engine.Spec(steps=STEPS, order=order, dtype=torch.float64, momentum=0.5, skip=True)
    got = engine.train(pb, LR0, LR1, OFF0, OFF1, spec, chunk=3)
    for b in range(len(LR0)):
        _compare(got[b], _reference(pb, b, order, momentum=0.5, skip=True), 1e-7)


def test_float32_close_to_float64_reference():
    pb = problem.make_problem(N, W, seed=0)
    got = engine.train(pb, LR0[:2], LR1[:2], OFF0[:2], OFF1[:2], engine.Spec(steps=STEPS))
    for b in range(2):
        ref = _reference(pb, b, None)
        np.testing.assert_allclose(got[b], ref, rtol=2e-4)


def test_divergent_network_dropped_reads_inf():
    pb = problem.make_problem(N, W, seed=0)
    lr = np.array([0.1, 1e6])
    got = engine.train(pb, lr, lr, 0, 0, engine.Spec(steps=40, dtype=torch.float64))
    assert np.all(np.isfinite(got[0]))
    assert np.isinf(got[1, -1]) and got[1, -1] > 0
    ref = engine.reference_train(pb.X, pb.y, pb.W1, pb.W2, 1e6, 1e6, 40)
    # the blow-up is chaotic: values agree early, then only the divergence itself is comparable
    np.testing.assert_allclose(got[1, :5], ref[:5], rtol=1e-7)
    _compare(got[1], ref, None)


def test_problem_depends_only_on_seed_and_index():
    a = problem.make_problem(10, 4, seed=5, pixel_index=np.array([3, 9]))
    b = problem.make_problem(10, 4, seed=5, pixel_index=np.array([9]))
    np.testing.assert_array_equal(a.X[1], b.X[0])
    c = problem.make_problem(10, 4, seed=6, pixel_index=np.array([9]))
    assert not np.allclose(b.X, c.X)
