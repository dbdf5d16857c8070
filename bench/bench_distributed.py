"""Makespan of one heterogeneous NNEval sweep on a local multi-node Ray cluster, side by side in one run.

    .venv/bin/python bench/bench_distributed.py [--epochs 1] [--train-limit N] [--keep DIR]

Needs root (each worker node runs in its own mount namespace, as in tests/distributed/). The sweep: 12
tiny FractalNets of different sizes (depth 1-2, columns 1-3, widths 8-16 and 16-32; generated once), 1 epoch
on the CIFAR-10 subset, one torch thread per trial, no DB. Two clusters run side by side (heads with 0
CPUs): one with 2 worker nodes of 1 CPU, one with 1 worker node of 1 CPU. Cases, each a fresh NNEval run:
  (a) 2 worker nodes, models longest first (manifest FLOPs)
  (b) 2 worker nodes, models in file order
  (c) 1 worker node, longest first
run in rounds (--repeats, the order rotating each round, so load from elsewhere hits all cases alike);
the median per case is reported. Makespan is NNEval's own sweep wall time (connect, put the data, hand
out, train, write; summary.json). Also printed: the sum of the trials' epoch times (the work) and work /
makespan (the parallelism achieved).
No GPU here: packing several trials per GPU (--gpus-per-trial 0.25) is not measured by this script.
"""
from __future__ import annotations

import argparse
import json
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

from tests.distributed.cluster import LocalCluster, node_env  # noqa: E402

SUBSET = REPO.parent / "shared" / "data" / "cifar-10-subset" / "cifar-10-batches-py"
GEN = ["--depth", "1-2", "--columns", "1-3", "--channels", "8,16", "--channels", "16,32", "--norm", "bn",
       "--act", "relu", "--order", "conv-norm-act", "--dropout", "0", "--join", "mean", "--conv", "conv3x3",
       "--workers", "1", "-q"]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**node_env(), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:1])} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def sweep(root: Path, cluster: LocalCluster, name: str, order: str, opts: argparse.Namespace) -> dict:
    out = root / "new_lemur" / name
    started = time.perf_counter()
    run(["ab.gpt.NNEval", "--executor", "ray", "--address", cluster.address, "--run-order", order, "--epochs",
         str(opts.epochs), "--threads", "1", "--no-register", "-q", "--data-dir", str(opts.data_dir), "--results", str(out),
         *(["--train-limit", str(opts.train_limit)] if opts.train_limit else [])], cwd=root)
    wall = time.perf_counter() - started
    summary = json.loads((out / "summary.json").read_text())
    runs = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    work = sum(e["epoch_time_s"] or 0 for r in runs for s in r["seeds"] for e in s["epochs"])
    trained = sum(r["status"] == "trained" for r in runs)
    return {"makespan": summary["last_run"]["wall_s"], "process": wall, "work": work, "trained": trained,
            "models": len(runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-limit", type=int, help="train on the first N images (default: the whole subset)")
    ap.add_argument("--data-dir", type=Path, default=SUBSET)
    ap.add_argument("--repeats", type=int, default=2, help="rounds of the three cases")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: each worker node runs in its own mount namespace (unshare -m)")
    base = opts.keep or Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    root = base / "lemur"
    (root / "ab").mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text("bench LEMUR root\n")
    for d in ("new_lemur", "db"):
        (root / d).mkdir(exist_ok=True)
    models = root / "out" / "fractal"
    if not list(models.glob("*.py")):
        run(["ab.gpt.brute.fract.AlterNNFN", *GEN, "--models", str(models)], cwd=root)
    manifest = [json.loads(ln) for ln in (models / "manifest.jsonl").read_text().splitlines() if ln.strip()]
    flops = sorted((r.get("flops") or 0 for r in manifest if r.get("status", "valid") == "valid"), reverse=True)
    print(f"{len(flops)} models, MFLOPs per image from {flops[-1] / 1e6:.1f} to {flops[0] / 1e6:.1f}; "
          f"{opts.epochs} epoch(s) on {opts.train_limit or 'all'} training images of {opts.data_dir}", flush=True)
    hide = [root / "out", root / "new_lemur", root / "db", opts.data_dir]
    runs: dict[str, list[dict]] = {}
    try:
        with LocalCluster(base / "two", hide) as two, LocalCluster(base / "one", hide, port=two.port + 8000) as one:
            two.start(workers=2)
            one.start(workers=1)
            cases = [("2 nodes, longest first", two, "longest"), ("2 nodes, file order", two, "file"),
                     ("1 node, longest first", one, "longest")]
            for r in range(opts.repeats):
                for k in range(len(cases)):
                    case, cluster, order = cases[(k + r) % len(cases)]
                    res = sweep(root, cluster, f"r{r}-{order}-{len(cluster.nodes) - 1}", order, opts)
                    runs.setdefault(case, []).append(res)
                    print(f"round {r + 1}: {case}: {res['makespan']:.1f} s", flush=True)
    finally:
        if opts.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    results = {case: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for case, rs in runs.items()}
    ref = results["1 node, longest first"]["makespan"]
    print(f"\nmedians of {opts.repeats} round(s)\n{'case':<26}{'makespan s':>11}{'speed-up':>10}{'work s':>9}{'work/makespan':>15}{'trained':>9}")
    for case, r in results.items():
        print(f"{case:<26}{r['makespan']:>11.1f}{ref / r['makespan']:>9.2f}x{r['work']:>9.1f}"
              f"{r['work'] / r['makespan']:>15.2f}{r['trained']:>6.0f}/{r['models']:.0f}")
    two_l, two_f = results["2 nodes, longest first"]["makespan"], results["2 nodes, file order"]["makespan"]
    print(f"\nsecond node: {ref / two_l:.2f}x (goal >= 1.7x); longest first vs file order on 2 nodes: "
          f"{two_f / two_l:.2f}x")


if __name__ == "__main__":
    main()
