"""`--trials-per-gpu auto`: how many trials share one GPU, from a short probe cached per GPU model.

Narrow models leave most of a GPU idle; several trials on one GPU (separate processes, each with its own
CUDA context) fill it. The probe runs `CANDIDATES` (1, 2, 4, 8) processes at once on one GPU, each training
a trusted synthetic stack of the sweep's dominant shape class (`synthetic.py`) in the variant the tuner chose,
in interleaved windows (best window kept, as the CPU probes do), and records each process's peak memory.
The rule (`decide`, a pure function of the figures): of the counts whose processes fit in
`MEMORY_SHARE` of the GPU's memory (peak + a CUDA context each), the fewest within `MARGIN` of the best
aggregate images/s. Figures are cached under (GPU model, torch version, shape class, batch, variant).
"""
from __future__ import annotations

import multiprocessing as mp
import time

from .autotune import MARGIN, simplest_within
from .cache import TuneCache
from .device import cache_key
from .probe import _Stepper
from .synthetic import ShapeClass

CANDIDATES = (1, 2, 4, 8)
MEMORY_SHARE = 0.9  # of a GPU's memory that the packed trials may take together
CONTEXT_BYTES = 512 << 20  # a process's CUDA context and allocator slack beyond its measured peak
PROBE_S = 15.0  # what the probe costs (13 s measured on an H200): a sweep's probe budget must allow it


def decide(measured: dict[int, float], peak_bytes: int, gpu_memory: int, margin: float = MARGIN) -> dict:
    """{"trials_per_gpu", "reason"} from {trials at once: aggregate images/s}, one trial's peak bytes and the
    GPU's memory."""
    if not measured:
        raise ValueError("no measured figures to decide from")
    per_trial = peak_bytes + CONTEXT_BYTES
    fit = {k: v for k, v in measured.items() if k * per_trial <= MEMORY_SHARE * gpu_memory}
    figures = ", ".join(f"{k}: {measured[k]:.0f}" for k in sorted(measured))
    memory = (f"{per_trial / 2**20:.0f} MB per trial (peak + CUDA context) of {gpu_memory / 2**30:.0f} GiB")
    if not fit:
        return {"trials_per_gpu": 1, "reason": f"1 trial per GPU: not even one fits the probe's memory figure "
                                               f"({memory}); aggregate img/s {figures}"}
    order = [str(k) for k in sorted(fit)]
    k = int(simplest_within({str(k): v for k, v in fit.items()}, order, margin))
    gain = measured[k] / measured[min(measured)] if measured.get(min(measured)) else float("nan")
    left_out = sorted(set(measured) - set(fit))
    return {"trials_per_gpu": k,
            "reason": (f"{k} trial(s) per GPU: the fewest within {margin:.0%} of the best aggregate "
                       f"({gain:.2f}x one trial); aggregate img/s {figures}; {memory}"
                       + (f"; {', '.join(map(str, left_out))} would not fit" if left_out else ""))}


def _worker(shape_key: str, batch: int, variant: str, device: str, seconds: float, go, done) -> None:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    else:  # the same mechanics on the CPU (tests): one thread per process
        torch.set_num_threads(1)
    s = _Stepper(ShapeClass.parse(shape_key), batch, variant, dev)
    s.run(3)  # warm-up: kernel selection, allocator
    done.put(int(torch.cuda.max_memory_reserved(dev)) if dev.type == "cuda" else 0)
    while go.get() is not None:  # one timed window per token; None: stop
        done.put(s.timed(seconds))


def probe_rounds(shape: ShapeClass, batch: int, variant: str, device: str = "cuda:0",
                 counts: tuple[int, ...] = CANDIDATES, rounds: int = 3, seconds: float = 0.5) -> dict:
    """{"rounds": {count: [aggregate images/s per round]}, "peak_bytes": the largest process's peak}: max(counts)
    spawned processes on `device`; per round, for each count, that many run one window at once."""
    ctx = mp.get_context("spawn")
    n = max(counts)
    pipes = [(ctx.Queue(), ctx.Queue()) for _ in range(n)]
    procs = [ctx.Process(target=_worker, args=(shape.key, batch, variant, device, seconds, go, done), daemon=True)
             for go, done in pipes]
    try:
        for p in procs:
            p.start()
        peak = max(done.get(timeout=600) for _, done in pipes)
        runs: dict[int, list[float]] = {k: [] for k in counts}
        for _ in range(rounds):
            for k in counts:
                for go, _ in pipes[:k]:
                    go.put(True)
                runs[k].append(round(sum(done.get(timeout=600) for _, done in pipes[:k]), 2))
        return {"rounds": runs, "peak_bytes": peak}
    finally:
        for go, _ in pipes:
            go.put(None)
        for p in procs:
            if p.pid is None:  # never started (the start of an earlier one failed)
                continue
            p.join(timeout=30)
            if p.is_alive():
                p.kill()


def _key(shape: ShapeClass, batch: int, variant: str, device: str) -> str:
    return f"{cache_key(device, shape.key, batch)} | {variant}"


def cached(shape: ShapeClass, batch: int, variant: str, device: str, cache: TuneCache) -> dict | None:
    """The cached figures of this GPU model and class, or None (then only `measure` would know)."""
    return cache.get("gpu-packing", _key(shape, batch, variant, device))


def measure(shape: ShapeClass, batch: int, variant: str, device: str, cache: TuneCache | None = None,
            **probe_kw) -> tuple[dict, bool]:
    """(entry, cached): {"measured": {count: best aggregate images/s}, "rounds", "peak_bytes", "probe_s"},
    probed once per GPU model and cached."""
    cache = cache or TuneCache()

    def run() -> dict:
        started = time.perf_counter()
        r = probe_rounds(shape, batch, variant, device, **probe_kw)
        return {"measured": {str(k): max(v) for k, v in r["rounds"].items()}, "rounds": {str(k): v for k, v in
                r["rounds"].items()}, "peak_bytes": r["peak_bytes"], "probe_s": round(time.perf_counter() - started, 1),
                "probed": time.strftime("%Y-%m-%dT%H:%M:%S")}

    return cache.get_or_measure("gpu-packing", _key(shape, batch, variant, device), run)


def figures(entry: dict) -> dict[int, float]:
    return {int(k): float(v) for k, v in entry["measured"].items()}
