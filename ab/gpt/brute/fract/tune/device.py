"""Which machine this is, for cache keys: the device model (CPU model name with its bf16-relevant ISA
flags and usable cores, or the GPU name) and the torch version."""
from __future__ import annotations

import ast
import importlib.util
import os
import sys
from functools import lru_cache
from pathlib import Path

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


def device_model(device) -> str:
    """'AMD EPYC [avx2 avx512f avx512_bf16] x2 cores' or 'cuda NVIDIA H100 80GB HBM3'."""
    if device_type(device) == "cuda":
        import torch  # heavy: only for a GPU, whose name only torch knows

        return f"cuda {torch.cuda.get_device_name(torch.device(device))}"
    return f"{cpu_model()} x{usable_cores()} cores"


@lru_cache(maxsize=1)
def torch_version() -> str:
    """torch.__version__ with its build tag (2.9.1+cu128), read from torch/version.py without importing torch
    (a driver whose decisions are all cached never needs it)."""
    if "torch" in sys.modules:
        return sys.modules["torch"].__version__
    spec = importlib.util.find_spec("torch")
    source = (Path(spec.origin).parent / "version.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__version__" for t in node.targets):
            return str(ast.literal_eval(node.value))
    raise RuntimeError(f"no __version__ in {Path(spec.origin).parent / 'version.py'}")


def cache_key(device, shape_key: str, batch: int) -> str:
    return f"{device_model(device)} | torch {torch_version()} | {shape_key} | batch {batch}"


def device_type(device) -> str:
    """'cuda' for cuda / cuda:N (or a torch.device of either), else 'cpu' and the like, without torch."""
    return getattr(device, "type", None) or str(device).partition(":")[0]


def cuda_bf16() -> bool:
    """Whether the current GPU computes bf16 (else AMP uses fp16 with a gradient scaler)."""
    import torch  # heavy: only asked on a GPU

    return bool(torch.cuda.is_bf16_supported())


def free_bytes(device) -> int:
    """Memory a new allocation can use now: CUDA free device memory, or the host's available RAM."""
    if device_type(device) == "cuda":
        import torch  # heavy: only on a GPU

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    return int(psutil.virtual_memory().available)
