"""Plain (non-fractal) baselines of a fractal spec, for a fair comparison: the same op layers, widths,
pooling and head, trained by the same runner. One plain network per layer count (5, 10, 20, 40 by
default, the paper's comparison) plus the variant's deepest column alone (depth * 2**(C-1) ops)."""
from __future__ import annotations

from typing import Iterable, Iterator

from .spec import ArchSpec

PLAIN_LAYERS = (5, 10, 20, 40)


def plain(spec: ArchSpec, layers: int) -> ArchSpec:
    """The plain network with `spec`'s ops and widths and `layers` ops (at least one per block)."""
    return ArchSpec(depth=spec.depth, columns=1, channels=spec.channels, layers=spec.layers, dropout=spec.dropout,
                    block_dropout=spec.block_dropout, join="mean", local_drop=0.0, global_drop=0.0, pool=spec.pool, head=spec.head, kind="plain",
                    plain_layers=max(layers, spec.depth))


def deepest_column(spec: ArchSpec) -> ArchSpec:
    """The fractal variant's deepest column as a plain network: 2**(C-1) ops in each of its N blocks."""
    return plain(spec, spec.depth * 2 ** (spec.columns - 1))


def baselines_for(specs: Iterable[ArchSpec], layers: Iterable[int] = PLAIN_LAYERS) -> Iterator[ArchSpec]:
    """Every baseline of every fractal spec once (shared ones are not repeated). A one-column variant
    is its own deepest column, so it gets none."""
    seen: set[str] = set()
    for spec in specs:
        if spec.kind != "fractal":
            continue
        wanted = [plain(spec, n) for n in layers]
        if spec.columns > 1:
            wanted.append(deepest_column(spec))
        for b in wanted:
            if b.spec_hash not in seen:
                seen.add(b.spec_hash)
                yield b
