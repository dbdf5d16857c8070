"""The sweep plan: FLOP totals, run order, wall-time scheduling, and `NNEval --plan` on generated models."""
import re

import pytest

from ab.gpt.brute.fract.util.atomic import write_json
from ab.gpt.brute.fract.generation.manifest import Manifest
from ab.gpt.brute.fract.sweep.results import runs_dir
from ab.gpt.brute.fract.sweep.halving import make_rungs
from ab.gpt.brute.fract.sweep.halving_sweep import schedule_record
from ab.gpt.brute.fract.sweep import plan as P
from ab.gpt.brute.fract.tune.synthetic import ShapeClass
from tests.eval.evalkit import generate, make_root, run_cli


def entries():
    spec = lambda ch, c: {"depth": len(ch), "columns": c, "channels": list(ch), "global_drop": 0.0}  # noqa: E731
    return [P.Entry("b", 2_000_000, 10, spec((16, 32), 2)), P.Entry("a", 5_000_000, 20, spec((32, 64), 3)),
            P.Entry("c", 2_000_000, 10, spec((16, 32), 2)), P.Entry("d", None)]


def test_totals_are_manifest_flops_times_factor():
    es = entries()
    p = P.make_plan(es, epochs=3, seeds=2, train_images=5000, test_images=1000)
    fl = sum(e.flops for e in es if e.flops)
    assert p.total_train_flops == fl * 3 * 5000 * 3 * 2
    assert p.total_flops == fl * (3 * 5000 + 1000) * 3 * 2
    assert [r.name for r in p.rows] == ["a", "b", "c", "d"]  # longest first, ties by name, unknown last
    assert p.unknown == ["a", "b", "c", "d"]  # no calibration: FLOPs only
    assert p.compute_s == 0


def test_time_estimate_and_wall_over_workers():
    rates = {"w16-32_c2": 1e9, "w32-64_c4": 2e9}
    p = P.make_plan(entries(), epochs=1, train_images=1000, test_images=0, rate=lambda e: rates[e.group],
                    workers=2, overhead_s=1.0)
    est = {r.name: r.est_s for r in p.rows}
    assert est["a"] == pytest.approx(3 * 5e6 * 1000 / 2e9 + 1) and est["b"] == pytest.approx(3 * 2e6 * 1000 / 1e9 + 1)
    assert est["d"] is None and p.unknown == ["d"]
    assert p.compute_s == pytest.approx(est["a"] + est["b"] + est["c"])
    # longest first on 2 workers: a (8.5 s) on one, b then c (7 s each) on the other
    assert p.wall_s == pytest.approx(est["b"] + est["c"])
    assert P.make_plan(entries(), 1, rate=lambda e: rates[e.group], workers=1).wall_s == pytest.approx(
        P.make_plan(entries(), 1, rate=lambda e: rates[e.group], workers=1).compute_s)
    ck = P.make_plan(entries(), 1, train_images=1000, test_images=0, rate=lambda e: rates[e.group], checkpointing=True)
    assert {r.name: r.est_s for r in ck.rows}["a"] == pytest.approx(4 * 5e6 * 1000 / 2e9)
    lines = []
    P.render(p, echo=lines.append)
    text = "\n".join(lines)
    assert "w32-64_c4" in text and "total:" in text and "2 worker(s)" in text
    with pytest.raises(ValueError, match="epochs"):
        P.make_plan(entries(), epochs=0)


def test_calibration_groups_split_a_shape_class_by_conv_layers():
    from ab.gpt.brute.fract.sweep.calibrate import representatives

    spec = lambda *layers: {"depth": 2, "columns": 2, "channels": [16, 32], "layers": list(layers)}  # noqa: E731
    es = [P.Entry("k3", 2_000_000, 1, spec("conv3x3", "bn", "relu")),
          P.Entry("k3b", 3_000_000, 1, spec("conv3x3", "inorm", "gelu")),
          P.Entry("k3c", 4_000_000, 1, spec("bn", "relu", "conv3x3")),
          P.Entry("k5", 5_000_000, 1, spec("conv5x5", "bn", "relu")),
          P.Entry("old", 1_000_000, 1, {"depth": 2, "columns": 2, "channels": [16, 32]})]
    assert [e.group for e in es] == ["w16-32_c2/conv3x3"] * 3 + ["w16-32_c2/conv5x5", "w16-32_c2"]
    reps = representatives(es)
    assert {g: e.name for g, e in reps.items()} == {"w16-32_c2/conv3x3": "k3b", "w16-32_c2/conv5x5": "k5",
                                                    "w16-32_c2": "old"}  # the median-FLOPs member
    rates = {"w16-32_c2/conv3x3": 1e9, "w16-32_c2/conv5x5": 4e9, "w16-32_c2": 2e9}
    p = P.make_plan(es, 1, train_images=1000, test_images=0, rate=lambda e: rates[e.group])
    est = {r.name: r.est_s for r in p.rows}
    assert est["k5"] == pytest.approx(3 * 5e6 * 1000 * P.drop_path_factor(es[3].spec) / 4e9)
    assert est["k3"] == pytest.approx(3 * 2e6 * 1000 * P.drop_path_factor(es[0].spec) / 1e9)
    assert p.rates == rates


def test_drop_path_factor():
    assert P.drop_path_factor({"columns": 3, "global_drop": 0.5}) == pytest.approx(0.5 + 0.5 / 3)
    assert P.drop_path_factor({"columns": 1, "global_drop": 0.5}) == 1.0
    assert P.drop_path_factor({"kind": "plain", "columns": 1, "global_drop": 0.5}) == 1.0
    assert P.drop_path_factor(None) == 1.0
    spec = {"depth": 1, "columns": 4, "channels": [16], "global_drop": 0.5}
    p = P.make_plan([P.Entry("x", 10**6, 1, spec)], 1, train_images=100, test_images=0, rate=lambda e: 1e9)
    assert p.rows[0].est_s == pytest.approx(3e8 * (0.5 + 0.125) / 1e9)
    assert p.total_train_flops == 3e8  # the FLOP totals stay 3 x forward x images


def test_entries_from_a_real_manifest(tmp_path):
    m = Manifest.load(tmp_path)
    m.add({"name": "x", "spec": {"depth": 1, "columns": 1, "channels": [8]}, "spec_hash": "h1", "status": "valid",
           "flops": 123, "params": 7})
    m.add({"name": "y", "spec": {}, "spec_hash": "h2", "status": "invalid", "reason": "bad"})
    es = P.entries_from_manifest(tmp_path)
    assert es == [P.Entry("x", 123, 7, {"depth": 1, "columns": 1, "channels": [8]})]
    assert es[0].shape == ShapeClass((8,), 1)
    assert P.entries_from_manifest(tmp_path, ["y", "x"])[0] == P.Entry("y", None)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """(LEMUR root, models folder, names, tuning cache): three tiny generated models; the plan CLI tests share the
    cache."""
    tmp = tmp_path_factory.mktemp("plan")
    root = make_root(tmp / "root")
    out = root / "out" / "fractal"
    names = generate(root, out, "--depth", "1-2", "--columns", "1-2", "--limit", "3")
    return root, out, names, tmp / "tune.json"


@pytest.mark.slow
def test_nneval_plan_on_generated_models(generated, tmp_path, cifar_dir):
    root, out, names, cache = generated
    flops = {r["name"]: r["flops"] for r in Manifest.load(out).valid()}
    proc = run_cli("ab.gpt.NNEval", "--plan", "--models", str(out), "--data-dir", str(cifar_dir), "--epochs", "2",
                   "--train-limit", "300", "--test-limit", "100", "--tune-cache", str(cache), "--threads", "1",
                   cwd=root, env={"COLUMNS": "200"})
    n_train = min(300, P.count_images(cifar_dir)[0])
    total = sum(flops.values()) * (3 * n_train + 100) * 2
    assert f"total: {P._si(total, 'FLOP')}" in proc.stdout
    order = sorted(names, key=lambda n: (-flops[n], n))
    pos = [proc.stdout.find(n[:40]) for n in order]
    assert all(p >= 0 for p in pos) and pos == sorted(pos)
    # a sweep this small does not pay for probing: the calibration ran with the defaults and cached nothing
    assert "unprobed default" in proc.stderr and "not probed" in proc.stderr and not cache.exists()
    assert not (root / "new_lemur").exists() and not (root / "db").exists()  # nothing trained or written
    bad = run_cli("ab.gpt.NNEval", "--plan", "--models", str(tmp_path / "none"), cwd=root, check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no models folder" in bad.stderr


RUNG = re.compile(r"^rung (\d+): budget (\d+) epoch\(s\), (\d+) model\(s\) x (\d+) epoch\(s\): (.*)$", re.M)


@pytest.mark.slow
def test_nneval_plan_halving_on_generated_models(generated, tmp_path, cifar_dir):
    root, out, names, cache = generated
    flops = {r["name"]: r["flops"] for r in Manifest.load(out).valid()}
    results = tmp_path / "results"  # holds another model's halving record: the plan says it estimates a fresh run
    record = {"name": "Other", "status": "trained", "schedule": schedule_record(make_rungs(4, 2), "running")}
    write_json(runs_dir(results) / "Other.json", record)
    proc = run_cli("ab.gpt.NNEval", "--plan", "--schedule", "halving", "--eta", "2", "--min-keep", "2",
                   "--results", str(results), "--models", str(out), "--data-dir", str(cifar_dir), "--epochs", "4",
                   "--train-limit", "300", "--test-limit", "100", "--threads", "1", "--workers", "1",
                   "--tune-cache", str(cache), cwd=root, env={"COLUMNS": "200"})
    # make_rungs(4, eta 2) = 1, 2, 4; 3 models -> keep(3) = max(2, 3 // 2) = 2 -> 2
    lines = list(RUNG.finditer(proc.stdout))
    assert [tuple(int(g) for g in m.groups()[:4]) for m in lines] == [(0, 1, 3, 1), (1, 2, 2, 1), (2, 4, 2, 2)]
    # FLOPs per epoch of a model: forward x (3 x training + test images); rung 0 all 3 models x 1 epoch,
    # rung 2 the 2 cheapest (low) or 2 most expensive (high) x 2 epochs, expected 2 x the mean
    per_epoch = sorted(f * (3 * min(300, P.count_images(cifar_dir)[0]) + 100) for f in flops.values())
    si = lambda x: P._si(x, "FLOP")  # noqa: E731
    assert lines[0].group(5).startswith(f"{si(sum(per_epoch))}, compute ")
    assert lines[2].group(5).startswith(f"{si(2 * 2 * sum(per_epoch) / 3)} [{si(2 * sum(per_epoch[:2]))} to "
                                        f"{si(2 * sum(per_epoch[1:]))}], compute ")
    assert "halving plan (rungs 1,2,4, eta 2, min-keep 2" in proc.stdout
    assert "halving total: 9 of 12 epochs (75.0%)" in proc.stdout
    # the calibration gave times: every rung has compute and wall figures, the totals a share of the full ones
    assert all("compute -" not in m.group(5) for m in RUNG.finditer(proc.stdout))
    total = next(line for line in proc.stdout.splitlines() if line.startswith("halving total:"))
    assert re.search(r"compute \S+ \[\S+ to \S+\] of \S+ \(\d+\.\d% \[", total), total
    order = sorted(names, key=lambda n: (-flops[n], n))  # the table: the full plan, in the sweep's order
    pos = [proc.stdout.find(n[:40]) for n in order]
    assert all(p >= 0 for p in pos) and pos == sorted(pos)
    assert f"1 model(s) in {results} have halving records" in proc.stderr
    assert [p.name for p in results.rglob("*")] == ["runs", "Other.json"] and not (root / "db").exists()
