"""The halving sweep's pure parts: rungs from the options, the record's schedule entry, the printout."""
import pytest

from ab.gpt.brute.fract.sweep.evaluate import SweepConfig
from ab.gpt.brute.fract.sweep.halving import Stop
from ab.gpt.brute.fract.sweep.halving_sweep import describe, rungs_of, schedule_of, schedule_record


def cfg(**kw) -> SweepConfig:
    return SweepConfig(models=".", out=".", schedule="halving", **kw)


@pytest.mark.parametrize("kw, budgets", [
    ({"epochs": 3}, (1, 3)),
    ({"epochs": 9, "eta": 3}, (1, 3, 9)),
    ({"epochs": 5, "eta": 2}, (1, 2, 4, 5)),
    ({"epochs": 3, "rungs": (1,)}, (1, 3)),
    ({"epochs": 3, "rungs": (1, 2)}, (1, 2, 3)),
    ({"epochs": 3, "rungs": (1, 3)}, (1, 3)),  # the full budget given too
    ({"epochs": 1}, (1,)),
])
def test_rungs_of(kw, budgets):
    assert rungs_of(cfg(**kw)).budgets == budgets


def test_rungs_past_the_full_budget_are_refused():
    with pytest.raises(ValueError, match="goes past --epochs 3"):
        rungs_of(cfg(epochs=3, rungs=(1, 4)))


def test_schedule_record_round_trip():
    r = rungs_of(cfg(epochs=3, min_keep=2))
    rec = {"schedule": schedule_record(r, "stopped", Stop(0, 1, 1, "ranked 3 of 3"))}
    assert schedule_of(rec) == {"name": "halving", "rungs": [1, 3], "eta": 3, "min_keep": 2, "state": "stopped",
                                "stop": {"schedule": "halving", "rung": 0, "budget": 1, "epochs": 1,
                                         "reason": "ranked 3 of 3"}}
    assert schedule_of({"status": "trained"}) is None and schedule_of(None) is None


def test_describe():
    s = {"rungs": [1, 3], "eta": 3, "min_keep": 1, "models": 48, "stopped": 32, "finished": 16, "running": 0,
         "per_rung": [{"rung": 0, "budget": 1, "models": 48, "stopped": 32, "failed": 2},
                      {"rung": 1, "budget": 3, "models": 16, "stopped": 0, "failed": 0}],
         "epochs": 80, "full_epochs": 144, "epoch_share": 0.5556, "flops_share": None, "trained_epochs": 80}
    assert describe(s) == [
        "halving (rungs 1,3, eta 3, min-keep 1): 48 models; stopped 32 at rung 0 (1 epoch, 2 failed); 16 finished",
        "compute: 80 of 144 epochs of the full schedule (55.6%), FLOP-weighted -; 80 epochs trained in this run"]
