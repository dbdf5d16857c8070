"""The machine fields of nn-dataset's train_stat, measured as its trainer measures them (same keys, units).

Called by the driver's side of a jail after each epoch (trial/session.py, on the machine that runs it); it imports no
nn-dataset module (nn-dataset's `ab.nn.util.Train` would try to fetch the LEMUR DB on import).
"""
from __future__ import annotations

import platform

import psutil

FIELDS = ("cpu_count", "cpu_type", "cpu_usage_percent", "total_ram_kb", "occupied_ram_kb", "ram_usage_percent",
          "gpu_type", "gpu_memory_kb", "gpu_total_memory_kb", "occupied_gpu_memory_kb", "gpu_memory_usage_percent")


def train_stat_system(device: str) -> dict:
    """cpu type/count/usage, RAM total/used (kB, %), GPU type, peak/total/used memory (kB, %): None where
    the trial has no such thing (a CPU trial: gpu_type 'No GPU', as nn-dataset writes without a GPU)."""
    try:
        return _measure(str(device))
    except (OSError, RuntimeError, psutil.Error):  # a jail without /proc: the fields stay empty, training goes on
        return dict.fromkeys(FIELDS)


def _measure(device: str) -> dict:
    vm = psutil.virtual_memory()
    out = {"cpu_count": psutil.cpu_count(logical=True), "cpu_type": platform.processor() or platform.machine(),
           "cpu_usage_percent": psutil.cpu_percent(interval=0.1), "total_ram_kb": round(vm.total / 1024, 2),
           "occupied_ram_kb": round(vm.used / 1024, 2), "ram_usage_percent": vm.percent, "gpu_type": "No GPU",
           "gpu_memory_kb": None, "gpu_total_memory_kb": None, "occupied_gpu_memory_kb": None,
           "gpu_memory_usage_percent": None}
    if not device.startswith("cuda"):  # a CPU trial: torch stays unimported (the generation driver never needs it)
        return out
    import torch

    if torch.cuda.is_available():
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        used = torch.cuda.memory_allocated(index)
        out.update(gpu_type=props.name, gpu_total_memory_kb=round(props.total_memory / 1024, 2),
                   gpu_memory_kb=torch.cuda.max_memory_allocated(index) / 1024,
                   occupied_gpu_memory_kb=round(used / 1024, 2),
                   gpu_memory_usage_percent=round(used / props.total_memory * 100, 2))
    return out
