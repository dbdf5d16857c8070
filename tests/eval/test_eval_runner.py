"""The training runner, called as the sweep calls it: inside a jail, never in this process; the driver
side scores the logits and keeps the state."""
from __future__ import annotations

import pytest

from ab.gpt.brute.fract.trial import data
from ab.gpt.brute.fract.sweep.evaluate import saved_progress
from ab.gpt.brute.fract.trial import Trial, TrialLimits
from ab.gpt.brute.fract.trial.executors import LocalExecutor
from ab.gpt.brute.fract.trial.protocol import config_hash


@pytest.fixture(scope="module")
def setup(cifar_dir, tiny_models, tmp_path_factory):
    prepared = data.prepare(data.locate(cifar_dir), tmp_path_factory.mktemp("cache")).to_dict()
    model = sorted(tiny_models.glob("FractalNet-N2-C2*.py")) or sorted(tiny_models.glob("FractalNet-N1-C2*.py"))
    return prepared, model[0].read_text()


@pytest.fixture(scope="module")
def box(setup):
    prepared, _ = setup
    with LocalExecutor(1, TrialLimits(memory_gb=8), data={k: prepared[k] for k in ("train_x", "train_y", "test_x")},
                       threads=1) as ex:
        yield ex


def train(box, setup, work, **over):
    """One trial as the sweep runs it: resumes from what an earlier call left in `work`."""
    prepared, code = setup
    config = {"epochs": 2, "batch": 16, "norm": [list(v) for v in data.lemur_norm()], "train_limit": 256,
              "test_limit": 128, "threads": 1, "seed": 0, "device": "cpu", "amp": "auto", "checkpointing": True,
              "channels_last": False, "lr": 0.01, "momentum": 0.9, "dropout": 0.2, "transform": "norm_flip",
              "eval_batch": 256, **over}
    config["config_hash"] = config_hash(config)
    work.mkdir(parents=True, exist_ok=True)
    history, state = saved_progress(work, config)
    trial = Trial("train", code, config, 300, labels=prepared["test_y"], resume=state, history=history,
                  state_dir=str(work))
    return box.submit(trial).result(), len(history)


def losses(result):
    return [(e["train_loss"], e["val_loss"], e["accuracy"]) for e in result.epochs]


def test_same_seed_same_numbers(box, setup, tmp_path):
    a, _ = train(box, setup, tmp_path / "a", seed=3)
    b, _ = train(box, setup, tmp_path / "b", seed=3)
    c, _ = train(box, setup, tmp_path / "c", seed=4)
    assert a.status == b.status == "trained" and len(a.epochs) == 2
    assert losses(a) == losses(b)
    assert losses(a) != losses(c)
    e = a.epochs[0]
    assert e["images_per_s"] > 0 and e["peak_memory_mb"] > 0 and e["epoch_time_s"] > 0
    assert "train_loss" in e["self_reported"] and "accuracy" not in e["self_reported"]
    assert not a.value["amp"] and a.value["checkpointing"] and a.value["device"] == "cpu"  # 8-channel convs: fp32
    forced, _ = train(box, setup, tmp_path / "d", seed=3, epochs=1, amp=True)
    assert forced.value["amp"] and losses(forced) != losses(a)[:1]


def test_auto_amp_follows_conv_width():
    import torch
    import torch.nn as nn

    from ab.gpt.brute.fract.NNAlterFractalNet import auto_amp

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    narrow = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 32, 3))
    wide = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 64, 3))
    assert not auto_amp(narrow, cpu) and auto_amp(wide, cpu) and auto_amp(narrow, cuda)
    assert not auto_amp(nn.Linear(4, 4), cpu)


def test_checkpointing_does_not_change_the_numbers(box, setup, tmp_path):
    on, _ = train(box, setup, tmp_path / "on", checkpointing=True)
    off, _ = train(box, setup, tmp_path / "off", checkpointing=False)
    assert not off.value["checkpointing"]
    for x, y in zip(losses(on), losses(off)):
        assert x == pytest.approx(y, rel=1e-3, abs=1e-4)


def test_resume_continues_where_it_stopped(box, setup, tmp_path):
    whole, _ = train(box, setup, tmp_path / "whole", epochs=2)
    part, resumed = train(box, setup, tmp_path / "part", epochs=1)
    assert resumed == 0 and (tmp_path / "part" / "state.safetensors").exists()
    rest, resumed = train(box, setup, tmp_path / "part", epochs=2)  # the safetensors state goes back in
    assert resumed == 1
    assert losses(rest) == losses(whole)


def test_failures_are_results(box, setup, tmp_path):
    bad, _ = train(box, setup, tmp_path / "bad", transform="no_such_transform")
    assert bad.status == "error" and "no tensor fast path" in bad.message


def test_checkpointing_auto_follows_the_memory_budget(box, setup, tmp_path):
    """`checkpointing: auto` turns checkpointing on exactly when what one training forward saves exceeds
    half the budget; the figure agrees with the model file's own `Net.saved_bytes`; numbers are unchanged."""
    import importlib.util

    tight, _ = train(box, setup, tmp_path / "tight", epochs=1, checkpointing="auto", memory_budget=1 << 20)
    roomy, _ = train(box, setup, tmp_path / "roomy", epochs=1, checkpointing="auto", memory_budget=1 << 40)
    assert tight.status == roomy.status == "trained"
    saved = tight.value["saved_bytes"]
    assert saved == roomy.value["saved_bytes"] and saved > (1 << 20) / 2
    assert tight.value["checkpointing"] and not roomy.value["checkpointing"]
    assert tight.value["memory_budget"] == 1 << 20
    assert losses(tight) == losses(roomy)
    path = tmp_path / "model.py"
    path.write_text(setup[1])
    spec = importlib.util.spec_from_file_location("tiny_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import torch

    net = module.Net((1, 3, 32, 32), (10,), {"lr": 0.01, "momentum": 0.9, "dropout": 0.2}, torch.device("cpu"))
    net.amp = False
    assert net.saved_bytes(16) == pytest.approx(saved, rel=0.05)
