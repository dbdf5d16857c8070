"""Short measurements on the current device with trusted synthetic conv stacks (`synthetic.py`).

- `variant_throughput`: training images/s of one shape class per variant (dtype x memory format), measured
  side by side in interleaved rounds (median), so slow drift of a shared machine hits all variants alike.
- `packing_throughput`: total images/s of `workers` processes x `threads` torch threads running at once.
- `matmul_peak`: FLOP/s of a large matrix product in a dtype (the peak that model FLOP utilisation divides by).
- `compile_cost`: seconds torch.compile adds to the first training step, and the compiled step's speedup.
Nothing here decides; `autotune.py` turns the figures into decisions.
"""
from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from contextlib import nullcontext

import torch

from .synthetic import ShapeClass, build, forward_flops

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def variants(device: torch.device | str) -> list[str]:
    """Variants worth probing here: fp32 and the AMP dtypes the device runs, each contiguous and channels_last."""
    device = torch.device(device)
    dtypes = ["fp32", "bf16"]
    if device.type == "cuda":
        dtypes = ["fp32"] + (["bf16"] if torch.cuda.is_bf16_supported() else []) + ["fp16"]
    return [d + cl for d in dtypes for cl in ("", "+cl")]


def parse_variant(name: str) -> tuple[torch.dtype, bool]:
    dtype, _, cl = name.partition("+")
    return DTYPES[dtype], cl == "cl"


class _Stepper:
    """One synthetic model with its optimizer; `run(n)` does n training steps on a fixed batch."""

    def __init__(self, shape: ShapeClass, batch: int, variant: str, device: torch.device, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.dtype, cl = parse_variant(variant)
        self.device = device
        fmt = torch.channels_last if cl else torch.contiguous_format
        self.model = build(shape).to(device=device, memory_format=fmt)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
        self.y = torch.randint(10, (batch,), device=device)
        self.forward = self.model

    def run(self, n: int) -> None:
        amp = (torch.autocast(self.device.type, dtype=self.dtype) if self.dtype != torch.float32 else nullcontext())
        for _ in range(n):
            self.opt.zero_grad(set_to_none=True)
            with amp:
                out = self.forward(self.x)
            torch.nn.functional.cross_entropy(out.float(), self.y).backward()
            self.opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed(self, min_s: float, min_steps: int = 2) -> float:
        """Images/s over at least `min_steps` steps and `min_s` seconds."""
        steps, start = 0, time.perf_counter()
        while steps < min_steps or time.perf_counter() - start < min_s:
            self.run(1)
            steps += 1
        return steps * self.x.shape[0] / (time.perf_counter() - start)


def variant_throughput(shape: ShapeClass, batch: int, device: torch.device | str, names: list[str] | None = None,
                       rounds: int = 3, min_s: float = 0.25, threads: int | None = None) -> dict[str, float]:
    """{variant: median training images/s} for the shape class at this batch on this device."""
    device = torch.device(device)
    if threads:
        torch.set_num_threads(threads)
    steppers = {v: _Stepper(shape, batch, v, device) for v in (names or variants(device))}
    for s in steppers.values():
        s.run(2)  # warm-up: kernel selection, allocator
    runs: dict[str, list[float]] = {v: [] for v in steppers}
    for _ in range(rounds):
        for v, s in steppers.items():
            runs[v].append(s.timed(min_s))
    return {v: round(statistics.median(r), 2) for v, r in runs.items()}


def _packing_worker(shape_key: str, batch: int, variant: str, threads: int, seconds: float, barrier, queue) -> None:
    torch.set_num_threads(threads)
    s = _Stepper(ShapeClass.parse(shape_key), batch, variant, torch.device("cpu"))
    s.run(2)
    barrier.wait()
    queue.put(s.timed(seconds))


def packing_throughput(shape: ShapeClass, batch: int, variant: str, workers: int, threads: int,
                       seconds: float = 1.0) -> float:
    """Total training images/s of `workers` CPU processes with `threads` threads each, all running at once
    (fresh interpreters: started with spawn, measured together after a barrier)."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_packing_worker, args=(shape.key, batch, variant, threads, seconds, barrier, queue),
                         daemon=True) for _ in range(workers)]
    for p in procs:
        p.start()
    try:
        total = sum(queue.get(timeout=300) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return round(total, 2)


def packings(cores: int) -> list[tuple[int, int]]:
    """(workers, threads) that fill the cores: threads halving from all cores down to 1."""
    out, t = [], cores
    while t >= 1:
        out.append((cores // t, t))
        if t == 1:
            break
        t //= 2
    return out


def matmul_peak(dtype: torch.dtype, device: torch.device | str, n: int | None = None, min_s: float = 0.5) -> float:
    """FLOP/s of an n x n matrix product (2 n^3 FLOPs), the best of repeated timings."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    a @ b
    sync()
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < min_s:
        t = time.perf_counter()
        a @ b
        sync()
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def training_flops_per_image(shape: ShapeClass) -> int:
    """Training FLOPs of one image: forward + backward ~ 3 x forward."""
    return 3 * forward_flops(shape)


def compile_cost(shape: ShapeClass, batch: int, device: torch.device | str, variant: str = "fp32",
                 steps: int = 5) -> dict:
    """{"compile_s", "eager_step_s", "compiled_step_s", "speedup"}: torch.compile's one-off cost (first
    compiled step minus an eager step) and its steady-state gain, on a synthetic stack of the class."""
    device = torch.device(device)
    s = _Stepper(shape, batch, variant, device)
    s.run(2)
    t = time.perf_counter()
    s.run(steps)
    eager = (time.perf_counter() - t) / steps
    s.forward = torch.compile(s.model)
    t = time.perf_counter()
    s.run(1)
    first = time.perf_counter() - t
    t = time.perf_counter()
    s.run(steps)
    compiled = (time.perf_counter() - t) / steps
    return {"compile_s": round(max(first - eager, 0.0), 3), "eager_step_s": round(eager, 5),
            "compiled_step_s": round(compiled, 5), "speedup": round(eager / compiled, 3)}
