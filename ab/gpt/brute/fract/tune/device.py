"""Which machine this is, for cache keys: the device model (CPU model name with its bf16-relevant ISA
flags and usable cores, or the GPU name) and the torch version."""
from __future__ import annotations

import os
from functools import lru_cache

import torch

# ISA features that change which dtype or layout wins on a CPU
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not name:
                    name = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        import platform

        name = platform.processor() or platform.machine()
    return name, frozenset(flags)


def cpu_model() -> str:
    name, flags = _cpuinfo()
    have = [f for f in CPU_FLAGS if f in flags]
    return f"{name or 'unknown CPU'}" + (f" [{' '.join(have)}]" if have else "")


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (avx512_bf16 or AMX): emulated bf16 loses to fp32."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpuinfo()[1])


def device_model(device: torch.device | str) -> str:
    """'AMD EPYC [avx2 avx512f avx512_bf16] x2 cores' or 'cuda NVIDIA H100 80GB HBM3'."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda {torch.cuda.get_device_name(device)}"
    return f"{cpu_model()} x{usable_cores()} cores"


def cache_key(device: torch.device | str, shape_key: str, batch: int) -> str:
    return f"{device_model(device)} | torch {torch.__version__} | {shape_key} | batch {batch}"
