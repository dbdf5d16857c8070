"""Stat records: nn-dataset's keys and types, the dropout the model applies, our measurements out of prm."""
from ab.gpt.brute.fract.lemur.stats import EXTRA, importable, stat_trials, trial_prm
from ab.gpt.brute.fract.space.spec import ArchSpec, larsson_rates

CONFIG = {"lr": 0.01, "momentum": 0.9, "batch": 16, "epochs": 2, "transform": "norm_flip", "amp": False,
          "checkpointing": True, "device": "cpu", "dropout": 0.2}
BASE = dict(depth=3, columns=2, channels=(8, 16, 16))
SYSTEM = {"cpu_count": 2, "cpu_type": "x86_64", "cpu_usage_percent": 50.0, "total_ram_kb": 1e6,
          "occupied_ram_kb": 5e5, "ram_usage_percent": 50.0, "gpu_type": "No GPU", "gpu_memory_kb": None,
          "gpu_total_memory_kb": None, "occupied_gpu_memory_kb": None, "gpu_memory_usage_percent": None}


def seed(s, accs):
    return {"seed": s, "params": 1234, "epochs": [
        {"epoch": i + 1, "accuracy": a, "train_loss": 2.0, "val_loss": 2.1, "train_accuracy": 0.2, "gradient_norm": 1.0,
         "epoch_time_s": 2.0, "train_time_s": 1.5, "images_per_s": 100.0, "peak_memory_mb": 900.0,
         "duration_ns": (i + 1) * 2_000_000_000, "wall_s": 2.0, "samples_per_second": 64.0, "system": SYSTEM}
        for i, a in enumerate(accs)]}


def spec_dict(**kw):
    return ArchSpec(**BASE, **kw).to_dict()


def test_prm_holds_the_dropout_the_model_applies_and_nothing_of_ours():
    plain = trial_prm(CONFIG, spec_dict(layers=("conv3x3", "bn", "relu")))
    assert plain == {"lr": 0.01, "momentum": 0.9, "epoch_max": 2, "batch": 16, "transform": "norm_flip"}
    assert trial_prm(CONFIG, spec_dict(layers=("conv3x3", "dropout"), dropout=0.3))["dropout"] == 0.3
    sched = trial_prm(CONFIG, spec_dict(layers=("conv3x3", "dropout"), block_dropout=larsson_rates(3)))
    assert sched["block_dropout"] == "0,0.2,0.4" and "dropout" not in sched
    assert "dropout" not in trial_prm(CONFIG, None)  # no spec (e.g. LLM code): nothing claimed


def test_trials_have_nn_datasets_keys_and_our_measurements_only_under_one_dict():
    from ab.nn.util.Util import uuid4  # nn-dataset's own uid function

    spec = spec_dict(layers=("conv3x3", "bn", "relu"))
    trials = stat_trials("FractalNet-x-0123456789", CONFIG, [seed(0, [0.2, 0.3]), seed(1, [0.25, 0.2])], spec)
    assert sorted(trials) == [1, 2]
    best_first = trials[1]
    assert [t[EXTRA]["seed"] for t in best_first] == [1, 0]  # sorted by accuracy, as nn-dataset keeps them
    t = trials[2][0]
    assert list(t) == ["accuracy", "batch", "duration", "duration_seconds", "epoch_max", "lr", "metric_acc",
                       "momentum", "train_stat", "transform", "uid", "task", "dataset", "metric", "model", EXTRA]
    assert t["uid"] == uuid4(trial_prm(CONFIG, spec)) and len({x["uid"] for x in best_first}) == 1
    assert t["duration"] == 4_000_000_000 and t["duration_seconds"] == 4.0 and t["metric_acc"] == t["accuracy"]
    assert t["train_stat"]["best_accuracy"] == 0.3 and t["train_stat"]["best_epoch"] == 2
    assert t["train_stat"]["samples_per_second"] == 64.0  # the driver's: configured images over its wall time
    assert {k: t["train_stat"][k] for k in SYSTEM} == SYSTEM
    # what the model's process said sits under self_reported only, never in nn-dataset's columns
    assert t["train_stat"]["train_loss"] is None and t["train_stat"]["train_accuracy"] is None
    assert t[EXTRA]["self_reported"]["train_accuracy"] == 0.2 and t[EXTRA]["self_reported"]["images_per_s"] == 100.0
    assert "images_per_s" not in t[EXTRA] and t[EXTRA]["wall_s"] == 2.0
    imported = importable(t)  # what nn-dataset's JSON import passes on to save_stat
    assert EXTRA not in imported and imported["train_stat"] == t["train_stat"]
