"""The sweep's auto policies end to end: `NNEval` with its defaults takes amp, channels_last and the CPU
packing from the per-machine tuning cache (figures written here as a probe would leave them), decides
checkpointing per model, keeps compile off for short trials, and records every decision with its reason in
the trial's stats. `--compile on` really compiles inside the jail."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from ab.gpt.brute.fract.generation.manifest import Manifest
from ab.gpt.brute.fract.tune.cache import TuneCache
from ab.gpt.brute.fract.tune.device import cache_key
from ab.gpt.brute.fract.tune.synthetic import decision_bucket, shape_class_of_spec
from tests.eval.evalkit import QUICK, make_root, run_cli


def classes(models: Path) -> set[str]:
    """The decision buckets of the models' shape classes: what the tuner probes and caches."""
    return {decision_bucket(shape_class_of_spec(r["spec"])).key for r in Manifest.load(models).valid()}


def write_figures(cache: Path, shapes: set[str], fastest: str, packing: dict[str, float]) -> None:
    """Cache entries as the probe leaves them: `fastest` twice as fast as the other variants."""
    tc = TuneCache(cache)
    for shape in shapes:
        key = cache_key(torch.device("cpu"), shape, 16)
        measured = {v: (200.0 if v == fastest else 100.0) for v in ("fp32", "fp32+cl", "bf16", "bf16+cl")}
        tc.put("variants", key, {"measured": measured, "rounds": {v: [x] for v, x in measured.items()},
                                 "spread": 1.0, "probed": "test"})
        tc.put("packing", f"{key} | {fastest}", {"measured": packing, "rounds": {}, "spread": 1.0, "probed": "test"})


def stats(out: Path) -> list[dict]:
    return [json.loads(p.read_text())[0]["nn_gpt_fractal"] for p in sorted(out.glob("stat/train/*/1.json"))]


@pytest.mark.parametrize("fastest,packing,workers", [("bf16+cl", {"1x2": 100.0, "2x1": 180.0}, 2),
                                                      ("fp32", {"1x2": 100.0, "2x1": 102.0}, 1)])
def test_defaults_follow_the_tuning_cache(tiny_models, cifar_dir, tmp_path, fastest, packing, workers):
    root = make_root(tmp_path / "lemur")
    cache = tmp_path / "tune.json"
    write_figures(cache, classes(tiny_models), fastest, packing)
    env = {"NN_GPT_FRACTAL_TUNE_CACHE": str(cache)}
    run_cli("ab.gpt.NNEval", "--models", str(tiny_models), "--data-dir", str(cifar_dir), "--limit", "2",
            *QUICK[:QUICK.index("--threads")], "-q", cwd=root, env=env)
    out = root / "new_lemur"
    recs = stats(out)
    assert len(recs) == 2
    for r in recs:
        p = r["policies"]
        assert r["amp"] is fastest.startswith("bf16") and r["channels_last"] is fastest.endswith("+cl")
        assert p["tuning"]["cached"] and p["tuning"]["measured"][fastest] == 200.0
        assert p["amp_reason"].startswith("auto (") and fastest in p["amp_reason"]
        # one step of these models saves a few MB: far below half the free memory
        # checkpointing auto is decided inside the jail, so the record says "auto" and keeps the jail's word apart
        assert r["checkpointing"] == "auto" and r["self_reported"]["checkpointing"] is False
        assert p["checkpointing_reason"].startswith("auto: activations")
        assert 0 < p["saved_tensors_mb"] < 0.5 * p["memory_budget_mb"]
        assert p["compile"] is False and "no compile probe" in p["compile_reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["last_run"]["config"]["workers"] == workers
    # the cache was only read: a probe would have added entries
    assert len(TuneCache(cache).load()) == 2 * len(classes(tiny_models))


def test_compile_on_compiles_inside_the_jail(tiny_models, cifar_dir, tmp_path):
    root = make_root(tmp_path / "lemur")
    run_cli("ab.gpt.NNEval", "--models", str(tiny_models), "--data-dir", str(cifar_dir), "--limit", "1",
            "--epochs", "1", "--train-limit", "48", "--test-limit", "32", "--workers", "1", "--amp", "off",
            "--channels-last", "off", "--compile", "on", "-q", cwd=root, timeout=600)
    [rec] = stats(root / "new_lemur")
    assert rec["policies"]["compile"] is True and rec["policies"]["compile_reason"] == "--compile on"
    assert rec["policies"]["compile_s"] > 0  # the first step paid for compiling


def test_a_halving_rung_keeps_the_populations_packing(tiny_models, cifar_dir, tmp_path):
    """`--workers auto` gives a lone trial all the cores; a halving rung of one model must still train with
    the threads its population got (a thread count changes kernels' summation order, so the numbers)."""
    from ab.gpt.brute.fract.trial.data import locate, prepare
    from ab.gpt.brute.fract.sweep.evaluate import SweepConfig, discover, make_policies

    cache = tmp_path / "tune.json"
    write_figures(cache, classes(tiny_models), "fp32", {"1x2": 100.0, "2x1": 180.0})  # 2 workers x 1 thread
    data = prepare(locate(cifar_dir), tmp_path / "cache").to_dict()
    entries = discover(tiny_models, None)
    cfg = SweepConfig(models=tiny_models, out=tmp_path / "out", tune_cache=cache, workers="auto", quiet=True)

    def packing(todo, population=None):
        _, workers, threads = make_policies(cfg, todo, data, False, {}, lambda m: None, population)
        return workers, threads

    assert packing(entries) == (2, 1)
    assert packing(entries[:1]) == (1, len(os.sched_getaffinity(0)))  # a one-model sweep: the trial gets the cores
    assert packing(entries[:1], population=entries) == (2, 1)  # a rung of that sweep: as its population
