"""Generate and validate the whole default space; print architectures per second and the total.

    python bench/bench_generate.py [--workers 2] [--mode meta]

Goal: the full default space (>= 1,200 distinct architectures) in under 60 s on a 2-core machine.
Runs the real CLI path (render, static checks, jailed validation, manifest) into a fresh folder.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ab.gpt.brute.fract.generate import generate  # noqa: E402
from ab.gpt.brute.fract.space.registry import build_registry  # noqa: E402
from ab.gpt.brute.fract.space.space import Space  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mode", choices=["meta", "real"], default="meta")
    args = ap.parse_args()
    reg = build_registry(third_party=False)
    space = Space.default(reg)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        outcome = generate(iter(space), reg, out, limit=None, generator="enumerate", workers=args.workers,
                           mode=args.mode)
        elapsed = time.perf_counter() - t0
        recs = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        n_files = len(list(out.glob("*.py")))
    status = Counter(r["status"] for r in recs)
    distinct = len({r["signature"] for r in recs if r["status"] == "valid"})
    print(f"space: {space.raw_size} raw points, {status.total()} canonical specs")
    print(f"valid: {status['valid']}  duplicates: {status['duplicate']}  invalid: {status['invalid']}  "
          f"files written: {n_files}  distinct signatures: {distinct}")
    print(f"time: {elapsed:.1f} s with {args.workers} workers ({args.mode} validation, jail start included)")
    print(f"rate: {status.total() / elapsed:.1f} architectures/s generated and validated")
    print(f"goal (>= 1200 distinct in < 60 s): {'met' if distinct >= 1200 and elapsed < 60 else 'NOT met'}")


if __name__ == "__main__":
    main()
