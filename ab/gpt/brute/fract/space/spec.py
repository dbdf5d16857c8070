"""The typed, immutable description of one fractal architecture.

An `ArchSpec` is the single source of truth for a generated model: the template renders it, the model
name and hash derive from it, and the manifest stores its canonical JSON.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..lemur.names import config_name, join, num

SPEC_VERSION = 1
JOIN_RULES = ("mean", "sum", "max")
POOLS = ("max", "avg")
HEADS = ("gap", "flatten")
KINDS = ("fractal", "plain")


class SpecError(ValueError):
    """A spec or a space that cannot describe a valid architecture."""


@dataclass(frozen=True)
class ArchSpec:
    """One architecture.

    depth: number of blocks (FractalNet's N); columns: C (a fractal block's deepest path has 2**(C-1) ops).
    channels: output channels of each block (len == depth). layers: the ordered layer options of one
    column op, e.g. ("conv3x3", "bn", "relu", "dropout"); "dropout" uses `dropout` as its rate, or, when
    `block_dropout` lists one rate per block (Larsson et al.'s schedule, see `larsson_rates`), block b's rate.
    kind "plain" is a non-fractal baseline: `plain_layers` ops in sequence, spread over `depth` blocks.
    """

    depth: int
    columns: int
    channels: tuple[int, ...]
    layers: tuple[str, ...]
    dropout: float = 0.0
    join: str = "mean"
    local_drop: float = 0.15
    global_drop: float = 0.5
    pool: str = "max"
    head: str = "gap"
    kind: str = "fractal"
    plain_layers: int = 0
    block_dropout: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "layers", tuple(str(x) for x in self.layers))
        object.__setattr__(self, "dropout", float(self.dropout))
        object.__setattr__(self, "local_drop", float(self.local_drop))
        object.__setattr__(self, "global_drop", float(self.global_drop))
        object.__setattr__(self, "block_dropout", tuple(float(p) for p in self.block_dropout))
        self.check()

    def check(self) -> None:
        if self.kind not in KINDS:
            raise SpecError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not 1 <= self.depth <= 8:
            raise SpecError(f"depth N={self.depth} is out of range: use 1..8")
        if not 1 <= self.columns <= 8:
            raise SpecError(f"columns={self.columns} is out of range: use 1..8")
        if len(self.channels) != self.depth or any(c < 1 for c in self.channels):
            raise SpecError(f"channels {self.channels} must list {self.depth} positive widths (one per block)")
        if not self.layers:
            raise SpecError("layers must name at least one layer option")
        if not 0.0 <= self.dropout < 1.0:
            raise SpecError(f"dropout={self.dropout} must be in [0, 1)")
        if not 0.0 <= self.local_drop < 1.0:
            raise SpecError(f"local_drop={self.local_drop} must be in [0, 1)")
        if not 0.0 <= self.global_drop <= 1.0:
            raise SpecError(f"global_drop={self.global_drop} must be in [0, 1]")
        if self.join not in JOIN_RULES:
            raise SpecError(f"join {self.join!r} is not one of {', '.join(JOIN_RULES)}")
        if self.pool not in POOLS:
            raise SpecError(f"pool {self.pool!r} is not one of {', '.join(POOLS)}")
        if self.head not in HEADS:
            raise SpecError(f"head {self.head!r} is not one of {', '.join(HEADS)}")
        if self.kind == "plain" and (self.plain_layers < self.depth or self.columns != 1):
            raise SpecError(f"a plain network needs columns=1 and plain_layers >= depth ({self.depth})")
        if self.kind == "fractal" and self.plain_layers:
            raise SpecError("plain_layers is only for kind='plain'")
        if self.block_dropout:
            if len(self.block_dropout) != self.depth or not all(0.0 <= p < 1.0 for p in self.block_dropout):
                raise SpecError(f"block_dropout {self.block_dropout} must list {self.depth} rates in [0, 1)")
            if self.dropout > 0 or not any(self.block_dropout):
                raise SpecError("block_dropout needs dropout=0 and at least one rate > 0")
        if ("dropout" in self.layers) != (self.dropout > 0 or bool(self.block_dropout)):
            raise SpecError("layers contain 'dropout' exactly when dropout > 0 or block_dropout is set")

    # -- canonical forms -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        d["layers"] = list(self.layers)
        if self.block_dropout:
            d["block_dropout"] = list(self.block_dropout)
        else:  # absent when unused: the hashes (and names) of specs made before it existed stay the same
            del d["block_dropout"]
        d["spec_version"] = SPEC_VERSION
        return d

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace; equal specs give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ArchSpec":
        d = dict(d)
        version = d.pop("spec_version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise SpecError(f"spec_version {version} is not supported (expected {SPEC_VERSION})")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise SpecError(f"unknown spec fields: {', '.join(unknown)}")
        try:
            return cls(**d)
        except TypeError as e:
            raise SpecError(f"incomplete spec: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"spec is not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise SpecError("spec JSON must be an object")
        return cls.from_dict(d)

    @property
    def spec_hash(self) -> str:
        """Stable 10-hex-digit hash of the canonical JSON."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:10]

    @property
    def name(self) -> str:
        """Readable model name in nn-dataset's grammar: configuration plus spec hash, no `_`."""
        return model_name(self)

    def dropout_rates(self) -> tuple[float, ...]:
        """The dropout rate the built model applies in each block (0 where it has no dropout)."""
        if self.block_dropout:
            return self.block_dropout
        return (self.dropout if "dropout" in self.layers else 0.0,) * self.depth

    def replace(self, **changes: Any) -> "ArchSpec":
        return dataclasses.replace(self, **changes)


LARSSON_RATES = (0.0, 0.1, 0.2, 0.3, 0.4)


def larsson_rates(depth: int) -> tuple[float, ...]:
    """Larsson et al.'s per-block dropout 0, 0.1, 0.2, 0.3, 0.4 (5 blocks) scaled to `depth` blocks: rising
    linearly from 0 in the first block to 0.4 in the last (a single block gets 0)."""
    if depth == 1:
        return (0.0,)
    top = LARSSON_RATES[-1]
    return tuple(round(top * b / (depth - 1), 4) for b in range(depth))


def model_name(spec: ArchSpec) -> str:
    """nn-dataset's grammar (no `_`), the paper's FractalNet-[configuration]: see lemur/names.py."""
    if spec.kind == "plain":
        head = ["PlainNet", f"L{spec.plain_layers}", f"N{spec.depth}"]
    else:
        head = ["FractalNet", f"N{spec.depth}", f"C{spec.columns}"]
    drop = "drop" + ("x".join(num(p) for p in spec.block_dropout) if spec.block_dropout else num(spec.dropout))
    ops = [drop if layer == "dropout" else layer for layer in spec.layers]
    return join(head + [f"w{spec.channels[0]}", *ops, spec.join, f"{spec.pool}pool", spec.head, spec.spec_hash])


def result_name(model: str, task: str = "img-classification", dataset: str = "cifar-10",
                metric: str = "acc") -> str:
    """The paper's result folder name, e.g. img-classification_cifar-10_acc_<Model>."""
    return config_name(model, task, dataset, metric)
