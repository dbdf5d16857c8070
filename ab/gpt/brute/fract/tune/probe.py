"""Short measurements on the current device with trusted synthetic conv stacks (`synthetic.py`).

- `variant_throughput`: training images/s of one shape class per variant (dtype x memory format), measured
  side by side in interleaved rounds, best round kept: other load on a shared machine only slows a window.
- `packing_rounds`: total images/s of `workers` processes x `threads` torch threads running at once, for
  several packings in interleaved rounds.
- `matmul_peak`: FLOP/s of a large matrix product in a dtype (the peak that model FLOP utilisation divides by).
- `compile_cost`: seconds torch.compile adds to the first training step, and the compiled step's speedup.
Nothing here decides; `autotune.py` turns the figures into decisions.
"""
from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from contextlib import nullcontext

from .device import cuda_bf16, device_type
from .synthetic import ShapeClass, build, forward_flops

# torch is imported where a probe runs, not here: a driver whose decisions are all cached never needs it
AMP_DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16"}
DTYPE_NAMES = {"fp32": "float32", **AMP_DTYPE_NAMES}


def dtype_of(name: str):
    """The torch dtype of a variant's dtype name (fp32, bf16, fp16)."""
    import torch

    return getattr(torch, DTYPE_NAMES[name])


def variants(device) -> list[str]:
    """Variants worth probing here: fp32 and the AMP dtype a model uses on the device (bf16; on a GPU
    without bf16, fp16 with a gradient scaler), each contiguous and channels_last."""
    dtypes = ["fp32", "bf16"]
    if device_type(device) == "cuda":
        dtypes = ["fp32", "bf16" if cuda_bf16() else "fp16"]
    return [d + cl for d in dtypes for cl in ("", "+cl")]


def split_variant(name: str) -> tuple[str, bool]:
    """(dtype name, channels_last) of a variant name such as bf16+cl (without torch)."""
    dtype, _, cl = name.partition("+")
    return dtype, cl == "cl"


def parse_variant(name: str) -> tuple:
    """(torch dtype, channels_last) of a variant name such as bf16+cl."""
    dtype, cl = split_variant(name)
    return dtype_of(dtype), cl


class _Stepper:
    """One synthetic model with its optimizer; `run(n)` does n training steps on a fixed batch."""

    def __init__(self, shape: ShapeClass, batch: int, variant: str, device, seed: int = 0) -> None:
        import torch

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
        import torch

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


def variant_throughput(shape: ShapeClass, batch: int, device, names: list[str] | None = None,
                       rounds: int = 5, min_s: float = 0.2, threads: int | None = None) -> dict[str, float]:
    """{variant: training images/s} for the shape class at this batch on this device: the best of `rounds`
    interleaved windows (on a shared machine other load only ever slows a window down)."""
    return {v: max(r) for v, r in variant_rounds(shape, batch, device, names, rounds, min_s, threads).items()}


def variant_rounds(shape: ShapeClass, batch: int, device, names: list[str] | None = None,
                   rounds: int = 5, min_s: float = 0.2, threads: int | None = None) -> dict[str, list[float]]:
    """{variant: images/s of each round}; every round times each variant once, in turn."""
    import torch

    device = torch.device(device)
    if threads:
        torch.set_num_threads(threads)
    steppers = {v: _Stepper(shape, batch, v, device) for v in (names or variants(device))}
    for s in steppers.values():
        s.run(2)  # warm-up: kernel selection, allocator
    runs: dict[str, list[float]] = {v: [] for v in steppers}
    for _ in range(rounds):
        for v, s in steppers.items():
            runs[v].append(round(s.timed(min_s), 2))
    return runs


def spread(runs: dict[str, list[float]]) -> float:
    """The worst ratio of a variant's median round to its best: near 1 on a quiet machine."""
    return round(min(statistics.median(r) / max(r) for r in runs.values() if r and max(r) > 0), 3)


def _packing_worker(shape_key: str, batch: int, variant: str, threads: int, seconds: float, go, done) -> None:
    import torch

    torch.set_num_threads(threads)
    s = _Stepper(ShapeClass.parse(shape_key), batch, variant, torch.device("cpu"))
    s.run(2)
    done.put(None)  # ready
    while go.get() is not None:  # one timed window per token, None: stop
        done.put(s.timed(seconds))


def packing_rounds(shape: ShapeClass, batch: int, variant: str, packs: list[tuple[int, int]], rounds: int = 3,
                   seconds: float = 0.5) -> dict[str, list[float]]:
    """{"<workers>x<threads>": total images/s of each round}: each packing's processes (fresh interpreters,
    started with spawn, idle between windows) run a window at once, packings in turn, `rounds` times."""
    ctx = mp.get_context("spawn")
    pools = {}
    try:
        for w, t in packs:
            go, done = ctx.Queue(), ctx.Queue()
            procs = [ctx.Process(target=_packing_worker, args=(shape.key, batch, variant, t, seconds, go, done),
                                 daemon=True) for _ in range(w)]
            for p in procs:
                p.start()
            pools[f"{w}x{t}"] = (procs, go, done)
        for procs, _, done in pools.values():
            for _ in procs:
                done.get(timeout=600)
        runs: dict[str, list[float]] = {k: [] for k in pools}
        for _ in range(rounds):
            for k, (procs, go, done) in pools.items():
                for _ in procs:
                    go.put(True)
                runs[k].append(round(sum(done.get(timeout=600) for _ in procs), 2))
        return runs
    finally:
        for procs, go, _ in pools.values():
            for _ in procs:
                go.put(None)
            for p in procs:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()


def packing_throughput(shape: ShapeClass, batch: int, variant: str, workers: int, threads: int,
                       seconds: float = 0.5, rounds: int = 3) -> float:
    """Best total training images/s of `workers` CPU processes x `threads` threads running at once."""
    return max(packing_rounds(shape, batch, variant, [(workers, threads)], rounds, seconds)[f"{workers}x{threads}"])


def packings(cores: int) -> list[tuple[int, int]]:
    """(workers, threads) that fill the cores: threads halving from all cores down to 1."""
    out, t = [], cores
    while t >= 1:
        out.append((cores // t, t))
        if t == 1:
            break
        t //= 2
    return out


def matmul_peak(dtype, device, n: int | None = None, min_s: float = 1.0,
                window_s: float = 0.1) -> float:
    """FLOP/s of n x n matrix products (2 n^3 FLOPs each): the best window of at least `window_s` seconds
    of back-to-back products within `min_s` (single timings are too short to trust)."""
    import torch

    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    c = a @ b
    sync()
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < min_s:
        k, t = 0, time.perf_counter()
        while True:
            c = a @ b
            k += 1
            sync()
            if time.perf_counter() - t >= window_s:
                break
        best = max(best, 2 * n**3 * k / (time.perf_counter() - t))
    del c
    return best


def training_flops_per_image(shape: ShapeClass) -> int:
    """Training FLOPs of one image: forward + backward ~ 3 x forward."""
    return 3 * forward_flops(shape)


def compile_cost(shape: ShapeClass, batch: int, device, variant: str = "fp32",
                 rounds: int = 5, min_s: float = 0.2) -> dict:
    """{"compile_s", "eager_step_s", "compiled_step_s", "speedup"}: torch.compile's one-off cost (the first
    compiled step minus an eager step) and its steady-state gain on a synthetic stack of the class, eager
    and compiled steps timed in interleaved windows (best of `rounds`)."""
    import torch

    device = torch.device(device)
    s = _Stepper(shape, batch, variant, device)
    s.run(2)
    eager = s.model
    compiled = torch.compile(eager)
    s.forward = compiled
    t = time.perf_counter()
    s.run(1)
    first = time.perf_counter() - t
    s.run(1)
    best = {"eager": 0.0, "compiled": 0.0}
    for _ in range(rounds):
        for name, fwd in (("eager", eager), ("compiled", compiled)):
            s.forward = fwd
            best[name] = max(best[name], s.timed(min_s))
    step = {k: batch / v for k, v in best.items()}
    return {"compile_s": round(max(first - step["eager"], 0.0), 3), "eager_step_s": round(step["eager"], 5),
            "compiled_step_s": round(step["compiled"], 5), "speedup": round(step["eager"] / step["compiled"], 3)}
