"""The halving plan (`NNEval --plan --schedule halving`): per-rung and total figures from known per-epoch costs."""
import pytest

from ab.gpt.brute.fract.sweep import plan as P
from ab.gpt.brute.fract.sweep.halving import make_rungs, sweep_rungs
from ab.gpt.brute.fract.sweep.plan_halving import Span, describe, estimate, halving_records, rung_sizes

SPEC = {"depth": 1, "columns": 1, "channels": [16], "global_drop": 0.0}


def plan_of(costs, epochs=3, workers=2, overhead_s=0.5, seeds=1, rate=3e9):
    """A real plan whose model i costs costs[i] seconds and 3e9 x costs[i] FLOPs per epoch (1000 training
    images, no test images, one shape class at `rate` FLOP/s): forward FLOPs = costs[i] x 1e6."""
    es = [P.Entry(f"m{i}", int(c * 1e6), 1, SPEC) for i, c in enumerate(costs)]
    return P.make_plan(es, epochs, seeds, train_images=1000, test_images=0, rate=lambda e: rate, workers=workers,
                       overhead_s=overhead_s)


def test_nine_models_eta_3_three_epochs():
    # costs 1..9 s per epoch; rungs (1, 3): 9 models x 1 epoch, then the best 3 x 2 more epochs
    p = plan_of(range(1, 10))
    hp = estimate(p, make_rungs(3, eta=3))
    assert [(c.rung, c.budget, c.models, c.epochs) for c in hp.per_rung] == [(0, 1, 9, 1), (1, 3, 3, 2)]
    r0, r1 = hp.per_rung
    # rung 0 holds every model: exact; one trial (0.5 s overhead) per model
    assert r0.compute_s == Span(45 + 9 * 0.5, 45 + 9 * 0.5, 45 + 9 * 0.5)
    assert r0.flops == Span(3e9 * 45, 3e9 * 45, 3e9 * 45)
    # rung 1: 3 models x 2 epochs; expected at the mean cost 5, low the cheapest (1,2,3), high (7,8,9)
    assert r1.compute_s.expected == pytest.approx(3 * (5 * 2 + 0.5))
    assert r1.compute_s.low == pytest.approx(6 * 2 + 1.5) and r1.compute_s.high == pytest.approx(24 * 2 + 1.5)
    assert r1.flops.expected == pytest.approx(3e9 * 30) and r1.flops.low == pytest.approx(3e9 * 12)
    assert r1.flops.high == pytest.approx(3e9 * 48)
    # wall on 2 workers, longest first: rung 0 trials 9.5 .. 1.5 s -> 25.5 s; rung 1 low 6.5, 4.5, 2.5 -> 7 s,
    # high 18.5, 16.5, 14.5 -> 31 s, expected three trials of 10.5 s -> 21 s
    assert r0.wall_s.expected == r0.wall_s.low == r0.wall_s.high == pytest.approx(25.5)
    assert (r1.wall_s.expected, r1.wall_s.low, r1.wall_s.high) == pytest.approx((21, 7, 31))
    # totals vs the full schedule (27 epochs, 139.5 s compute, 71.5 s wall)
    assert (hp.epochs, hp.full_epochs) == (15, 27) and hp.epoch_share == pytest.approx(15 / 27)
    assert p.compute_s == pytest.approx(139.5) and p.wall_s == pytest.approx(71.5)
    assert (hp.compute_s.expected, hp.compute_s.low, hp.compute_s.high) == pytest.approx((81, 63, 99))
    assert (hp.wall_s.expected, hp.wall_s.low, hp.wall_s.high) == pytest.approx((46.5, 32.5, 56.5))
    assert hp.compute_share.expected == pytest.approx(81 / 139.5)
    assert hp.wall_share.high == pytest.approx(56.5 / 71.5)
    # FLOP-weighted: expected = the epoch share (every model equally likely to go on); range from the costs
    assert (hp.flops_share.expected, hp.flops_share.low, hp.flops_share.high) == pytest.approx(
        (75 / 135, 57 / 135, 93 / 135))
    text = "\n".join(describe(hp))
    assert "rung 0: budget 1 epoch(s), 9 model(s) x 1 epoch(s)" in text
    assert "rung 1: budget 3 epoch(s), 3 model(s) x 2 epoch(s)" in text
    assert "halving total: 15 of 27 epochs (55.6%), FLOP-weighted 55.6% [42.2% to 68.9%]" in text
    assert "wall ~46.5s [32.5s to 56.5s] of ~1m12s (65.0% [45.5% to 79.0%]) with 2 worker(s)" in text


def test_rung_sizes_follow_keep_and_min_keep():
    assert rung_sizes(9, make_rungs(3, eta=3)) == [9, 3]
    assert rung_sizes(48, make_rungs(9, eta=3)) == [48, 16, 5]
    assert rung_sizes(3, make_rungs(4, eta=2, min_keep=2)) == [3, 2, 2]
    assert rung_sizes(2, make_rungs(9, eta=3)) == [2, 1, 1]
    assert rung_sizes(5, make_rungs(1)) == [5]


def test_seeds_overhead_and_three_rungs():
    # 2 seeds: each epoch figure covers both seeds; the overhead is paid per seed, once per model per rung
    p = plan_of([2, 4, 6, 8], epochs=4, workers=1, overhead_s=1.0, seeds=2)
    hp = estimate(p, sweep_rungs(4, eta=2, min_keep=1))  # rungs 1, 2, 4: 4 -> 2 -> 1 models
    assert [(c.models, c.epochs) for c in hp.per_rung] == [(4, 1), (2, 1), (1, 2)]
    assert (hp.epochs, hp.full_epochs) == ((4 + 2 + 2) * 2, 4 * 4 * 2)
    per_epoch = [2 * c for c in (2, 4, 6, 8)]  # two seeds
    r2 = hp.per_rung[2]
    assert (r2.compute_s.expected, r2.compute_s.low, r2.compute_s.high) == pytest.approx(
        (2 * 10 + 2, 2 * 4 + 2, 2 * 16 + 2))
    # one worker: wall = compute, rung by rung
    assert (hp.wall_s.expected, hp.wall_s.low, hp.wall_s.high) == pytest.approx(
        (hp.compute_s.expected, hp.compute_s.low, hp.compute_s.high))
    assert hp.per_rung[0].compute_s.expected == pytest.approx(sum(per_epoch) + 4 * 2)
    # a single rung (epochs 1) is the full schedule itself
    one = plan_of([2, 4, 6], epochs=1)
    h1 = estimate(one, make_rungs(1))
    assert h1.compute_s.expected == pytest.approx(one.compute_s) and h1.wall_s.expected == pytest.approx(one.wall_s)
    assert h1.epoch_share == 1


def test_expected_wall_stays_in_the_range():
    # 10 workers, 5 of 10 go on: five trials of the mean (6.4 s) would take 6.4 s, but even the five cheapest
    # include a 10 s one
    hp = estimate(plan_of([1] * 4 + [10] * 6, epochs=2, workers=10, overhead_s=0.0), make_rungs(2, eta=2))
    r1 = hp.per_rung[1]
    assert (r1.models, r1.wall_s.low, r1.wall_s.high, r1.wall_s.expected) == (5, 10, 10, 10)


def test_unknown_costs_and_mismatched_rungs():
    es = [P.Entry("a", 10**6, 1, SPEC), P.Entry("b", None)]
    p = P.make_plan(es, 3, train_images=1000, test_images=0, rate=lambda e: 1e9)
    hp = estimate(p, make_rungs(3))
    assert hp.per_rung[0].flops is None and hp.compute_s is None and hp.wall_s is None and hp.flops_share is None
    assert [c.models for c in hp.per_rung] == [2, 1] and hp.epochs == 2 + 2
    text = "\n".join(describe(hp))
    assert "rung 1: budget 3 epoch(s), 1 model(s) x 2 epoch(s): -, compute -, wall ~-" in text
    assert "FLOP-weighted -" in text
    flops_only = estimate(P.make_plan(es[:1], 3), make_rungs(3))  # no calibration: FLOPs, no times
    assert flops_only.flops is not None and flops_only.compute_s is None
    with pytest.raises(ValueError, match="the rungs end at 5 epochs but the plan is for 3"):
        estimate(p, make_rungs(5))
    assert estimate(P.make_plan([], 3), make_rungs(3)).epoch_share is None


def test_halving_records_are_found(tmp_path):
    from ab.gpt.brute.fract.util.atomic import write_json
    from ab.gpt.brute.fract.sweep.results import runs_dir
    from ab.gpt.brute.fract.sweep.halving_sweep import schedule_record

    assert halving_records(tmp_path / "none") == []
    write_json(runs_dir(tmp_path) / "F.json", {"name": "F", "status": "trained"})  # a full-schedule record
    halving = {"name": "H", "status": "diverged", "schedule": schedule_record(make_rungs(3), "stopped")}
    write_json(runs_dir(tmp_path) / "H.json", halving)
    assert halving_records(tmp_path) == ["H"]
