"""Generate and validate the whole default space, jailed and --unsafe-no-jail side by side in one run.

    python bench/bench_generate.py [--workers 2] [--mode meta] [--baseline /work/wtbase] [--only jail]

Goal: the full default space (>= 1,200 distinct architectures) in under 60 s on a 2-core machine, jail
included. Each run takes the real path of the CLI (render, static checks, jailed validation, manifest)
into a fresh folder; the unjailed run (same zygote code, no bwrap, no uid switch) shows what the jail
itself costs. --baseline DIR also times another checkout's bench (e.g. the former long-lived-worker
sandbox) in a subprocess in the same run. The load average is printed, since other jobs share the CPUs;
so is the CPU time of the whole process tree per model (driver, bwrap, zygotes, model processes), which
other jobs barely change: it is read from a cpuacct cgroup the bench joins (root, cgroup v1), else n/a.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ab.gpt.brute.fract.generation.generate import generate  # noqa: E402
from ab.gpt.brute.fract.space.registry import build_registry  # noqa: E402
from ab.gpt.brute.fract.space.space import Space  # noqa: E402


class TreeCPU:
    """CPU seconds used by this process and everything it starts, from a cgroup of its own (cpuacct,
    cgroup v1, needs root); `seconds()` is None where there is none. `close()` leaves and removes it."""

    ROOT = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self) -> None:
        self.group: Path | None = None
        try:
            mine = next(line.split(":", 2)[2].strip() for line in open("/proc/self/cgroup")
                        if "cpuacct" in line.split(":", 2)[1].split(","))
            self.home = self.ROOT / mine.lstrip("/")
            group = self.ROOT / f"bench_generate_{os.getpid()}"
            group.mkdir(exist_ok=True)
            (group / "cgroup.procs").write_text(str(os.getpid()))
            self.group = group
        except (OSError, StopIteration, IndexError):
            pass

    def seconds(self) -> float | None:
        return int((self.group / "cpuacct.usage").read_text()) / 1e9 if self.group else None

    def close(self) -> None:
        if self.group is not None:
            try:
                (self.home / "cgroup.procs").write_text(str(os.getpid()))
                self.group.rmdir()
            except OSError:
                pass


def one_run(workers: int, mode: str, unsafe: bool) -> tuple[float, Counter, int, int]:
    reg = build_registry(third_party=False)
    space = Space.default(reg)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        generate(iter(space), reg, out, limit=None, generator="enumerate", workers=workers, mode=mode,
                 unsafe_no_jail=unsafe)
        elapsed = time.perf_counter() - t0
        recs = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        n_files = len(list(out.glob("*.py")))
    status = Counter(r["status"] for r in recs)
    distinct = len({r["signature"] for r in recs if r["status"] == "valid"})
    return elapsed, status, distinct, n_files


def baseline(folder: str, workers: int, mode: str) -> float | None:
    """Time another checkout's bench_generate.py (its own printed time), run with this interpreter."""
    proc = subprocess.run([sys.executable, "bench/bench_generate.py", "--workers", str(workers), "--mode", mode],
                          cwd=folder, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": folder})
    m = re.search(r"time: ([\d.]+) s", proc.stdout)  # its first (jailed, if it has a jail) time
    if m is None:
        print(f"baseline {folder} failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
        return None
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mode", choices=["meta", "real"], default="meta")
    ap.add_argument("--baseline", help="another checkout whose bench/bench_generate.py to time as well")
    ap.add_argument("--only", choices=["jail", "unsafe"], help="run one variant only")
    args = ap.parse_args()
    variants = [v for v in ("jail", "unsafe") if args.only in (None, v)]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    times: dict[str, float] = {}
    cpu = TreeCPU()

    def cpu_line(label: str, used: float | None, n: int) -> None:
        print(f"CPU [{label}]: " + ("n/a (no cpuacct cgroup to join)" if used is None else
                                    f"{used:.1f} s, {used / n * 1000:.1f} ms per model (whole process tree)"))

    for v in variants:
        c0 = cpu.seconds()
        elapsed, status, distinct, n_files = one_run(args.workers, args.mode, unsafe=v == "unsafe")
        c1 = cpu.seconds()
        times[v] = elapsed
        print(f"[{v}] canonical specs: {status.total()}  valid: {status['valid']}  duplicates: "
              f"{status['duplicate']}  invalid: {status['invalid']}  files: {n_files}  distinct: {distinct}")
        print(f"time: {elapsed:.1f} s [{v}] with {args.workers} workers ({args.mode} validation, start-up included), "
              f"{status.total() / elapsed:.1f} architectures/s")
        cpu_line(v, None if c0 is None else c1 - c0, status.total())
        n_models = status.total()
        if v == "jail":
            met = distinct >= 1200 and elapsed < 60
            print(f"goal (>= 1200 distinct in < 60 s, jailed): {'met' if met else 'NOT met'}")
    if args.baseline:
        c0 = cpu.seconds()
        t = baseline(args.baseline, args.workers, args.mode)
        c1 = cpu.seconds()
        if t is not None:
            times["baseline"] = t
            print(f"time: {t:.1f} s [baseline {args.baseline}]")
            if variants:
                cpu_line("baseline, its whole bench", None if c0 is None else c1 - c0, n_models)
    cpu.close()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if "jail" in times:
        for k in ("unsafe", "baseline"):
            if k in times:
                print(f"ratio jail / {k}: {times['jail'] / times[k]:.2f}x")


if __name__ == "__main__":
    main()
