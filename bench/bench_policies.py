"""Per-machine policies, side by side in one run on this machine.

    .venv/bin/python bench/bench_policies.py [--convs 2] [--rounds 3] [--no-compile] [--no-packing]

A. Matrix-product peak here (fp32, bf16): the denominator of model FLOP utilisation (MFU).
B. Training images/s of synthetic conv stacks (conv3x3-bn-relu x convs per block, max-pool, batch 16) for the
   shape classes 16-32-64, 32-64-128 and 64-128-256: fp32, fp32 channels_last, bf16, bf16 channels_last,
   measured in interleaved rounds (best round); ratios to fp32, MFU of each against the peak of its dtype, and
   the autotuner's decision from these very figures (`tune.autotune.decide_variant`).
C. Gradient checkpointing on a small (N2 C2, 16-32) and a large (N3 C4, 64-128-256) generated model at
   batch 16: training step time and measured peak memory (meter.PeakMemory, each case in a fresh process,
   on and off alternating --repeats times, medians), beside the estimates (`tune.memory`) and the
   `--checkpointing auto` decision for this machine.
D. The autotuner end to end (fresh cache): decisions, packing (workers x threads, processes side by side)
   and the probe's own time; and torch.compile's cost and the `--compile auto` decision for a 5-epoch
   CIFAR-10-subset training of the smallest class.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLASSES = [(16, 32, 64), (32, 64, 128), (64, 128, 256)]
MODELS = {"small": dict(depth=2, columns=2, channels=(16, 32)),
          "large": dict(depth=3, columns=4, channels=(64, 128, 256))}


def child(path: str, amp: bool, ckpt: bool, steps: int) -> dict:
    """Fresh process: peak memory of one full step (all columns) above the level before, and step time."""
    import torch
    import torch.nn.functional as F

    from ab.gpt.brute.fract.util.meter import PeakMemory
    from ab.gpt.brute.fract.trial.model_file import import_isolated

    torch.manual_seed(0)
    net = import_isolated(path).Net((1, 3, 32, 32), (10,), {"lr": 0.01, "momentum": 0.9}, torch.device("cpu"))
    net.amp, net.grad_checkpoint = amp, ckpt
    net.train_setup({"lr": 0.01, "momentum": 0.9})
    x, y = torch.randn(16, 3, 32, 32), torch.randint(10, (16,))
    drop = net.global_drop, [b.local_drop for b in net.blocks]
    net.global_drop = 0.0
    for b in net.blocks:
        b.local_drop = 0.0
    F.cross_entropy(net(x[:1]), y[:1]).backward()
    for p in net.parameters():
        p.grad = None
    with PeakMemory("cpu", interval_s=0.001) as mem:
        base = mem.peak
        F.cross_entropy(net(x), y).backward()
    net.global_drop = drop[0]
    for b, d in zip(net.blocks, drop[1]):
        b.local_drop = d
    net.learn([(x, y)])  # warm-up of the model's own training loop
    t = time.perf_counter()
    net.learn([(x, y)] * steps)
    return {"peak_mb": (mem.peak - base) / 2**20, "step_s": (time.perf_counter() - t) / steps}


def run_child(path: Path, amp: bool, ckpt: bool, steps: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, __file__, "--child", str(path), str(int(amp)), str(int(ckpt)), str(steps)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    for row in [head] + rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--convs", type=int, default=2, help="convs per block of the synthetic stacks")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-s", type=float, default=0.3, help="seconds per variant and round")
    ap.add_argument("--steps", type=int, default=6, help="timed training steps per checkpointing case")
    ap.add_argument("--repeats", type=int, default=3, help="processes per checkpointing case (median)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-packing", action="store_true")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        path, amp, ckpt, steps = args.child
        print(json.dumps(child(path, amp == "1", ckpt == "1", int(steps))))
        return

    import torch

    from ab.gpt.brute.fract.fractal_template import render
    from ab.gpt.brute.fract.space.registry import build_registry
    from ab.gpt.brute.fract.space.spec import ArchSpec
    from ab.gpt.brute.fract.tune import autotune, compile as tcompile, memory, probe, rules
    from ab.gpt.brute.fract.tune.cache import TuneCache
    from ab.gpt.brute.fract.tune.device import device_model
    from ab.gpt.brute.fract.tune.synthetic import ShapeClass, forward_flops
    from ab.gpt.brute.fract.trial.model_file import import_isolated

    print(f"machine: {device_model('cpu')}; torch {torch.__version__}; {torch.get_num_threads()} threads")

    # A. matmul peak
    peaks = {n: probe.matmul_peak(probe.dtype_of(n), "cpu", n=1024, min_s=2.0) for n in ("fp32", "bf16")}
    print(f"\nA. matmul peak (1024x1024, best 0.1 s window of 2 s): fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s ({peaks['bf16'] / peaks['fp32']:.2f}x)")

    # B. variants per shape class
    print(f"\nB. training images/s, synthetic stacks, batch 16, {args.convs} convs per block "
          f"(best of {args.rounds} interleaved rounds; spread = worst median/best)")
    rows = []
    for widths in CLASSES:
        shape = ShapeClass.of(widths, args.convs)
        runs = probe.variant_rounds(shape, 16, "cpu", rounds=args.rounds, min_s=args.min_s)
        ips = {v: max(r) for v, r in runs.items()}
        per_image = 3 * forward_flops(shape)
        mfu = {v: ips[v] * per_image / peaks["bf16" if v.startswith("bf16") else "fp32"] for v in ips}
        d = autotune.decide_variant(ips)
        rows.append([shape.key] + [f"{ips[v]:.0f} ({ips[v] / ips['fp32']:.2f}x, {100 * mfu[v]:.0f}%)"
                                   for v in ("fp32", "fp32+cl", "bf16", "bf16+cl")] + [f"{probe.spread(runs):.2f}",
                                                                                       d["variant"]])
    table(["class", "fp32 (MFU)", "fp32+cl", "bf16", "bf16+cl", "spread", "decision"], rows)

    # C. checkpointing on generated models
    print("\nC. gradient checkpointing, generated models, batch 16, own learn() steps, fresh process per case")
    reg = build_registry(third_party=False)
    tmp = Path(tempfile.mkdtemp(prefix="bench_policies_"))
    rows = []
    for label, kw in MODELS.items():
        spec = ArchSpec(layers=("conv3x3", "bn", "relu"), **kw)
        path = tmp / f"{spec.name}.py"
        path.write_text(render(spec, reg))
        with torch.device("meta"):
            meta = import_isolated(path).Net((1, 3, 32, 32), (10,), {"lr": 0.01, "momentum": 0.9}, torch.device("meta"))
        amp = min(kw["channels"]) >= rules.CPU_AMP_MIN_CHANNELS
        dtype = torch.bfloat16 if amp else torch.float32
        dec = memory.checkpointing_decision(meta, 16, "cpu", dtype=dtype)
        runs = {False: [], True: []}
        for _ in range(args.repeats):  # alternate off / on, median of each
            for ck in (False, True):
                runs[ck].append(run_child(path, amp, ck, args.steps))
        res = {ck: {k: statistics.median(r[k] for r in runs[ck]) for k in ("peak_mb", "step_s")} for ck in runs}
        for ck in (False, True):
            est = memory.estimate_step(meta, 16, dtype=dtype, checkpointing=ck).activation_bytes / 2**20
            rows.append([f"{label} {spec.name[:28]}", "bf16" if amp else "fp32", "on" if ck else "off",
                         f"{res[ck]['step_s'] * 1000:.0f} ms", f"{res[ck]['peak_mb']:.0f} MB", f"{est:.0f} MB",
                         f"{res[False]['step_s'] / res[ck]['step_s']:.2f}x" if ck else "1.00x"])
        print(f"  {label}: auto -> {'on' if dec.on else 'off'} ({dec.reason})")
    table(["model", "amp", "ckpt", "step", "peak (measured)", "peak (estimate)", "speed vs off"], rows)

    # D. autotuner end to end, fresh cache
    print("\nD. autotuner (fresh cache)")
    cache = TuneCache(tmp / "tune.json")
    for widths in CLASSES:
        shape = ShapeClass.of(widths, args.convs)
        t = autotune.tune(shape, 16, "cpu", cache, packing=not args.no_packing)
        print(f"  {shape.key}: amp={t.amp} channels_last={t.channels_last}"
              + (f" workers x threads = {t.workers}x{t.threads}" if t.workers else "")
              + f"; probe {t.probe_s:.1f} s, spread {t.spread}\n    {t.reason}" + (f"\n    {t.packing_reason}" if t.packing_reason else ""))
        again = autotune.tune(shape, 16, "cpu", cache, packing=not args.no_packing)
        assert again.cached and again.reason == t.reason
    if not args.no_compile:
        shape = ShapeClass.of(CLASSES[0], args.convs)
        t = autotune.tune(shape, 16, "cpu", cache, packing=False)
        variant = ("bf16" if t.amp else "fp32") + ("+cl" if t.channels_last else "")
        cost, _ = tcompile.measured_cost(shape, 16, "cpu", variant, cache=cache)
        train_s = 5 * 5000 / t.measured[variant]
        on, why = tcompile.decide("auto", train_s, cost)
        print(f"  compile {shape.key} ({variant}): {cost}\n    --compile auto for 5 epochs of 5,000 images: "
              f"{'on' if on else 'off'} ({why})")


if __name__ == "__main__":
    main()
