"""Typed settings of one trainability map, with validation and a JSON round trip."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field

ACTIVATIONS = ("tanh", "relu", "identity")
# Knobs a grid axis may sweep. "lr" sets both layers' learning rates, "offset" both init offsets.
KNOBS = ("lr0", "lr1", "lr", "offset0", "offset1", "offset")
READOUTS = ("sum", "final", "probe")
SEED_MODES = ("shared", "per_pixel")
DTYPES = ("float32", "float64")


# The full-size arrays of one map: three float64 readouts and a bool mask, then the PNG rendering's float64
# and RGBA copies. A generous per-pixel figure, so a map refused by `check_memory` would surely not fit.
BYTES_PER_PIXEL = 128


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable, else the physical total)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(shape: tuple[int, int], work_bytes: int = 0) -> None:
    """Refuse, in one line, a map whose arrays (plus `work_bytes` while computing) would not fit in the
    memory available now."""
    arrays = shape[0] * shape[1] * BYTES_PER_PIXEL
    have = available_memory()
    if arrays + work_bytes > have:
        fix = "lower --res (or --res-x/--res-y)" if arrays >= work_bytes else "lower --steps, --tile, --chunk, --width or the data size"
        raise ValueError(f"a {shape[1]}x{shape[0]} map needs about {(arrays + work_bytes) / 2**30:,.1f} GiB of "
                         f"memory, more than the {have / 2**30:,.1f} GiB available: {fix}")


def _covers(knob: str) -> set:
    return {"lr": {"lr0", "lr1"}, "offset": {"offset0", "offset1"}}.get(knob, {knob})


@dataclass
class Axis:
    """One image axis: which knob it sweeps, its bounds, pixel count and spacing."""

    knob: str = "lr0"
    lo: float = 1e-2
    hi: float = 1e2
    n: int = 64
    log: bool = True

    def validate(self, which: str) -> None:
        if self.knob not in KNOBS:
            raise ValueError(f"{which} axis: unknown knob {self.knob!r} (choose from {', '.join(KNOBS)})")
        if int(self.n) != self.n or self.n < 1:
            raise ValueError(f"{which} axis: resolution must be a positive integer, got {self.n}")
        if not self.lo < self.hi:
            raise ValueError(f"{which} axis: need lo < hi, got lo={self.lo} hi={self.hi}")
        if self.log and self.lo <= 0:
            raise ValueError(f"{which} axis: log-spaced axis needs lo > 0, got {self.lo}")

    def values(self):
        """Pixel-centre values, ascending (numpy float64 array of length n)."""
        import numpy as np

        if self.n == 1:
            return np.array([np.sqrt(self.lo * self.hi) if self.log else 0.5 * (self.lo + self.hi)])
        if self.log:
            return np.logspace(np.log10(self.lo), np.log10(self.hi), self.n)
        return np.linspace(self.lo, self.hi, self.n)


@dataclass
class BoundaryConfig:
    """Everything that determines a map. Pixel (row i, col j) uses x.values()[j], y.values()[i]."""

    x: Axis = field(default_factory=lambda: Axis("lr0", 1e-2, 1e2, 64, True))
    y: Axis = field(default_factory=lambda: Axis("lr1", 1e-2, 1e2, 64, True))
    # Network: depth 2 (width x width, then width x 1), mean-field scaling.
    width: int = 16
    activation: str = "tanh"
    norm: bool = False  # layer norm (no affine) on the hidden pre-activation
    skip: bool = False  # hidden = input + act(pre-activation)
    # Data: n = round(parameters * data_ratio) unless n_data is given (n_data=1: single point).
    data_ratio: float = 1.0
    n_data: int | None = None
    # Training.
    steps: int = 500
    batch_size: int | None = None  # None: full batch
    momentum: float = 0.0
    lr0: float = 0.1  # defaults for knobs not swept by an axis
    lr1: float = 0.1
    offset0: float = 0.0  # added to the N(0, 1) init of layer 0 / layer 1 weights
    offset1: float = 0.0
    seed: int = 0
    seed_mode: str = "shared"  # "shared": one init+data for all pixels; "per_pixel": own seed each
    dtype: str = "float32"
    # Readout.
    readout: str = "sum"
    window: int = 20  # converged when mean of the last `window` normalised losses < 1
    clip: float = 1e6
    probe_step: int | None = None  # step index for the "probe" readout (None: last step)
    # Execution (does not change results of a given tile, except device/dtype numerics).
    device: str = "cpu"
    tile: int = 128
    chunk: int = 256

    @property
    def n_params(self) -> int:
        return self.width * self.width + self.width

    @property
    def n_samples(self) -> int:
        if self.n_data is not None:
            return int(self.n_data)
        return max(1, int(round(self.n_params * self.data_ratio)))

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.y.n), int(self.x.n))

    def validate(self) -> "BoundaryConfig":
        self.x.validate("x")
        self.y.validate("y")
        if _covers(self.x.knob) & _covers(self.y.knob):
            raise ValueError(f"x and y axes sweep overlapping knobs ({self.x.knob}, {self.y.knob})")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r} (choose from {', '.join(ACTIVATIONS)})")
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not 1 <= self.window <= self.steps:
            raise ValueError(f"window must be in [1, steps], got {self.window}")
        if self.n_data is not None and self.n_data < 1:
            raise ValueError(f"n_data must be >= 1, got {self.n_data}")
        if self.n_data is None and not self.data_ratio > 0:
            raise ValueError(f"data_ratio must be > 0, got {self.data_ratio}")
        if self.batch_size is not None and not 1 <= self.batch_size <= self.n_samples:
            raise ValueError(f"batch_size must be in [1, {self.n_samples}], got {self.batch_size}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.seed_mode not in SEED_MODES:
            raise ValueError(f"unknown seed mode {self.seed_mode!r} (choose from {', '.join(SEED_MODES)})")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r} (choose from {', '.join(DTYPES)})")
        if self.readout not in READOUTS:
            raise ValueError(f"unknown readout {self.readout!r} (choose from {', '.join(READOUTS)})")
        if self.probe_step is not None and not 0 <= self.probe_step < self.steps:
            raise ValueError(f"probe_step must be in [0, steps), got {self.probe_step}")
        if not self.clip > 1:
            raise ValueError(f"clip must be > 1, got {self.clip}")
        if self.tile < 1 or self.chunk < 1:
            raise ValueError("tile and chunk must be >= 1")
        return self

    def working_bytes(self) -> int:
        """Memory of one tile's loss trajectories and one chunk's batched networks and data."""
        tile_px = min(self.tile * self.tile, self.shape[0] * self.shape[1])
        batch = min(self.chunk, tile_px)
        return 8 * (tile_px * self.steps + 4 * batch * (self.n_samples + 1) * (self.width + 1))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BoundaryConfig":
        d = dict(d)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        for k in ("x", "y"):
            if k in d and isinstance(d[k], dict):
                d[k] = Axis(**d[k])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> "BoundaryConfig":
        return cls.from_dict(json.loads(s))

    def fingerprint(self) -> str:
        """Hash of the settings that change results; tiles are only reused under the same hash.

        `tile` is included (it fixes tile boundaries); `chunk`, `device` and `readout` are not (tiles
        keep every readout), so a run may resume with another chunk size or device (results can then
        differ in the last float bits).
        """
        d = self.to_dict()
        for k in ("chunk", "device", "readout"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
