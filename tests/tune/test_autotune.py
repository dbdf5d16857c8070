"""Autotuning: decisions follow the measured figures; the cache is keyed per machine and reused."""
import json

import pytest
import torch

from ab.gpt.brute.fract.tune import autotune, compile as tcompile, probe
from ab.gpt.brute.fract.tune.budget import ProbeBudget
from ab.gpt.brute.fract.tune.cache import CacheError, TuneCache
from ab.gpt.brute.fract.tune.device import cache_key, device_model, usable_cores
from ab.gpt.brute.fract.tune.synthetic import ShapeClass, build, forward_flops, round_width, shape_class_of_spec

TINY = ShapeClass.of((4, 8), 1)


def test_variant_decision_follows_figures():
    # bf16 clearly faster: chosen, contiguous since channels_last gains less than the margin
    d = autotune.decide_variant({"fp32": 100, "fp32+cl": 90, "bf16": 300, "bf16+cl": 310})
    assert (d["variant"], d["amp"], d["amp_dtype"], d["channels_last"]) == ("bf16", True, "bfloat16", False)
    assert "3.00x fp32" in d["reason"] and "bf16+cl" in d["reason"]
    # channels_last clearly faster
    assert autotune.decide_variant({"fp32": 100, "fp32+cl": 90, "bf16": 200, "bf16+cl": 260})["variant"] == "bf16+cl"
    # narrow layers where bf16 loses: fp32 stays
    d = autotune.decide_variant({"fp32": 100, "fp32+cl": 102, "bf16": 83, "bf16+cl": 80})
    assert (d["variant"], d["amp"], d["amp_dtype"]) == ("fp32", False, None)
    # CUDA: fp16 only when it beats bf16 by more than the margin
    assert autotune.decide_variant({"fp32": 100, "bf16": 400, "fp16": 410})["variant"] == "bf16"
    assert autotune.decide_variant({"fp32": 100, "bf16": 400, "fp16": 480})["amp_dtype"] == "float16"
    with pytest.raises(ValueError, match="no measured"):
        autotune.decide_variant({})


def test_packing_decision_follows_figures():
    d = autotune.decide_packing({"1x2": 300, "2x1": 420})
    assert (d["workers"], d["threads"]) == (2, 1) and "420" in d["reason"]
    assert autotune.decide_packing({"1x2": 300, "2x1": 310})["workers"] == 1  # within the margin: fewer workers
    d = autotune.decide_packing({"1x16": 100, "2x8": 180, "4x4": 300, "8x2": 310, "16x1": 290})
    assert (d["workers"], d["threads"]) == (4, 4)


def test_compile_decision_follows_figures():
    cost = {"compile_s": 30.0, "speedup": 2.0}
    assert tcompile.decide("auto", 3000, cost)[0] is True
    assert tcompile.decide("auto", 200, cost) == (False, tcompile.decide("auto", 200, cost)[1])
    assert "10 x compile" in tcompile.decide("auto", 200, cost)[1]
    assert tcompile.decide("auto", 3000, {"compile_s": 30.0, "speedup": 1.01})[0] is False
    # long enough but the saving does not repay the compile time
    assert tcompile.decide("auto", 400, {"compile_s": 30.0, "speedup": 1.06})[0] is False
    assert tcompile.decide("on", None, None) == (True, "--compile on")
    assert tcompile.decide("off", 1e9, cost)[0] is False
    assert tcompile.decide("auto", None, cost)[0] is False
    with pytest.raises(ValueError, match="--compile"):
        tcompile.decide("maybe", 1, cost)


def test_shape_classes():
    assert [round_width(c) for c in (1, 3, 5, 6, 16, 20, 24, 48, 100)] == [1, 4, 4, 8, 16, 16, 32, 64, 128]
    s = ShapeClass.of((16, 32, 64), 8)
    assert s.key == "w16-32-64_c4" and ShapeClass.parse(s.key) == s
    assert shape_class_of_spec({"depth": 2, "columns": 3, "channels": [20, 48]}) == ShapeClass((16, 64), 4)
    assert shape_class_of_spec({"kind": "plain", "depth": 2, "columns": 1, "channels": [8, 8],
                                "plain_layers": 4}) == ShapeClass((8, 8), 2)
    with pytest.raises(ValueError, match="w16-32-64_c2"):
        ShapeClass.parse("16-32")
    # the analytic FLOPs agree with torch's counter on the synthetic stack
    from torch.utils.flop_counter import FlopCounterMode

    model = build(s).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    assert fc.get_total_flops() == forward_flops(s)


def test_cache_keying_reuse_and_reproducibility(tmp_path):
    cache = TuneCache(tmp_path / "tune.json")
    kw = {"rounds": 2, "min_s": 0.02}
    # quiet=0: every probe counts as quiet, so a busy test machine does not make the second call probe again
    first = autotune.tune(TINY, 8, "cpu", cache, packing=False, probe_kw=kw, quiet=0.0)
    assert not first.cached and set(first.measured) == set(probe.variants("cpu"))
    assert all(v > 0 for v in first.measured.values())
    second = autotune.tune(TINY, 8, "cpu", cache, packing=False, probe_kw=kw, quiet=0.0)
    assert second.cached and second.measured == first.measured
    assert (second.amp, second.channels_last, second.reason) == (first.amp, first.channels_last, first.reason)
    # another batch or shape class is another key: probed again, stored beside the first
    other = autotune.tune(ShapeClass.of((8, 8), 1), 8, "cpu", cache, packing=False, probe_kw=kw, quiet=0.0)
    assert not other.cached
    data = json.loads((tmp_path / "tune.json").read_text())
    keys = sorted(data["entries"])
    assert len(keys) == 2 and all(device_model("cpu") in k and torch.__version__ in k for k in keys)
    assert f"variants | {cache_key('cpu', TINY.key, 8)}" in keys
    stored = data["entries"][f"variants | {cache_key('cpu', TINY.key, 8)}"]
    assert stored["measured"] == {v: max(r) for v, r in stored["rounds"].items()} == first.measured
    assert stored["spread"] == first.spread == probe.spread(stored["rounds"])
    # figures edited in the cache decide: the decision is a function of the stored figures
    entry = data["entries"][f"variants | {cache_key('cpu', TINY.key, 8)}"]
    entry["measured"] = {"fp32": 10.0, "fp32+cl": 10.0, "bf16": 50.0, "bf16+cl": 10.0}
    (tmp_path / "tune.json").write_text(json.dumps(data))
    t = autotune.tune(TINY, 8, "cpu", cache, packing=False, quiet=0.0)
    assert t.cached and t.amp and not t.channels_last and t.trial_config() == {"amp": True, "channels_last": False}
    rec = t.as_record()["tuning"]
    assert rec["shape"] == TINY.key and rec["measured"]["bf16"] == 50.0 and rec["reason"].startswith("bf16")


def test_a_noisy_probe_is_retried_and_the_quietest_kept():
    def script(*rounds):
        it = iter(rounds)
        return lambda: next(it)

    noisy, quiet = {"bf16": [30.0, 3.0, 9.0], "fp32": [20.0, 18.0, 19.0]}, {"bf16": [900.0, 880.0, 890.0]}
    # a noisy first probe is retried at once; the quiet retry wins
    e = autotune.quietest(script(noisy, quiet), None)
    assert (e["measured"], e["spreads"], e["probes"], e["noisy"]) == ({"bf16": 900.0}, [0.3, 0.989], 2, False)
    # a quiet first probe is not retried
    assert autotune.quietest(script(quiet), None)["probes"] == 1
    # two noisy probes: the quieter one is kept, still marked noisy
    worse = {"bf16": [30.0, 2.0, 3.0]}
    e = autotune.quietest(script(worse, noisy), None)
    assert (e["measured"]["bf16"], e["spread"], e["noisy"], e["probes"]) == (30.0, 0.3, True, 2)
    # a later run's probe replaces the cached one only when quieter; the count goes on from the cached one
    e2 = autotune.quietest(script(worse, worse), e)
    assert (e2["measured"], e2["spreads"], e2["probes"], e2["noisy"]) == (e["measured"], [0.1, 0.3, 0.1, 0.1], 4, True)


def test_noisy_cache_entries_are_probed_again_up_to_a_limit(tmp_path):
    cache = TuneCache(tmp_path / "tune.json")
    key = cache_key("cpu", TINY.key, 8)
    garbage = {"fp32": 1.0, "fp32+cl": 1.0, "bf16": 9.0, "bf16+cl": 1.0}  # as a probe under heavy load left it
    cache.put("variants", key, {"measured": garbage, "rounds": {}, "spread": 0.05, "probed": "test"})
    t = autotune.tune(TINY, 8, "cpu", cache, packing=False, probe_kw={"rounds": 3, "min_s": 0.02})
    stored = cache.get("variants", key)
    assert not t.cached and stored["probes"] >= 2 and stored["spreads"][0] == 0.05
    assert stored["spread"] == max(stored["spreads"]) and stored["noisy"] == (stored["spread"] < autotune.QUIET)
    assert stored["measured"] != garbage and t.measured == stored["measured"]  # any real probe is quieter
    assert ("noisy probe" in t.reason) == stored["noisy"]
    # after MAX_PROBES the entry is used as it is, even if noisy, and the reason says so
    cache.put("variants", key, {"measured": garbage, "rounds": {}, "spread": 0.05, "probes": autotune.MAX_PROBES,
                                "spreads": [0.05] * autotune.MAX_PROBES, "noisy": True, "probed": "test"})
    t = autotune.tune(TINY, 8, "cpu", cache, packing=False)
    assert t.cached and t.measured == garbage and t.amp
    assert "noisy probe (spread 0.05 after 3 probe(s)" in t.reason and "next run" not in t.reason


def test_broken_cache_is_a_clear_error(tmp_path):
    (tmp_path / "tune.json").write_text("{not json")
    with pytest.raises(CacheError, match="delete it"):
        TuneCache(tmp_path / "tune.json").load()


def test_packing_probe_runs_processes_side_by_side(tmp_path):
    assert probe.packings(2) == [(1, 2), (2, 1)]
    assert probe.packings(16) == [(1, 16), (2, 8), (4, 4), (8, 2), (16, 1)]
    cache = TuneCache(tmp_path / "tune.json")
    entry = {"measured": {"fp32": 100.0, "fp32+cl": 90.0, "bf16": 80.0, "bf16+cl": 70.0}}
    cache.put("variants", cache_key("cpu", TINY.key, 8), entry)
    t = autotune.tune(TINY, 8, "cpu", cache)
    cores = usable_cores()
    assert set(t.packing) == {f"{w}x{tt}" for w, tt in probe.packings(cores)}
    assert all(v > 0 for v in t.packing.values()) and t.workers * t.threads == cores
    # cached: with no probing budget left the stored figures are used as they are (even a noisy probe's,
    # which an unlimited budget would measure again: on a busy machine, as under pytest-xdist, it may be)
    assert autotune.tune(TINY, 8, "cpu", cache, spend=ProbeBudget(0.0)).packing == t.packing
    rate = autotune.worker_rate(t, TINY)
    assert rate == pytest.approx(t.packing[f"{t.workers}x{t.threads}"] / t.workers * 3 * forward_flops(TINY))


def test_spread_is_the_noisiest_variant():
    assert probe.spread({"a": [10, 10, 10], "b": [5, 10, 10]}) == 1.0
    assert probe.spread({"a": [10, 10, 10], "b": [2, 5, 10]}) == 0.5


def test_matmul_peak_and_variant_names():
    assert probe.variants("cpu") == ["fp32", "fp32+cl", "bf16", "bf16+cl"]
    assert probe.parse_variant("bf16+cl") == (torch.bfloat16, True)
    assert probe.matmul_peak(torch.float32, "cpu", n=128, min_s=0.05, window_s=0.01) > 1e6
