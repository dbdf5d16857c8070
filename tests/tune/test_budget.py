"""Probing pays for itself: the budget rule probes on long sweeps and takes the default on short ones (the
reason says so), cached figures are used whatever the budget, and classes that share a decision bucket
share one probe. Figures are recorded ones (this project's manifests and probes) or real short probes."""
import json
import math

import pytest

from ab.gpt.brute.fract.tune import autotune, budget
from ab.gpt.brute.fract.tune.budget import ProbeBudget
from ab.gpt.brute.fract.tune.cache import TuneCache
from ab.gpt.brute.fract.tune.device import cache_key, usable_cores
from ab.gpt.brute.fract.tune.policies import SweepPolicies
from ab.gpt.brute.fract.tune.synthetic import ShapeClass, decision_bucket, shape_class_of_spec

TINY = ShapeClass.of((4, 8), 2)
KW = {"rounds": 2, "min_s": 0.02}
# 8 narrow models (AlterNNFN --generator stratified --seed 0 over 16-32-64, 16-32 and 8-16-32): spec, forward FLOPs
SWEEP = [({"depth": 1, "columns": 1, "channels": [8]}, 442528),
         ({"depth": 1, "columns": 3, "channels": [8]}, 16793760),
         ({"depth": 2, "columns": 1, "channels": [8, 16]}, 1032512),
         ({"depth": 2, "columns": 2, "channels": [8, 16]}, 4424000),
         ({"depth": 1, "columns": 2, "channels": [16]}, 6488384),
         ({"depth": 2, "columns": 3, "channels": [8, 16]}, 34816320),
         ({"depth": 3, "columns": 1, "channels": [16, 32, 32]}, 4424320),
         ({"depth": 3, "columns": 2, "channels": [8, 16, 32]}, 18842240)]


def entries(path) -> dict:
    return json.loads(path.read_text())["entries"] if path.exists() else {}


def test_trial_and_sweep_estimates():
    # FLOP-bound: 3 x forward FLOPs x batch per step at the optimistic rate; 313 steps of 5,000 images at 16
    big = {"depth": 3, "columns": 1, "channels": [64, 128, 256]}
    flops = 300_000_000
    assert budget.trial_seconds(flops, big, 5000, 1, 16, "cpu") == pytest.approx(313 * 3 * flops * 16 / budget.RATE["cpu"])
    # a tiny model is overhead-bound: the minimum step time decides; epochs scale it
    assert budget.trial_seconds(442528, SWEEP[0][0], 5000, 2, 16, "cpu") == pytest.approx(2 * 313 * budget.MIN_STEP_S["cpu"])
    # global drop-path halves a C2 net's expected work at global_drop 0.5 ... 1 - 0.5 + 0.5 / 2 = 0.75
    c2 = {"depth": 1, "columns": 2, "channels": [64], "global_drop": 0.5}
    assert budget.trial_seconds(flops, c2, 5000, 1, 16, "cpu") == pytest.approx(
        0.75 * budget.trial_seconds(flops, None, 5000, 1, 16, "cpu"))
    assert budget.trial_seconds(flops, None, 5000, 1, 16, "cuda:1") < budget.trial_seconds(flops, None, 5000, 1, 16, "cpu")
    assert budget.sweep_seconds([4.0, 1.0, 1.0], 2) == 4.0  # the longest trial bounds the wall
    assert budget.sweep_seconds([2.0, 2.0, 2.0, 2.0], 2) == 4.0
    assert budget.sweep_seconds([], 4) == 0.0


def test_budget_arithmetic():
    b = ProbeBudget.for_sweep(100.0)
    assert b.total_s == pytest.approx(budget.FRACTION * 100.0) and b.left_s == b.total_s
    assert b.allows(4.0) and not b.allows(6.0)
    assert not b.allows(2.0, share_s=30.0)  # 2 s is more than 5% of the 30 s its figures decide for
    b.spend(3.0)
    assert b.left_s == pytest.approx(2.0) and not b.allows(2.5)
    assert "not probed" in b.refusal("class w8_c2", 2.5) and "~100 s" in b.refusal("x", 2.5)
    assert ProbeBudget.unlimited().allows(1e9) and math.isinf(ProbeBudget.unlimited().left_s)


def test_the_small_sweep_takes_the_default_and_the_large_one_probes(tmp_path):
    cache = TuneCache(tmp_path / "tune.json")
    cost = budget.variant_probe_seconds(4, KW["rounds"], KW["min_s"], "cpu")
    # 10 s of training allows 0.5 s of probing: less than the probe costs
    small = ProbeBudget.for_sweep(10.0)
    assert cost > small.total_s
    t = autotune.tune_variant(TINY, 8, "cpu", cache, probe_kw=KW, spend=small, share_s=10.0)
    assert t.source == "default" and not t.measured and not t.cached
    assert (t.amp, t.channels_last) == (False, False)  # 4-8 channels: fp32, contiguous on any CPU
    assert "unprobed default" in t.reason and "not probed" in t.reason and "~10 s" in t.reason
    assert small.spent_s == 0 and entries(cache.path) == {}  # nothing probed, nothing cached
    # 1,000 s of training pays for it: probed, cached, the spend counted
    large = ProbeBudget.for_sweep(1000.0)
    t = autotune.tune_variant(TINY, 8, "cpu", cache, probe_kw=KW, spend=large, share_s=1000.0, quiet=0.0)
    assert t.source == "probe" and set(t.measured) == {"fp32", "fp32+cl", "bf16", "bf16+cl"}
    assert large.spent_s > 0 and f"variants | {cache_key('cpu', TINY.key, 8)}" in entries(cache.path)
    # a warm run uses the cache whatever its budget
    warm = autotune.tune_variant(TINY, 8, "cpu", cache, probe_kw=KW, spend=ProbeBudget(0.0, 1.0), quiet=0.0)
    assert warm.source == "cache" and warm.cached and warm.measured == t.measured and warm.reason == t.reason


def test_the_part_a_bucket_decides_for_bounds_its_probe(tmp_path):
    cache = TuneCache(tmp_path / "tune.json")
    pool = ProbeBudget.for_sweep(1000.0)  # 50 s in all
    t = autotune.tune_variant(TINY, 8, "cpu", cache, probe_kw=KW, spend=pool, share_s=5.0)  # its part: 5 s
    assert t.source == "default" and "its classes' part ~5.0 s" in t.reason and pool.spent_s == 0


def test_a_noisy_cached_probe_is_measured_again_only_within_the_budget(tmp_path):
    cache = TuneCache(tmp_path / "tune.json")
    key = cache_key("cpu", TINY.key, 8)
    garbage = {"fp32": 1.0, "fp32+cl": 1.0, "bf16": 9.0, "bf16+cl": 1.0}
    cache.put("variants", key, {"measured": garbage, "rounds": {}, "spread": 0.05, "probes": 1, "probed": "test"})
    t = autotune.tune_variant(TINY, 8, "cpu", cache, probe_kw=KW, spend=ProbeBudget.for_sweep(5.0))
    assert t.source == "cache" and t.measured == garbage and t.amp  # kept as it is, and said so
    assert "noisy probe" in t.reason and "not probed again" in t.reason
    assert cache.get("variants", key)["probes"] == 1


def test_the_retry_of_a_noisy_probe_needs_budget():
    noisy = {"bf16": [30.0, 3.0, 9.0]}
    runs = iter([noisy, {"bf16": [900.0, 880.0, 890.0]}])
    e = autotune.quietest(lambda: next(runs), None, retry=lambda: False)
    assert e["probes"] == 1 and e["noisy"] and e["measured"] == {"bf16": 30.0}


def test_default_variants_follow_the_cpu_and_width():
    wide, narrow = ShapeClass.of((16, 32), 2), ShapeClass.of((8, 16), 2)
    assert autotune.default_variant(wide, "cpu", native_bf16=True)["variant"] == "bf16+cl"
    assert autotune.default_variant(narrow, "cpu", native_bf16=True)["variant"] == "fp32"
    d = autotune.default_variant(wide, "cpu", native_bf16=False)
    assert (d["variant"], d["amp"], d["channels_last"]) == ("fp32", False, False) and "without native bf16" in d["reason"]


def test_the_packing_takes_its_default_below_the_budget(tmp_path):
    cache = TuneCache(tmp_path / "tune.json")
    t = autotune.tune_variant(TINY, 8, "cpu", cache, spend=ProbeBudget(0.0, 10.0))
    t = autotune.tune_packing(t, TINY, cache, spend=ProbeBudget(0.0, 10.0))
    assert (t.workers, t.threads) == (usable_cores(), 1) and "not probed" in t.packing_reason
    assert entries(cache.path) == {}
    # the rate a compile decision divides by: the optimistic one, per worker thread
    assert autotune.worker_rate(t, TINY) == budget.RATE["cpu"] * 1


def test_classes_that_share_a_bucket_share_one_probe(tmp_path):
    classes = {shape_class_of_spec(s) for s, _ in SWEEP}
    buckets = {decision_bucket(c) for c in classes}
    assert len(classes) == 8 and sorted(b.key for b in buckets) == ["w16-32_c2", "w16_c2", "w8-16_c2", "w8_c2"]
    assert decision_bucket(ShapeClass.of((64, 128, 256, 512, 512), 4)) == ShapeClass((64, 128), 2)
    # the 8-model sweep, 1 epoch of the 5,000-image subset: ~3 s at optimistic rates -> no probe at all
    pol = SweepPolicies("auto", "auto", "auto", "auto", "cpu", 16, 1, 5000, tmp_path / "tune.json", lambda m: None)
    sweep_s, shares = pol.estimate(SWEEP)
    assert sweep_s < 10 and set(shares) == {b.key for b in buckets}
    assert sum(shares.values()) == pytest.approx(sweep_s, rel=0.01)
    pol.prepare(SWEEP)
    assert {t.source for t in pol._tunings.values()} == {"default"} and entries(tmp_path / "tune.json") == {}
    # the same models for 5,000 epochs: every bucket is probed once, each class's trial reads its bucket's probe
    two = [s for s in SWEEP if decision_bucket(shape_class_of_spec(s[0])).key == "w8-16_c2"]
    assert len(two) == 4
    pol = SweepPolicies("auto", "auto", "off", "auto", "cpu", 16, 5000, 5000, tmp_path / "tune.json", lambda m: None)
    pol.prepare(two)
    assert [t.source for t in pol._tunings.values()] == ["probe"]
    stored = [k for k in entries(tmp_path / "tune.json") if k.startswith("variants")]
    assert stored == [f"variants | {cache_key('cpu', 'w8-16_c2', 16)}"]
    recs = [pol.for_trial(s, f)[1]["tuning"] for s, f in two]
    assert {r["shape"] for r in recs} == {"w8-16_c2"} and len({r["class"] for r in recs}) == 4
