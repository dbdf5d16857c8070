"""Peak memory of one phase: CUDA max allocated on a GPU; on the CPU, peak resident memory (RSS) sampled.

The kernel's own high-water mark (VmHWM) spans the life of the process (and a jailed model process may not
reset it), so on the CPU a daemon thread samples /proc/self/statm instead, every 20 ms by default: each
wake-up takes the GIL from the training loop (every 5 ms cost ~4% of training speed), and the activation
peak recurs every training step, so an epoch's hundreds of steps sample it at drifting phases.
"""
from __future__ import annotations

import os
import threading

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # not Linux: the lifetime high-water mark is the best there is
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Context manager; `.peak_mb` after exit (CUDA: max allocated; CPU: max sampled RSS)."""

    def __init__(self, device: torch.device | str, interval_s: float = 0.02) -> None:
        self.device = torch.device(device)
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak = rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.peak = max(self.peak, rss_bytes())

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 2**20, 1)
