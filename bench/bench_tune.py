"""What auto-tuning costs a user's first sweep: cold (empty tuning cache) vs warm, side by side in one run.

    .venv/bin/python bench/bench_tune.py [--repeats 3] [--plan-repeats 3] [--tuned] [--baseline /work/main]

A. The sweep: 8 narrow models (AlterNNFN --generator stratified over the narrow widths 8-16-32, 16-32 and
   16-32-64, depth and columns 1-3), one epoch of the CIFAR-10 subset, `python -m ab.gpt.NNEval` with its
   defaults (every policy auto), --no-register, whole process wall time. Runs alternate between cold (a new
   NN_GPT_FRACTAL_TUNE_CACHE file) and warm (a copy of the cache the latest cold run left) in the orders
   cold-warm, warm-cold, ...; per pair the ratio cold / warm, then the medians and spread. The goal: cold at
   most 1.15 x warm. With --tuned also a run on a cache where every decision bucket and the packing were
   probed beforehand without a budget (what a long sweep leaves): what the unprobed defaults cost against
   tuned decisions. With --baseline DIR also cold runs of another checkout (e.g. main, before the budget).
B. `NNEval --plan --epochs 1` on 2 tiny models (N1-2, C1-2, 8-16 channels) with an empty cache each time
   (goal: under 8 s), and with --baseline the other checkout's.
The machine is shared: every run prints the load average (uptime) it started at.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ab.gpt.brute.fract.generation.manifest import Manifest  # noqa: E402
from ab.gpt.brute.fract.tune.autotune import tune_packing, tune_variant  # noqa: E402
from ab.gpt.brute.fract.tune.cache import TuneCache  # noqa: E402
from ab.gpt.brute.fract.tune.synthetic import decision_bucket, dominant_shape, shape_class_of_spec  # noqa: E402

SUBSET = REPO.parent / "shared" / "data" / "cifar-10-subset" / "cifar-10-batches-py"  # the subset beside the checkout
NARROW = ["8,16,32", "16,32", "16,32,64"]


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def machine() -> str:
    name = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")), "unknown CPU")
    return f"{name}, {len(os.sched_getaffinity(0))} cores"


def run(args: list[str], cwd: Path, cache: Path | None, checkout: Path = REPO) -> tuple[float, str]:
    """(wall s, output) of `python -m <args>` in `cwd` with this checkout's sources (or another's)."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "HF_HUB_OFFLINE": "1"}
    env.pop("NN_GPT_FRACTAL_ROOT", None)
    if cache is not None:
        env["NN_GPT_FRACTAL_TUNE_CACHE"] = str(cache)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, proc.stdout + proc.stderr


def generate(root: Path, name: str, args: list[str]) -> Path:
    out = root / name
    run(["ab.gpt.brute.fract.AlterNNFN", *args, "--models", str(out), "-q"], root, None)
    return out


def probes(output: str) -> str:
    """How the run's decisions were made, from its `tune`/`workers auto` lines."""
    lines = [ln for ln in output.splitlines() if ln.startswith(("tune ", "workers auto"))]
    probed = sum("(probed in" in ln for ln in lines)
    cached = sum("cached" in ln for ln in lines)
    default = sum("unprobed default" in ln for ln in lines)
    return f"{probed} probed, {cached} cached, {default} default"


def spread(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.1f} s (min {min(xs):.1f}, max {max(xs):.1f}, n={len(xs)})"


def fill_tuned(models: Path, cache: Path) -> float:
    """Probe every decision bucket of the sweep and the packing without a budget, into `cache`; seconds."""
    recs = Manifest.load(models).valid()
    tc = TuneCache(cache)
    t = time.perf_counter()
    for b in sorted({decision_bucket(shape_class_of_spec(r["spec"])) for r in recs}):
        tune_variant(b, 16, "cpu", tc)
    dom = decision_bucket(dominant_shape([(r["spec"], r["flops"]) for r in recs]))
    tune_packing(tune_variant(dom, 16, "cpu", tc), dom, tc)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="cold/warm pairs of the sweep")
    ap.add_argument("--plan-repeats", type=int, default=3, help="--plan runs with an empty cache")
    ap.add_argument("--tuned", action="store_true", help="also sweep on a cache probed beforehand without a budget")
    ap.add_argument("--baseline", type=Path, help="another checkout whose cold sweep and --plan to time alongside")
    ap.add_argument("--data-dir", type=Path, default=SUBSET)
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    a = ap.parse_args()

    root = a.keep or Path(tempfile.mkdtemp(prefix="bench-tune-"))
    (root / "ab").mkdir(parents=True, exist_ok=True)  # an isolated LEMUR root
    (root / "README.md").write_text("bench_tune LEMUR root\n")
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {machine()}; load {load()}; {' '.join(sys.argv)}")
    models = generate(root, "models", ["--generator", "stratified", "--seed", "0", "--limit", "8", "--depth", "1-3",
                                       "--columns", "1-3"] + [x for c in NARROW for x in ("--channels", c)])
    tiny = generate(root, "tiny", ["--depth", "1-2", "--columns", "1-2", "--channels", "8,16", "--limit", "2"])
    sweep = ["ab.gpt.NNEval", "--models", str(models), "--data-dir", str(a.data_dir), "--epochs", "1", "--no-register",
             "-q"]
    walls: dict[str, list[float]] = {"cold": [], "warm": [], "tuned": [], "baseline cold": []}
    pairs: list[float] = []
    n = 0

    def sweep_run(label: str, cache: Path, checkout: Path = REPO) -> float:
        nonlocal n
        n += 1
        start_load = load()
        wall, out = run(sweep + ["--results", str(root / f"out{n}")], root, cache, checkout)
        walls[label].append(wall)
        print(f"  {label:13s} {wall:6.1f} s  (load {start_load}; {probes(out)})", flush=True)
        return wall

    if a.repeats or a.tuned:
        print(f"\nA. sweep: {len(list(models.glob('*.py')))} narrow models, 1 epoch of {a.data_dir}")
    latest: Path | None = None
    for i in range(a.repeats):
        fresh = root / f"cold{i}.json"
        if i % 2 == 0 or latest is None:
            cold = sweep_run("cold", fresh)
            latest = fresh
            warm_cache = root / f"warm{i}.json"
            if latest.exists():
                shutil.copy(latest, warm_cache)
            warm = sweep_run("warm", warm_cache)
        else:
            warm_cache = root / f"warm{i}.json"
            if latest.exists():
                shutil.copy(latest, warm_cache)
            warm = sweep_run("warm", warm_cache)
            cold = sweep_run("cold", fresh)
            latest = fresh
        pairs.append(cold / warm)
        if a.baseline:
            sweep_run("baseline cold", root / f"base{i}.json", a.baseline)
    if a.tuned:
        tuned_cache = root / "tuned.json"
        print(f"  (probing every bucket without a budget for the tuned cache: {fill_tuned(models, tuned_cache):.1f} s)")
        sweep_run("tuned", tuned_cache)
    for label, xs in walls.items():
        if xs:
            print(f"{label:13s} {spread(xs)}")
    if pairs:
        print(f"cold / warm per pair: {', '.join(f'{r:.2f}' for r in pairs)}; of the medians "
              f"{statistics.median(walls['cold']) / statistics.median(walls['warm']):.2f} (goal <= 1.15)")
    if walls["tuned"] and walls["cold"]:
        print(f"cold / tuned: {statistics.median(walls['cold']) / statistics.median(walls['tuned']):.2f}")
    if walls["baseline cold"] and walls["cold"]:
        print(f"baseline cold / cold: {statistics.median(walls['baseline cold']) / statistics.median(walls['cold']):.2f}")

    print(f"\nB. NNEval --plan --epochs 1 on {len(list(tiny.glob('*.py')))} tiny models, empty tuning cache")
    plan = ["ab.gpt.NNEval", "--plan", "--models", str(tiny), "--data-dir", str(a.data_dir), "--epochs", "1"]
    plan_walls: dict[str, list[float]] = {"plan": [], "baseline plan": []}
    for i in range(a.plan_repeats):
        for label, checkout in [("plan", REPO)] + ([("baseline plan", a.baseline)] if a.baseline else []):
            start_load = load()
            wall, out = run(plan + ["--results", str(root / f"plan-out{i}")], root, root / f"plan-{label}-{i}.json",
                            checkout)
            plan_walls[label].append(wall)
            print(f"  {label:13s} {wall:6.1f} s  (load {start_load}; {probes(out)})", flush=True)
    for label, xs in plan_walls.items():
        if xs:
            print(f"{label:13s} {spread(xs)}" + ("  (goal < 8 s)" if label == "plan" else ""))
    print(f"\nfinished {time.strftime('%H:%M:%S')}; load {load()}")
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
