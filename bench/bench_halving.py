"""Successive halving vs the full budget, side by side in one run on this machine.

    .venv/bin/python bench/bench_halving.py [--models 48] [--epochs 3] [--eta 3] [--rungs 1] [--min-keep 1]
        [--train-limit N] [--test-limit N] [--channels 16,32,64] [--depth 1-3] [--columns 1-3] [--keep DIR]

Generates a stratified sample of a narrow space with the real generator (AlterNNFN --generator stratified),
then trains it twice with the real NNEval (jailed, on the CIFAR-10 subset, --no-register): once with
`--schedule full`, once with `--schedule halving`. Prints the full run's top 5 (accuracy after the last
epoch), halving's top 5 (`halving.ranking`: models that got further first, then by accuracy at their last
rung), their overlap, and halving's share of the full run's compute: epochs, FLOP-weighted epochs
(the manifest's FLOPs per image) and wall time, and `NNEval --plan`'s wall estimates (its calibration on this
machine) against both measured runs: the full schedule, and the halving schedule (`--plan --schedule halving`:
expected [cheapest to most expensive models go on], and the plan's figure for the models that did).
The goal: >= 4 of the top 5 at <= 40% of the compute.

Small run to check it works: --models 4 --epochs 2 --eta 2 --train-limit 256 --test-limit 128 --top 2
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ab.gpt.brute.fract.generation.manifest import Manifest  # noqa: E402
from ab.gpt.brute.fract.sweep.results import load_runs  # noqa: E402
from ab.gpt.brute.fract.sweep.halving import Rungs, parse_budgets, ranking, step, sweep_rungs, trial_from_run
from ab.gpt.brute.fract.sweep.plan import Plan, list_schedule  # noqa: E402
from ab.gpt.brute.fract.sweep.plan_halving import HalvingPlan  # noqa: E402

SUBSET = REPO.parent / "shared" / "data" / "cifar-10-subset" / "cifar-10-batches-py"  # the subset beside the checkout


def run(module: str, args: list[str], cwd: Path) -> float:
    """Run a CLI of this package in `cwd` (the LEMUR root); returns its wall time in seconds."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    env.pop("NN_GPT_FRACTAL_ROOT", None)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{module} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t


def records(out: Path) -> dict[str, dict]:
    return {r["name"]: r for r in load_runs(out)}


def epochs_of(rec: dict) -> int:
    return sum(len(s["epochs"]) for s in rec["seeds"])


def replay(names: list[str], full: dict, rungs: Rungs, top_full: list[str], top: int, flops: dict):
    """(overlap, epoch share, FLOP share) of a halving schedule decided on the full run's own curves."""
    sched = step(names, full, rungs)
    reached = {m: k for k, members in enumerate(sched.members) for m in members}
    spent = {n: min(rungs.budgets[reached[n]], full[n].epochs) for n in names}
    whole = {n: full[n].epochs for n in names}
    overlap = len(set(top_full) & set(ranking(names, full, rungs)[:top]))
    e_share = sum(spent.values()) / sum(whole.values())
    f_share = (sum(spent[n] * flops[n] for n in names) / sum(whole[n] * flops[n] for n in names)
               if all(flops.get(n) for n in names) else None)
    return overlap, e_share, f_share


def wall_of_members(plan: Plan, rungs: Rungs, members: list[list[str]]) -> float | None:
    """The plan's wall time for the rungs' actual members (known after the run): each rung's trials list-scheduled
    in the sweep's order, rungs one after another; None without time estimates."""
    rows = {r.name: r for r in plan.rows}
    if any(rows[m].epoch_s is None for ms in members for m in ms):
        return None
    wall, prev = 0.0, 0
    for budget, ms in zip(rungs.budgets, members):
        chosen = set(ms)
        wall += list_schedule([r.epoch_s * (budget - prev) + plan.overhead_s * plan.seeds for r in plan.rows
                               if r.name in chosen], plan.workers)
        prev = budget
    return wall


def halving_plan_line(hp: HalvingPlan, measured_s: float, members: list[list[str]] | None = None) -> str:
    """`--plan --schedule halving`'s wall estimate (expected [cheapest to most expensive go on]) against the
    measured halving run, and (given the rungs' actual members) the plan's figure for the models that went on."""
    w = hp.wall_s
    if w is None:
        return "NNEval --plan has no time estimate of the halving run (no calibration)"
    line = (f"NNEval --plan --schedule halving's estimate: {w.expected:.0f} s [{w.low:.0f} to {w.high:.0f} s] with "
            f"{hp.full.workers} worker(s); measured {measured_s:.0f} s; estimate / measured "
            f"{w.expected / measured_s:.2f} [{w.low / measured_s:.2f} to {w.high / measured_s:.2f}]")
    actual = wall_of_members(hp.full, hp.rungs, members) if members else None
    if actual is not None:
        line += f"; for the models that actually went on {actual:.0f} s ({actual / measured_s:.2f})"
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=48, help="models in the stratified sample")
    ap.add_argument("--epochs", type=int, default=3, help="the full budget")
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--rungs", help="halving budgets below --epochs, e.g. 1 or 1,2 [NNEval's default]")
    ap.add_argument("--min-keep", type=int, default=1)
    ap.add_argument("--top", type=int, default=5, help="compare the top this many")
    ap.add_argument("--channels", default="16,32,64", help="AlterNNFN --channels (the narrow space)")
    ap.add_argument("--depth", default="1-3")
    ap.add_argument("--columns", default="1-3")
    ap.add_argument("--gen-arg", action="append", default=[], metavar="ARG",
                    help="more AlterNNFN arguments, e.g. --gen-arg=--conv=conv3x3 (repeatable)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--train-limit", type=int)
    ap.add_argument("--test-limit", type=int)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", default="auto", help="NNEval --workers (both runs) [auto]")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("NN_GPT_FRACTAL_CIFAR", SUBSET)))
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    a = ap.parse_args()
    rungs = sweep_rungs(a.epochs, a.eta, parse_budgets(a.rungs) if a.rungs else None, a.min_keep)

    root = a.keep or Path(tempfile.mkdtemp(prefix="bench-halving-"))
    (root / "ab").mkdir(parents=True, exist_ok=True)  # an isolated LEMUR root
    (root / "README.md").write_text("bench_halving LEMUR root\n")
    models = root / "models"
    gen_s = run("ab.gpt.brute.fract.AlterNNFN", ["--generator", "stratified", "--seed", str(a.seed), "--limit",
                                                 str(a.models), "--channels", a.channels, "--depth", a.depth,
                                                 "--columns", a.columns, *a.gen_arg, "--models", str(models), "-q"], root)
    flops = {r["name"]: r.get("flops") for r in Manifest.load(models).valid()}
    print(f"{len(flops)} models generated in {gen_s:.0f} s ({a.channels}, depth {a.depth}, columns {a.columns}); "
          f"{a.epochs} epochs, train-limit {a.train_limit or 'all'}, test-limit {a.test_limit or 'all'}; "
          f"halving rungs {','.join(map(str, rungs.budgets))}, eta {rungs.eta}, min-keep {rungs.min_keep}")

    common = ["--models", str(models), "--epochs", str(a.epochs), "--batch", str(a.batch), "--data-dir",
              str(a.data_dir), "--workers", str(a.workers), "--no-register", "-q"]
    common += ["--train-limit", str(a.train_limit)] if a.train_limit else []
    common += ["--test-limit", str(a.test_limit)] if a.test_limit else []
    halving_args = ["--schedule", "halving", "--eta", str(rungs.eta), "--min-keep", str(rungs.min_keep)]
    if len(rungs.budgets) > 1:
        halving_args += ["--rungs", ",".join(map(str, rungs.budgets[:-1]))]
    from ab.gpt.brute.fract.sweep.plan import plan_sweep
    from ab.gpt.brute.fract.sweep.plan_halving import estimate

    workers = a.workers if a.workers == "auto" else int(a.workers)
    plan = plan_sweep(models, root / "full", epochs=a.epochs, batch=a.batch, train_limit=a.train_limit,
                      test_limit=a.test_limit, data_dir=str(a.data_dir), workers=workers, echo=lambda m: None)
    halving_plan = estimate(plan, rungs)  # NNEval --plan --schedule halving's figures
    wall = {"full": run("ab.gpt.NNEval", common + ["--results", str(root / "full")], root),
            "halving": run("ab.gpt.NNEval", common + halving_args + ["--results", str(root / "halving")], root)}

    full, halv = records(root / "full"), records(root / "halving")
    names = sorted(full)
    full_trials = {n: trial_from_run(r) for n, r in full.items()}
    halv_trials = {n: trial_from_run(r) for n, r in halv.items()}

    def final(n: str) -> float:
        acc = full_trials[n].accuracy_at(a.epochs)
        return -1.0 if acc is None or full_trials[n].failed else acc

    top_full = sorted(names, key=lambda n: (-final(n), n))[:a.top]
    top_halv = ranking(names, halv_trials, rungs)[:a.top]
    overlap = len(set(top_full) & set(top_halv))
    print(f"\nfull run's top {a.top} (accuracy after epoch {a.epochs}):")
    for n in top_full:
        print(f"  {final(n):.4f}  {n}{'' if n in top_halv else '   (missed by halving)'}")
    print(f"halving's top {a.top} (halving.ranking; epochs trained, accuracy at the last one):")
    for n in top_halv:
        t = halv_trials[n]
        acc = t.accuracy_at(t.epochs) if t.epochs else None
        print(f"  {t.epochs} ep  {'-' if acc is None else f'{acc:.4f}'}  {n}"
              f"{'' if n in top_full else '   (not in the full top)'}")
    spent, budget = sum(epochs_of(r) for r in halv.values()), sum(epochs_of(r) for r in full.values())
    share = {"epochs": spent / budget}
    if all(flops.get(n) for n in names):
        share["FLOP-weighted epochs"] = (sum(epochs_of(halv[n]) * flops[n] for n in names)
                                         / sum(epochs_of(full[n]) * flops[n] for n in names))
    share["wall time"] = wall["halving"] / wall["full"]
    print(f"\noverlap: {overlap} of the top {a.top}")
    print(f"compute of halving vs full: {spent} of {budget} epochs; "
          + "; ".join(f"{k} {100 * v:.1f}%" for k, v in share.items())
          + f" ({wall['halving']:.0f} s vs {wall['full']:.0f} s)")
    same = all(halv_trials[n].accuracies == full_trials[n].accuracies[:halv_trials[n].epochs] for n in names)
    print(f"NNEval --plan's estimate of the full run: {plan.wall_s:.0f} s with {plan.workers} worker(s); measured "
          f"{wall['full']:.0f} s; estimate / measured {plan.wall_s / wall['full']:.2f} (goal within 25%)")
    print(halving_plan_line(halving_plan, wall["halving"], step(names, halv_trials, rungs).members))
    print(f"halving's accuracies equal the full run's at the same epochs (deterministic per seed): {same}")
    goal = overlap >= min(4, a.top) and share.get("FLOP-weighted epochs", share["epochs"]) <= 0.40
    print(f"goal (>= {min(4, a.top)} of the top {a.top} at <= 40% of the compute): {'met' if goal else 'NOT met'}")
    print("\nother schedules, replayed exactly from the full run's curves (halving trains the same numbers):")
    print("  rungs    eta  min-keep  overlap  epochs  FLOP-weighted")
    for budgets, eta in [(b, e) for b in ((1, a.epochs), (1, 2, a.epochs)) if len(set(b)) == len(b) and b[-2] < a.epochs
                         for e in (2, 3, 4, 6, 8, 12, 16)]:
        r = Rungs(budgets, eta, a.min_keep)
        o, e_share, f_share = replay(names, full_trials, r, top_full, a.top, flops)
        print(f"  {','.join(map(str, budgets)):7s} {eta:4d}  {a.min_keep:8d}  {o:7d}  {100 * e_share:5.1f}%  "
              + ("-" if f_share is None else f"{100 * f_share:12.1f}%"))
    if not a.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
