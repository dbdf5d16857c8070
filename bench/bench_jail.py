"""What the jail costs, measured side by side in one run (see trial/).

    python bench/bench_jail.py [--models 40] [--fresh 5] [--train-limit 2048] [--repeats 3] [--space]

1. start-up per model: a fork of the warm zygote (what every model gets) vs a fresh bwrap + python + torch
   import (what one jail start costs), each running the same tiny validation;
2. validation throughput: the same rendered models validated jailed vs --unsafe-no-jail (same zygote code,
   no bwrap, no uid switch); with --space, the full default space generated and validated jailed (the path
   of bench_generate.py; goal < 60 s);
3. training images/s (measured around learn() in the model process) of one model with the jail (per-trial
   cgroups and the seccomp filter on), the jail with both off, and --unsafe-no-jail, alternating, median of
   --repeats each (goals: jail >= 0.97x of no jail; cgroup+seccomp >= 0.97x of the jail without them).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ab.gpt.brute.fract.trial import data  # noqa: E402
from ab.gpt.brute.fract.fractal_template import render  # noqa: E402
from ab.gpt.brute.fract.space.registry import build_registry  # noqa: E402
from ab.gpt.brute.fract.space.space import Space  # noqa: E402
from ab.gpt.brute.fract.trial import JailConfig, Trial, TrialLimits  # noqa: E402
from ab.gpt.brute.fract.trial.executors import LocalExecutor  # noqa: E402
from ab.gpt.brute.fract.trial.jail import model_uid  # noqa: E402
from ab.gpt.brute.fract.trial.protocol import config_hash  # noqa: E402
from ab.gpt.brute.fract.trial.session import Jail  # noqa: E402
from ab.gpt.brute.fract.generation import handlers, warm  # noqa: E402

SUBSET = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar-10-subset" / "cifar-10-batches-py"


def startup(fresh: int, forks: int) -> None:
    limits = TrialLimits()
    trial = Trial("validate", warm.WARM_MODEL, {"mode": "meta"}, 120, handler=handlers.VALIDATE)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for k in range(fresh):
            jail = Jail(JailConfig(scratch=Path(tmp) / f"j{k}", uid=model_uid(0)).serving(trial.handler))
            assert jail.run(trial, limits).ok
            jail.close()
        per_fresh = (time.perf_counter() - t0) / fresh
        jail = Jail(JailConfig(scratch=Path(tmp) / "warm", uid=model_uid(0)).serving(trial.handler))
        jail.run(trial, limits)
        t0 = time.perf_counter()
        for _ in range(forks):
            assert jail.run(trial, limits).ok
        per_fork = (time.perf_counter() - t0) / forks
        jail.close()
    print(f"start-up per model: zygote fork {1000 * per_fork:.0f} ms vs fresh bwrap+python {1000 * per_fresh:.0f} ms "
          f"({per_fresh / per_fork:.0f}x) [{forks} forks, {fresh} fresh jails, tiny model validated in each]")


def validation(n: int) -> None:
    reg = build_registry(third_party=False)
    space = list(Space.default(reg))
    codes = [render(s, reg) for s in space[::max(1, len(space) // n)][:n]]
    rates = {}
    job = lambda c: Trial("validate", c, {"mode": "meta"}, 120, handler=handlers.VALIDATE)  # noqa: E731
    for unsafe in (False, True, False, True):
        with LocalExecutor(2, TrialLimits(), unsafe_no_jail=unsafe, warm=handlers.WARM) as ex:
            for f in [ex.submit(job(c)) for c in codes[:2]]:
                f.result()
            t0 = time.perf_counter()
            futs = [ex.submit(job(c)) for c in codes]
            assert all(f.result().ok for f in futs)
            rates.setdefault(unsafe, []).append(len(codes) / (time.perf_counter() - t0))
    jail, bare = max(rates[False]), max(rates[True])
    print(f"validation, {len(codes)} default-space models, 2 workers: jail {jail:.1f}/s vs unsafe-no-jail "
          f"{bare:.1f}/s ({jail / bare:.2f}x; best of 2 each; full space of {len(space)} at this rate: "
          f"{len(space) / jail:.0f} s)")


def space_run() -> None:
    from ab.gpt.brute.fract.generation.generate import generate

    reg = build_registry(third_party=False)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = generate(iter(Space.default(reg)), reg, Path(tmp), limit=None, generator="enumerate", workers=2)
        el = time.perf_counter() - t0
    print(f"full default space generated and validated in jails: {len(out.accepted)} valid in {el:.1f} s "
          f"(goal < 60 s: {'met' if el < 60 else 'NOT met'})")


def training(train_limit: int, repeats: int) -> None:
    prepared = data.prepare(data.locate(SUBSET if SUBSET.is_dir() else None),
                            Path(tempfile.gettempdir()) / "bench-jail-cache").to_dict()
    reg = build_registry(third_party=False)
    spec = next(s for s in Space.default(reg) if s.depth == 2 and s.columns == 2)
    code = render(spec, reg)
    conf = {"epochs": 1, "batch": 16, "lr": 0.01, "momentum": 0.9, "dropout": 0.0, "transform": "norm_flip",
            "seed": 0, "amp": "auto", "checkpointing": True, "channels_last": False, "device": "cpu", "threads": 2,
            "train_limit": train_limit, "test_limit": 256, "eval_batch": 256,
            "norm": [list(v) for v in data.lemur_norm()]}
    conf["config_hash"] = config_hash(conf)
    jail_data = {k: prepared[k] for k in ("train_x", "train_y", "test_x")}
    kinds = {"hardened": {}, "plain": {"harden": False}, "bare": {"unsafe_no_jail": True, "harden": False}}
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    exs = {k: LocalExecutor(1, TrialLimits(), data=jail_data, threads=2, **kw) for k, kw in kinds.items()}
    try:
        for _ in range(repeats):
            for kind, ex in exs.items():
                res = ex.submit(Trial("train", code, conf, 3600, labels=prepared["test_y"])).result()
                assert res.status == "trained", res
                assert (res.budget.get("cgroup") is not None) == (kind == "hardened"), res.budget
                rates[kind].append(res.epochs[0]["images_per_s"])
    finally:
        for ex in exs.values():
            ex.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"training {spec.name}, {train_limit} images, 2 threads (median of {repeats} alternating runs each): "
          f"jail with cgroup+seccomp {med['hardened']:.0f} img/s, jail without {med['plain']:.0f} img/s, "
          f"unsafe-no-jail {med['bare']:.0f} img/s")
    print("  every run, img/s: " + "; ".join(f"{k} {', '.join(f'{r:.1f}' for r in v)}" for k, v in rates.items()))
    print(f"  cgroup+seccomp cost: {med['hardened'] / med['plain']:.3f}x (goal >= 0.97x); whole jail: "
          f"{med['hardened'] / med['bare']:.3f}x of no jail (goal >= 0.97x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fresh", type=int, default=5)
    ap.add_argument("--forks", type=int, default=40)
    ap.add_argument("--models", type=int, default=60)
    ap.add_argument("--train-limit", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--space", action="store_true", help="also generate and validate the full default space")
    ap.add_argument("--training-only", action="store_true", help="only the training comparison (3.)")
    args = ap.parse_args()
    if args.training_only:
        training(args.train_limit, args.repeats)
        return
    startup(args.fresh, args.forks)
    validation(args.models)
    if args.space:
        space_run()
    training(args.train_limit, args.repeats)


if __name__ == "__main__":
    main()
