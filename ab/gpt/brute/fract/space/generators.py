"""Generators: named strategies that propose specs from a space.

A generator is a `Generator(name, description, propose)` where `propose(space, request)` yields specs.
Built-ins: enumerate (index order), random (seeded, without replacement), stratified (seeded, balanced
over (depth, columns) cells). Plugins add more (e.g. an LLM generator) through the same hook.
"""
from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .space import Space
from .spec import ArchSpec


@dataclass(frozen=True)
class Request:
    limit: int | None = None
    seed: int = 0
    options: dict[str, str] = field(default_factory=dict)
    out_dir: Path | None = None  # where earlier results live, for generators that learn from them


@dataclass(frozen=True)
class CodeProposal:
    """A whole model file proposed as code (e.g. written by an LLM) instead of a spec.

    It goes through the same static checks and jailed validation as rendered specs."""

    name: str
    code: str
    origin: str = ""

    @property
    def key(self) -> str:
        return "code-" + hashlib.sha256(self.code.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Generator:
    name: str
    description: str
    propose: Callable[[Space, Request], Iterable[ArchSpec | CodeProposal]]


def _unique(specs: Iterable[ArchSpec]) -> Iterator[ArchSpec]:
    seen: set[str] = set()
    for s in specs:
        if s.spec_hash not in seen:
            seen.add(s.spec_hash)
            yield s


def enumerate_space(space: Space, request: Request) -> Iterator[ArchSpec]:
    yield from iter(space)


def random_sample(space: Space, request: Request) -> Iterator[ArchSpec]:
    rng = random.Random(request.seed)
    order = list(range(space.raw_size))
    rng.shuffle(order)
    yield from _unique(space.point(i) for i in order)


def stratified_sample(space: Space, request: Request) -> Iterator[ArchSpec]:
    """Round-robin over (depth, columns-or-layers) cells, seeded random order inside each cell."""
    rng = random.Random(request.seed)
    cells: dict[Any, list[ArchSpec]] = defaultdict(list)
    for spec in space:
        cells[(spec.depth, spec.columns, spec.plain_layers)].append(spec)
    queues = []
    for key in sorted(cells):
        specs = cells[key]
        rng.shuffle(specs)
        queues.append(specs)
    while any(queues):
        for q in queues:
            if q:
                yield q.pop()


BUILTIN_GENERATORS = (
    Generator("enumerate", "every point of the space, in index order", enumerate_space),
    Generator("random", "seeded uniform sample without replacement", random_sample),
    Generator("stratified", "seeded sample balanced over (depth, columns) cells", stratified_sample),
)
