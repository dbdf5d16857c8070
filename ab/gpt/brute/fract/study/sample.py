"""What a study trains: its fractal sample (the declared generator over the declared space), the plain twins
of the pairs the questions compare, and the check that every level of every varied dimension is covered."""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

from ..space.baselines import deepest_column, plain
from ..space.generators import Request
from ..space.registry import default_registry
from ..space.space import LARSSON, Space, SpaceError
from ..space.spec import ArchSpec
from .spec import StudyError, StudySpec

# the dimensions the analysis compares, as columns of a spec row (dropout folds rate and Larsson's schedule)
LEVEL_DIMS = ("depth", "columns", "norm", "act", "order", "dropout", "join", "drop_path")


def space_of(study: StudySpec) -> Space:
    reg = default_registry()
    try:
        space = Space.default(reg).with_values(**study.dimensions)
        space.validate(reg)
    except SpaceError as e:
        raise StudyError(f"{study.path}: [space] {e}") from None
    return space


def propose(study: StudySpec) -> list[ArchSpec]:
    """The first `size` distinct specs the generator proposes (seeded: the same file gives the same list)."""
    reg = default_registry()
    if study.generator not in reg.generators:
        raise StudyError(f"[space] generator = {study.generator!r}: choose from {', '.join(reg.generators)}")
    space = space_of(study)
    gen = reg.generators[study.generator].propose(space, Request(limit=study.size, seed=study.seed))
    return list(itertools.islice(gen, study.size))


def levels(spec: dict | ArchSpec, space_order: tuple[str, ...] | None = None) -> dict:
    """The study's dimension levels of one spec (a spec dict from a manifest or run record, or an ArchSpec)."""
    d = spec.to_dict() if isinstance(spec, ArchSpec) else spec
    layers = list(d["layers"])
    norm = next((x for x in layers if x in ("bn", "inorm") or x.endswith("norm")), "none")
    acts = [x for x in layers if x not in (norm, "dropout") and not x.startswith(("conv", "dil"))]
    core = [x for x in layers if x != "dropout"]
    first = core[0] if core else ""
    order = "conv-first" if first.startswith(("conv", "dil")) else "norm/act-first"
    if d.get("block_dropout"):
        dropout = LARSSON
    else:
        dropout = f"{float(d.get('dropout') or 0):g}" if "dropout" in layers else "0"
    multi = d["columns"] > 1 and d.get("kind", "fractal") == "fractal"
    local, glob = float(d.get("local_drop") or 0), float(d.get("global_drop") or 0)
    drop_path = ("local+global" if local and glob else "local" if local else "global" if glob else "none") \
        if multi else "n/a (C=1)"
    return {"depth": d["depth"], "columns": d["columns"], "norm": norm, "act": acts[0] if acts else "none",
            "order": order, "dropout": dropout, "join": d["join"] if multi else "n/a (C=1)", "drop_path": drop_path}


def level_counts(specs: list[ArchSpec]) -> dict[str, Counter]:
    counts = {k: Counter() for k in LEVEL_DIMS}
    for s in specs:
        for k, v in levels(s).items():
            counts[k][v] += 1
    return counts


def check_coverage(study: StudySpec, specs: list[ArchSpec]) -> dict[str, Counter]:
    """Every level of every dimension at least min_level_count times (n/a levels of one-column nets aside)."""
    counts = level_counts(specs)
    thin = [f"{k}={v} ({n})" for k, c in counts.items() for v, n in c.items()
            if n < study.min_level_count and not str(v).startswith("n/a")]
    if thin:
        raise StudyError(f"[space] size = {study.size} leaves levels below min_level_count = "
                         f"{study.min_level_count}: {', '.join(thin[:6])}; raise size or drop levels")
    return counts


@dataclass(frozen=True)
class Pair:
    """A fractal model and its plain twins: same layers and widths, matched in depth or in parameters."""

    fractal: ArchSpec
    depth_twin: ArchSpec  # the deepest column alone: N * 2^(C-1) ops (Larsson's plain net of equal depth)
    params_twin: ArchSpec  # N * (2^C - 1) ops: as many convolutions as the fractal, so about its parameters


def pair_for(spec: ArchSpec) -> Pair:
    return Pair(spec, deepest_column(spec), plain(spec, spec.depth * (2 ** spec.columns - 1)))


def pairs(study: StudySpec, specs: list[ArchSpec]) -> list[Pair]:
    """`cells_per_pair` fractal models of each (N, C >= 2) cell, in sample order, each with its plain twins."""
    out, taken = [], Counter()
    for s in specs:
        if s.kind == "fractal" and s.columns > 1 and taken[(s.depth, s.columns)] < study.cells_per_pair:
            taken[(s.depth, s.columns)] += 1
            out.append(pair_for(s))
    return out
