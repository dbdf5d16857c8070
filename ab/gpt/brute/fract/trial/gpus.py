"""Which GPUs a sweep uses, how jail slots map onto them, and which device nodes a jail of one GPU sees.

`--device` (one parser for every command): `auto` (every visible GPU, else the CPU), `cpu`, `cuda` (every
visible GPU), `cuda:N` or `cuda:0,2` (the listed ones, in the driver's CUDA numbering). A jail of one
GPU gets that GPU's device node alone plus the driver's control nodes, and `CUDA_VISIBLE_DEVICES` naming it,
so the model inside sees it as `cuda:0`. `slot_gpus` lays K slots per GPU out so that consecutive
submissions go to different GPUs (longest-first across GPUs, as across CPU workers). `gpu_fault` tells a
GPU's own failure (lost device, Xid, CUDA error at initialisation) from a model's.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..util.cli import DeviceChoice, gpu_driver_present

CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
PROC_GPUS = Path("/proc/driver/nvidia/gpus")


@dataclass(frozen=True)
class Gpu:
    """One GPU as the driver sees it. `minor`: N of /dev/nvidiaN (None: unknown, every GPU node is bound and
    CUDA_VISIBLE_DEVICES alone selects it)."""

    index: int
    name: str = "GPU"
    uuid: str | None = None
    minor: int | None = None
    memory: int = 0  # bytes

    @property
    def label(self) -> str:
        return f"cuda:{self.index} ({self.name})"

    @property
    def visible_devices(self) -> str:
        """CUDA_VISIBLE_DEVICES inside its jail: the UUID (unambiguous whatever the enumeration order)."""
        return self.uuid or str(self.index)


def _minors_by_bus() -> dict[str, int]:
    """{PCI bus id (lower case, 'dddd:bb:dd.f'): device minor} from the driver's /proc files."""
    out = {}
    try:
        folders = list(PROC_GPUS.iterdir())
    except OSError:
        return out
    for d in folders:
        try:
            text = (d / "information").read_text()
        except OSError:
            continue
        m = re.search(r"Device Minor:\s*(\d+)", text)
        if m:
            out[d.name.lower()] = int(m.group(1))
    return out


def _bus_id(props) -> str | None:
    try:
        return f"{props.pci_domain_id:04x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
    except AttributeError:
        return None


def visible_gpus() -> list[Gpu]:
    """The GPUs torch sees in this process, with their device minors where the driver lists them."""
    if not gpu_driver_present():
        return []
    import torch  # heavy: only where a GPU driver is present

    if not torch.cuda.is_available():
        return []
    minors = _minors_by_bus()
    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        uuid = str(getattr(p, "uuid", "") or "") or None
        if uuid and not uuid.startswith(("GPU-", "MIG-")):
            uuid = f"GPU-{uuid}"
        bus = _bus_id(p)
        gpus.append(Gpu(i, p.name, uuid, minors.get(bus) if bus else None, int(p.total_memory)))
    return gpus


def select(choice: DeviceChoice, gpus: list[Gpu]) -> list[Gpu]:
    """The GPUs a sweep with this --device uses ([] for the CPU). ValueError when a listed GPU is not there
    or cuda is asked for with none visible."""
    if choice.kind == "cpu" or (choice.kind == "auto" and not gpus):
        return []
    if not gpus:
        raise ValueError(f"--device {choice}: torch sees no CUDA device here; use --device cpu")
    if choice.indices is None:
        return list(gpus)
    by_index = {g.index: g for g in gpus}
    missing = [i for i in choice.indices if i not in by_index]
    if missing:
        raise ValueError(f"--device {choice}: no GPU {', '.join(map(str, missing))} here; this machine shows "
                         f"{len(gpus)} GPU(s), cuda:0..cuda:{len(gpus) - 1}")
    return [by_index[i] for i in choice.indices]


def slot_gpus(gpus: list[Gpu], per_gpu: int) -> list[Gpu]:
    """The GPU of each of len(gpus) x per_gpu jail slots: GPU by GPU in turn (slot k on gpus[k % n])."""
    return [gpus[k % len(gpus)] for k in range(len(gpus) * max(1, per_gpu))] if gpus else []


def device_nodes(gpu: Gpu | None, present: list[str]) -> list[str]:
    """The /dev entries (names in `present`, the listing of /dev) a jail binds for `gpu`: its own node and
    the control nodes; with an unknown minor, every GPU node (CUDA_VISIBLE_DEVICES then selects it);
    gpu None (the Ray path: the task picks its device), every nvidia node."""
    nvidia = sorted(n for n in present if n.startswith("nvidia"))
    if gpu is None:
        return nvidia
    own = [n for n in nvidia if re.fullmatch(r"nvidia\d+", n)]
    if gpu.minor is not None:
        own = [n for n in own if n == f"nvidia{gpu.minor}"]
    return sorted(own) + [n for n in nvidia if n in CONTROL_NODES]


def dev_listing() -> list[str]:
    try:
        return os.listdir("/dev")
    except OSError:
        return []


# The GPU's or its driver's failure, not the model's: the trial fails with this cause, and a GPU that keeps
# failing gets no more trials. Model errors (shape mismatches, out of memory, its own asserts) are not here.
GPU_FAULTS = (
    ("no CUDA device", r"torch sees no CUDA device|no CUDA-capable device|Found no NVIDIA driver|"
                       r"CUDA driver initialization failed|cudaErrorNoDevice|CUDA_ERROR_NO_DEVICE"),
    ("GPU lost", r"GPU is lost|fallen off the bus|CUDA_ERROR_DEVICE_UNAVAILABLE|busy or unavailable|"
                 r"cudaErrorDevicesUnavailable"),
    ("Xid / ECC error", r"\bXid\b|uncorrectable ECC|ECC error"),
    ("CUDA error", r"CUDA error: (unknown error|unspecified launch failure|launch timed out|"
                   r"an illegal instruction|system not yet initialized|initialization error|"
                   r"the launch timed out|operation not supported|invalid device ordinal)"),
    ("driver mismatch", r"CUDA driver version is insufficient|forward compatibility was attempted"),
)


def gpu_fault(message: str) -> str | None:
    """The kind of GPU failure a trial's error message shows, or None when it is the model's own."""
    for kind, pattern in GPU_FAULTS:
        if re.search(pattern, message or "", re.IGNORECASE):
            return kind
    return None
