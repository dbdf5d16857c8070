"""The training runner, called as the sweep calls it: inside a sandbox worker, never in this process."""
from __future__ import annotations

import pytest

from ab.gpt.brute.fract import data
from ab.gpt.brute.fract.executors import TRAIN
from ab.gpt.brute.fract.sandbox import Limits, Sandbox


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    with Sandbox(workers=1, limits=Limits(timeout_s=300, memory_gb=8),
                 run_dir=tmp_path_factory.mktemp("run")) as sb:
        yield sb


@pytest.fixture(scope="module")
def setup(cifar_dir, tiny_models, tmp_path_factory):
    prepared = data.prepare(data.locate(cifar_dir), tmp_path_factory.mktemp("cache")).to_dict()
    model = sorted(tiny_models.glob("FractalNet-N2-C2*.py")) or sorted(tiny_models.glob("FractalNet-N1-C2*.py"))
    return prepared, model[0]


def train(box, setup, work, **over):
    prepared, model = setup
    config = {"epochs": 2, "batch": 16, "data": prepared, "norm": data.lemur_norm(), "train_limit": 256,
              "test_limit": 128, "threads": 1, "work_dir": str(work), **over}
    return box.call(TRAIN, path=str(model), config=config)


def losses(result):
    return [(e["train_loss"], e["val_loss"], e["accuracy"]) for e in result["epochs"]]


def test_same_seed_same_numbers(box, setup):
    a = train(box, setup, box.run_dir / "a", seed=3)
    b = train(box, setup, box.run_dir / "b", seed=3)
    c = train(box, setup, box.run_dir / "c", seed=4)
    assert a["status"] == b["status"] == "trained" and len(a["epochs"]) == 2
    assert losses(a) == losses(b)
    assert losses(a) != losses(c)
    e = a["epochs"][0]
    assert e["images_per_s"] > 0 and e["peak_memory_mb"] > 0 and e["epoch_time_s"] > 0
    assert not a["amp"] and a["checkpointing"] and a["device"] == "cpu"  # amp auto: 8-channel convs stay fp32
    forced = train(box, setup, box.run_dir / "d", seed=3, epochs=1, amp=True)
    assert forced["amp"] and losses(forced) != losses(a)[:1]


def test_auto_amp_follows_conv_width():
    import torch
    import torch.nn as nn

    from ab.gpt.brute.fract.NNAlterFractalNet import auto_amp

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    narrow = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 32, 3))
    wide = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 64, 3))
    assert not auto_amp(narrow, cpu) and auto_amp(wide, cpu) and auto_amp(narrow, cuda)
    assert not auto_amp(nn.Linear(4, 4), cpu)


def test_checkpointing_does_not_change_the_numbers(box, setup):
    on = train(box, setup, box.run_dir / "on", checkpointing=True)
    off = train(box, setup, box.run_dir / "off", checkpointing=False)
    assert not off["checkpointing"]
    for x, y in zip(losses(on), losses(off)):
        assert x == pytest.approx(y, rel=1e-3, abs=1e-4)


def test_resume_continues_where_it_stopped(box, setup):
    whole = train(box, setup, box.run_dir / "whole", epochs=2)
    part = train(box, setup, box.run_dir / "part", epochs=1)
    rest = train(box, setup, box.run_dir / "part", epochs=2)  # same work dir: resumes from state.pt
    assert part["resumed_epochs"] == 0 and rest["resumed_epochs"] == 1
    assert losses(rest) == losses(whole)
    again = train(box, setup, box.run_dir / "part", epochs=2)  # finished: the stored result comes back
    assert losses(again) == losses(whole)


def test_failures_are_results(box, setup):
    bad = train(box, setup, box.run_dir / "bad", transform="no_such_transform")
    assert bad["status"] == "error" and "no tensor fast path" in bad["message"]
