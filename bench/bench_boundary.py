"""Benchmark of the trainability-boundary engine, all figures from one run.

1. networks x steps per second: batched engine vs a plain loop over networks one at a time
   (per-network autograd + torch.optim.SGD, the way one would write it; a small subset is timed
   and extrapolated per network-step).
2. achieved GFLOP/s of the engine (FLOPs of its matmuls only) vs this machine's measured matmul
   peak in the same dtype (a large square torch.matmul, timed in this run).

    /tmp/venvtrial/bin/python bench/bench_boundary.py [--dtype float32] [--steps 100] [--device cpu]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ab.gpt.brute.fract.boundary import engine, problem  # noqa: E402


def _sync(dev):
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def best_time(fn, repeats, dev):
    best = float("inf")
    for _ in range(repeats):
        _sync(dev)
        t = time.perf_counter()
        fn()
        _sync(dev)
        best = min(best, time.perf_counter() - t)
    return best


def matmul_peak(dtype, dev, n=2048, reps=10):
    a = torch.randn(n, n, dtype=dtype, device=dev)
    b = torch.randn(n, n, dtype=dtype, device=dev)
    c = torch.empty(n, n, dtype=dtype, device=dev)
    torch.matmul(a, b, out=c)

    def run():
        for _ in range(reps):
            torch.matmul(a, b, out=c)

    return 2.0 * n ** 3 * reps / best_time(run, 3, dev) / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--nets", type=int, default=1024, help="networks per batched timing")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--chunks", default="64,256,1024", help="chunk sizes tried for the batched engine")
    ap.add_argument("--loop-nets", type=int, default=4, help="networks timed in the plain loop")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dt, dev, w, S = getattr(torch, a.dtype), a.device, a.width, a.steps
    n = w * w + w  # data ratio 1
    pb = problem.make_problem(n, w, seed=0)
    print(f"setup: depth 2, width {w}, tanh, {n} samples (full batch), {S} steps, {a.dtype}, device {dev}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, load avg {os.getloadavg()[0]:.2f}")

    peak = matmul_peak(dt, dev)
    print(f"matmul peak ({a.dtype}, 2048^3 torch.matmul): {peak:.1f} GFLOP/s")

    # lrs that all train (no network is dropped as diverged), so every network runs every step
    flops_step = engine.matmul_flops_per_step(w, n)
    spec = engine.Spec(steps=S, dtype=dt, device=dev)
    results = {}
    for chunk in [int(c) for c in a.chunks.split(",")]:
        B = chunk * max(1, a.nets // chunk)
        lr = np.geomspace(0.1, 10.0, B)
        engine.train(pb, lr[:chunk], lr[:chunk], 0, 0, engine.Spec(steps=5, dtype=dt, device=dev), chunk=chunk)
        t = best_time(lambda: engine.train(pb, lr, lr, 0, 0, spec, chunk=chunk), 2, dev)
        results[chunk] = (B * S / t, B * S * flops_step / t / 1e9)
        print(f"  batched engine, chunk {chunk:5d}: {results[chunk][0]:12.0f} net-steps/s  {results[chunk][1]:7.1f} GFLOP/s")
    best_chunk = max(results, key=lambda c: results[c][0])
    rate, gflops = results[best_chunk]

    # plain loop: one network at a time with autograd, same dtype (subset, extrapolated per net-step)
    k, S_loop = a.loop_nets, min(S, 100)
    X, y = pb.X, pb.y
    engine.reference_train(X, y, pb.W1, pb.W2, 1.0, 1.0, 5, dtype=dt)

    # each network timed on its own, best of 3, so a moment of preemption does not count
    loop_t = sum(best_time(lambda: engine.reference_train(X, y, pb.W1, pb.W2, 0.5 + i, 0.5 + i, S_loop, dtype=dt), 3, "cpu")
                 for i in range(k))
    loop_rate = k * S_loop / loop_t
    # same hand-written engine, one network per call (no batching): isolates the batching gain
    one = k * S_loop / best_time(lambda: [engine.train(pb, [0.5 + i], [0.5 + i], 0, 0,
                                                       engine.Spec(steps=S_loop, dtype=dt, device=dev))
                                          for i in range(k)], 2, dev)
    print(f"  plain loop (autograd + SGD, 1 net at a time; {k} nets x {S_loop} steps timed, extrapolated): "
          f"{loop_rate:.0f} net-steps/s")
    print(f"  hand-written engine with 1 net per call ({k} nets timed): {one:.0f} net-steps/s")

    # a realistic map row: half the lrs diverge and are dropped early
    lr = np.geomspace(1.0, 1e5, a.nets)
    t = best_time(lambda: engine.train(pb, lr, lr, 0, 0, spec, chunk=best_chunk), 1, dev)
    print(f"  map-like grid (lr 1..1e5, diverged nets dropped): {a.nets * S / t:.0f} pixel-steps/s")

    speedup = rate / loop_rate
    frac = gflops / peak
    print()
    print(f"RESULT speedup batched/plain loop: {speedup:.0f}x  (goal >= 100x: {'met' if speedup >= 100 else 'NOT met'})")
    print(f"RESULT engine {gflops:.1f} GFLOP/s of {peak:.1f} peak = {100 * frac:.0f}%  "
          f"(goal >= 50%: {'met' if frac >= 0.5 else 'NOT met'}); best chunk {best_chunk}")
    print(f"RESULT networks x steps per second: batched {rate:.0f}, plain loop {loop_rate:.0f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f} (other processes on this machine distort all figures)")


if __name__ == "__main__":
    main()
