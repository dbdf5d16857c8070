"""Successive halving: rung maths, promotion, failures, resumability from records."""
import random

import pytest

from ab.gpt.brute.fract.sweep.halving import (Rungs, Trial, epochs_run, make_rungs, parse_rungs, ranking, step,
                                              trial_from_run)


def curves(n: int, epochs: int, seed: int = 0) -> dict[str, list[float]]:
    """Learning curves: each model has a quality; accuracy rises towards it with noise."""
    rng = random.Random(seed)
    out = {}
    for i in range(n):
        q = rng.uniform(0.3, 0.8)
        out[f"m{i:02d}"] = [q * (1 - 0.5 ** (e + 1)) + rng.gauss(0, 0.01) for e in range(epochs)]
    return out


def run_sweep(models, truth, rungs, trials=None, max_trials=None):
    """A sweep driver: asks step() what to run, 'trains' it from the truth table; stops after max_trials."""
    trials = dict(trials or {})
    ran = 0
    while True:
        s = step(models, trials, rungs)
        if s.done:
            return trials, s
        for name, target in s.todo:
            if max_trials is not None and ran == max_trials:
                return trials, None  # killed
            trials[name] = Trial(tuple(truth[name][:target]))
            ran += 1


def test_make_rungs():
    assert make_rungs(3, eta=3).budgets == (1, 3)
    assert make_rungs(5, eta=3).budgets == (1, 3, 5)
    assert make_rungs(9, eta=3).budgets == (1, 3, 9)
    assert make_rungs(1).budgets == (1,)
    assert make_rungs(8, eta=2, min_epochs=2).budgets == (2, 4, 8)
    assert parse_rungs("1,2,3", eta=3).budgets == (1, 2, 3)
    for bad in ("3,1", "1,1", "0,2"):
        with pytest.raises(ValueError, match="increasing"):
            parse_rungs(bad, eta=3)
    with pytest.raises(ValueError, match="comma"):
        parse_rungs("1;3", eta=3)
    with pytest.raises(ValueError, match="eta"):
        Rungs((1, 3), eta=1)


def test_promotion_counts_and_reasons():
    truth = curves(48, 9)
    models = sorted(truth)
    rungs = make_rungs(9, eta=3)
    trials, s = run_sweep(models, truth, rungs)
    assert [len(m) for m in s.members] == [48, 16, 5]
    assert sorted(s.finished) == sorted(s.members[2]) and len(s.stopped) == 43
    # each rung keeps its best by accuracy at that rung's budget
    for k, budget in enumerate(rungs.budgets[:-1]):
        ranked = sorted(s.members[k], key=lambda m: -truth[m][budget - 1])
        assert sorted(s.members[k + 1]) == sorted(ranked[:len(s.members[k + 1])])
    stop = s.stopped[sorted(set(s.members[0]) - set(s.members[1]))[0]]
    assert stop.rung == 0 and stop.budget == 1 and stop.epochs == 1 and "ranked" in stop.reason
    assert stop.as_record()["schedule"] == "halving"
    # compute: 32 models stop at 1 epoch, 11 at 3, 5 run all 9 (against 48 x 9 for the full budget)
    assert epochs_run(models, trials) == 32 * 1 + 11 * 3 + 5 * 9
    assert epochs_run(models, trials, {m: 2.0 for m in models}) == 2 * (32 + 33 + 45)
    top = ranking(models, trials, rungs)
    assert top[:5] == sorted(s.finished, key=lambda m: -truth[m][8])


def test_failures_stop_and_still_count_in_rung_size():
    truth = curves(9, 3)
    models = sorted(truth)
    rungs = make_rungs(3, eta=3)
    trials = {m: Trial(tuple(truth[m][:1])) for m in models}
    trials["m00"] = Trial((None,), "diverged")
    trials["m01"] = Trial((), "out-of-memory")
    s = step(models, trials, rungs)
    assert s.stopped["m00"].reason.startswith("diverged") and s.stopped["m01"].epochs == 0
    # 9 in the rung -> 3 go on, chosen among the 7 that trained
    assert len(s.members[1]) == 3 and not {"m00", "m01"} & set(s.members[1])
    assert sorted(n for n, _ in s.todo) == sorted(s.members[1]) and {b for _, b in s.todo} == {3}
    assert ranking(models, trials, rungs)[-2:] == ["m00", "m01"]  # failed last, then by accuracy, then name


def test_killed_sweep_resumes_to_the_same_outcome():
    truth = curves(30, 5, seed=3)
    models = sorted(truth)
    rungs = make_rungs(5, eta=3)
    full_trials, full = run_sweep(models, truth, rungs)
    for kill_after in (0, 7, 30, 35, 41):
        partial, killed = run_sweep(models, truth, rungs, max_trials=kill_after)
        assert killed is None
        resumed, s = run_sweep(models, truth, rungs, trials=partial)
        assert resumed == full_trials and s.finished == full.finished and s.stopped == full.stopped


def test_same_records_same_decision_and_ties_break_by_name():
    models = ["b", "a", "d", "c"]
    trials = {m: Trial((0.5,)) for m in models}
    rungs = Rungs((1, 2), eta=2)
    s1, s2 = step(models, trials, rungs), step(list(reversed(models)), trials, rungs)
    assert s1.members[1] == s2.members[1] == ["a", "b"]
    # a model that already trained past its rung (e.g. a full earlier run) is judged at the rung's budget
    trials["d"] = Trial((0.6, 0.1))
    assert step(models, trials, rungs).members[1][0] == "d"


def test_trial_from_run_record():
    rec = {"status": "trained", "seeds": [{"epochs": [{"accuracy": 0.2}, {"accuracy": 0.4}]},
                                          {"epochs": [{"accuracy": 0.4}, {"accuracy": 0.6}]}]}
    t = trial_from_run(rec)
    assert t.accuracies == pytest.approx((0.3, 0.5)) and not t.failed
    t = trial_from_run({"status": "diverged", "epochs": [{"accuracy": 0.1}, {"accuracy": None}]})
    assert t.accuracies == (0.1, None) and t.failed
