"""The declared space of architectures: one tuple of values per dimension.

`Space.point(i)` decodes index i (mixed radix over the dimensions) into an `ArchSpec`, so samplers can
draw points without enumerating the space. Points that describe the same architecture (e.g. a join rule
for a one-column network, or an order that only moves an absent norm) map to the same canonical spec.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Iterator

from .families import NONE
from .catalog import Registry
from .spec import HEADS, JOIN_RULES, KINDS, POOLS, ArchSpec, larsson_rates

LARSSON = "larsson"  # dropout value: Larsson et al.'s per-block schedule 0..0.4, scaled to the depth

PAPER_CHANNELS = (64, 128, 256, 512, 512)


class SpaceError(ValueError):
    """A space declaration that cannot be used."""


@dataclass(frozen=True)
class Space:
    kind: str = "fractal"
    depth: tuple[int, ...] = (1, 2, 3, 4)
    columns: tuple[int, ...] = (1, 2, 3, 4)
    plain_layers: tuple[int, ...] = (5, 10, 20, 40)
    channels: tuple[tuple[int, ...], ...] = (PAPER_CHANNELS,)
    conv: tuple[str, ...] = ("conv3x3", "conv5x5")
    norm: tuple[str, ...] = (NONE, "bn", "inorm")
    act: tuple[str, ...] = ("relu", "gelu", "silu")
    order: tuple[str, ...] = ("conv-norm-act", "norm-act-conv")
    dropout: tuple[float | str, ...] = (0.0, 0.2)  # rates, and/or LARSSON
    join: tuple[str, ...] = ("mean", "max")
    local_drop: tuple[float, ...] = (0.15,)
    global_drop: tuple[float, ...] = (0.5,)
    pool: tuple[str, ...] = ("max",)
    head: tuple[str, ...] = ("gap",)

    @classmethod
    def default(cls, registry: Registry, kind: str = "fractal") -> "Space":
        """The default space, widened by every registered option marked for the default space."""
        base = cls(kind=kind)
        extra = {slot: tuple(o for o in registry.options_for(slot, default_only=True)
                             if o not in getattr(base, slot)) for slot in ("conv", "norm", "act")}
        return base.with_values(**{s: getattr(base, s) + extra[s] for s in extra})

    def with_values(self, **changes) -> "Space":
        from dataclasses import replace
        return replace(self, **changes)

    def dimensions(self) -> dict[str, tuple]:
        """The dimensions that vary for this kind, in enumeration order (last varies fastest)."""
        names = ["depth"] + (["plain_layers"] if self.kind == "plain" else ["columns"])
        names += ["channels", "conv", "norm", "act", "order", "dropout"]
        if self.kind == "fractal":
            names += ["join", "local_drop", "global_drop"]
        names += ["pool", "head"]
        return {n: getattr(self, n) for n in names}

    @property
    def raw_size(self) -> int:
        return math.prod(len(v) for v in self.dimensions().values())

    def validate(self, registry: Registry) -> None:
        """Raise SpaceError naming the first bad value and what would be valid."""
        if self.kind not in KINDS:
            raise SpaceError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        for f in fields(self):
            values = getattr(self, f.name)
            if f.name != "kind" and not values:
                raise SpaceError(f"dimension {f.name!r} has no values")
        _ints("depth", self.depth, 1, 8)
        _ints("columns", self.columns, 1, 8)
        _ints("plain_layers", self.plain_layers, 1, 1000)
        for sched in self.channels:
            if not sched or any((not isinstance(c, int)) or c < 1 for c in sched):
                raise SpaceError(f"channel schedule {sched} must be positive integers, e.g. 64,128,256")
        for slot in ("conv", "norm", "act"):
            valid = registry.options_for(slot) + ([] if slot == "conv" else [NONE])
            for name in getattr(self, slot):
                if name not in valid:
                    raise SpaceError(f"unknown {slot} option {name!r}: choose from {', '.join(valid)}")
        for order in self.order:
            parts = order.split("-")
            if sorted(parts) != sorted(set(parts)) or not set(parts) <= {"conv", "norm", "act"} \
                    or "conv" not in parts:
                raise SpaceError(f"order {order!r} must be distinct slots from conv, norm, act joined by '-' "
                                 "and include conv, e.g. conv-norm-act")
        for name, lo, hi_open, label in (("dropout", 0.0, 1.0, "[0, 1)"), ("local_drop", 0.0, 1.0, "[0, 1)")):
            for v in getattr(self, name):
                if name == "dropout" and v == LARSSON:
                    continue
                if isinstance(v, str) or not lo <= v < hi_open:
                    raise SpaceError(f"{name} {v} is outside {label}")
        for v in self.global_drop:
            if not 0.0 <= v <= 1.0:
                raise SpaceError(f"global_drop {v} is outside [0, 1]")
        for name, allowed in (("join", JOIN_RULES), ("pool", POOLS), ("head", HEADS)):
            for v in getattr(self, name):
                if v not in allowed:
                    raise SpaceError(f"unknown {name} {v!r}: choose from {', '.join(allowed)}")

    def point(self, index: int) -> ArchSpec:
        dims = self.dimensions()
        if not 0 <= index < self.raw_size:
            raise IndexError(index)
        chosen = {}
        for name, values in reversed(list(dims.items())):
            index, r = divmod(index, len(values))
            chosen[name] = values[r]
        return self._spec(chosen)

    def _spec(self, c: dict) -> ArchSpec:
        slots = {"conv": c["conv"], "norm": c["norm"], "act": c["act"]}
        layers = [slots[s] for s in c["order"].split("-") if slots[s] != NONE]
        depth = c["depth"]
        rates = larsson_rates(depth) if c["dropout"] == LARSSON else ()
        rate = 0.0 if c["dropout"] == LARSSON else c["dropout"]
        if rate > 0 or any(rates):
            layers.append("dropout")
        sched = tuple(c["channels"])
        channels = (sched + (sched[-1],) * depth)[:depth]
        common = dict(depth=depth, channels=channels, layers=tuple(layers), dropout=rate,
                      block_dropout=rates if any(rates) else (),
                      pool=c["pool"], head=c["head"])
        if self.kind == "plain":
            return ArchSpec(columns=1, kind="plain", plain_layers=max(c["plain_layers"], depth),
                            join="mean", local_drop=0.0, global_drop=0.0, **common)
        if c["columns"] == 1:  # no joins: join rule and drop-path do not exist
            return ArchSpec(columns=1, join="mean", local_drop=0.0, global_drop=0.0, **common)
        return ArchSpec(columns=c["columns"], join=c["join"], local_drop=c["local_drop"],
                        global_drop=c["global_drop"], **common)

    def __iter__(self) -> Iterator[ArchSpec]:
        """Every canonical spec once, in index order."""
        seen: set[str] = set()
        for i in range(self.raw_size):
            spec = self.point(i)
            if spec.spec_hash not in seen:
                seen.add(spec.spec_hash)
                yield spec

    def describe(self) -> list[tuple[str, int, str]]:
        """(dimension, number of values, values) rows for a listing."""
        rows = []
        for name, values in self.dimensions().items():
            shown = ", ".join("-".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in values)
            rows.append((name, len(values), shown))
        return rows


def _ints(name: str, values, lo: int, hi: int) -> None:
    for v in values:
        if not isinstance(v, int) or not lo <= v <= hi:
            raise SpaceError(f"{name} {v!r} is out of range: use integers {lo}..{hi}")

