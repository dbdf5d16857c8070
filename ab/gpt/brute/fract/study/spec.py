"""A study declared in a TOML file (`studies/<name>/study.toml`), read with tomllib and checked up front.

    [study]      name, description
    [space]      generator, seed, size (fractal models to sample), min_level_count, and the dimensions
                 (depth, columns, channels, conv, norm, act, order, dropout, join, local_drop, global_drop,
                 pool, head): lists of values, as AlterNNFN takes them
    [baselines]  cells_per_pair: fractal models per (N, C >= 2) cell that get plain twins, one matched in depth
                 (the deepest column alone, N * 2^(C-1) ops) and one in parameters (N * (2^C - 1) ops)
    [protocol]   data, epochs (the final budget), batch, lr, momentum, transform, train_limit, test_limit,
                 workers, threads, timeout, policies (off: fp32 and no tuning, reproducible; auto: NNEval's),
                 device, executor (local or ray), address, gpus_per_trial, cpus_per_trial; [protocol.halving] rungs (budgets below epochs), eta, min_keep;
                 [protocol.seeds] count (seeds at the final budget), top (best models that get them)
    [questions]  ask: which of QUESTIONS the analysis answers

Every error is one line naming the key, what was wrong and what to write instead (`StudyError`).
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

QUESTIONS = ("dimensions", "failures", "depth_columns", "fractal_vs_plain", "deepest_column", "rung_rank")
DIMENSIONS = ("depth", "columns", "channels", "conv", "norm", "act", "order", "dropout", "join", "local_drop",
              "global_drop", "pool", "head")
INT_DIMS = ("depth", "columns")
FLOAT_DIMS = ("local_drop", "global_drop")
DATA_ENV = "NN_GPT_FRACTAL_STUDY_DATA"  # overrides [protocol] data, e.g. on another machine
SECTIONS = {
    "study": {"name", "description"},
    "space": {"generator", "seed", "size", "min_level_count", *DIMENSIONS},
    "baselines": {"cells_per_pair"},
    "protocol": {"data", "epochs", "batch", "lr", "momentum", "transform", "train_limit", "test_limit", "workers",
                 "threads", "timeout", "halving", "seeds", "policies", "device", "executor", "address",
                 "gpus_per_trial", "cpus_per_trial"},
    "protocol.halving": {"rungs", "eta", "min_keep"},
    "protocol.seeds": {"count", "top"},
    "questions": {"ask"},
}


class StudyError(ValueError):
    """A study file that cannot be run; the message is one line."""


@dataclass(frozen=True)
class Halving:
    rungs: tuple[int, ...] = (1,)
    eta: int = 3
    min_keep: int = 1


@dataclass(frozen=True)
class Protocol:
    data: str
    epochs: int = 3
    batch: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    transform: str = "norm_flip"
    train_limit: int | None = None
    test_limit: int | None = None
    workers: int | str = 2  # or "auto": the CPU packing NNEval's probe measured fastest
    threads: int | None = None  # torch threads per trial (None: cores / workers)
    timeout: float = 900.0
    halving: Halving = field(default_factory=Halving)
    seeds: int = 3
    top: int = 10
    policies: str = "off"  # off: fp32, no checkpointing/channels_last/compile (reproducible); auto: NNEval's tuning
    device: str = "auto"
    executor: str = "local"  # or "ray" (address: a cluster; none: a local Ray)
    address: str | None = None
    gpus_per_trial: float | None = None
    cpus_per_trial: float = 1.0


@dataclass(frozen=True)
class StudySpec:
    path: Path  # the study.toml
    name: str
    description: str
    generator: str
    seed: int
    size: int
    min_level_count: int
    dimensions: dict  # dimension -> tuple of values (only those given; the rest keep the default space's)
    cells_per_pair: int
    protocol: Protocol
    questions: tuple[str, ...]

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def work(self) -> Path:
        """Everything the run rebuilds (models, results, DB): kept out of git."""
        return self.folder / "work"

    def data_dir(self) -> Path:
        raw = os.environ.get(DATA_ENV) or self.protocol.data
        p = Path(raw).expanduser()
        return p if p.is_absolute() else (self.folder / p).resolve()


def _where(section: str, key: str) -> str:
    return f"[{section}] {key}"


def _int(d: dict, section: str, key: str, default, lo: int = 1):
    v = d.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise StudyError(f"{_where(section, key)} = {v!r}: give an integer >= {lo}")
    return v


def _float(d: dict, section: str, key: str, default, lo: float, hi: float) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise StudyError(f"{_where(section, key)} = {v!r}: give a number in [{lo}, {hi}]")
    return float(v)


def _choice(d: dict, section: str, key: str, default: str, allowed: tuple[str, ...]) -> str:
    v = d.get(key, default)
    if v not in allowed:
        raise StudyError(f"{_where(section, key)} = {v!r}: choose from {', '.join(allowed)}")
    return v


def _unknown(d: dict, section: str) -> None:
    allowed = SECTIONS[section]
    for k in d:
        if k not in allowed:
            raise StudyError(f"[{section}] has an unknown key {k!r}: use one of {', '.join(sorted(allowed))}")


def _dimension(name: str, v) -> tuple:
    if not isinstance(v, list) or not v:
        raise StudyError(f"[space] {name} = {v!r}: give a non-empty list, e.g. {name} = "
                         f"{'[1, 2]' if name in INT_DIMS else '[64, 128]' if name == 'channels' else '[...]'}")
    if name == "channels":
        if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v):
            raise StudyError(f"[space] channels = {v!r}: give one schedule of positive integers, e.g. [8, 16, 32, 64]")
        return (tuple(v),)
    if name in INT_DIMS:
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise StudyError(f"[space] {name} = {v!r}: give integers, e.g. [1, 2, 3, 4]")
        return tuple(v)
    if name in FLOAT_DIMS:
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise StudyError(f"[space] {name} = {v!r}: give rates, e.g. [0.0, 0.15]")
        return tuple(float(x) for x in v)
    if name == "dropout":
        if not all(x == "larsson" or (isinstance(x, (int, float)) and not isinstance(x, bool)) for x in v):
            raise StudyError(f"[space] dropout = {v!r}: give rates and/or \"larsson\", e.g. [0.0, 0.2, \"larsson\"]")
        return tuple(x if x == "larsson" else float(x) for x in v)
    if not all(isinstance(x, str) for x in v):
        raise StudyError(f"[space] {name} = {v!r}: give names, e.g. {name} = [\"...\"] (see AlterNNFN --list-space)")
    return tuple(v)


def parse(raw: dict, path: Path) -> StudySpec:
    for k in raw:
        if k not in SECTIONS:
            raise StudyError(f"{path}: unknown section [{k}]: use {', '.join(f'[{s}]' for s in SECTIONS if '.' not in s)}")
    study = raw.get("study", {})
    space = raw.get("space", {})
    base = raw.get("baselines", {})
    prot = dict(raw.get("protocol", {}))
    halving = prot.pop("halving", {})
    seeds = prot.pop("seeds", {})
    ask = raw.get("questions", {})
    for d, s in ((study, "study"), (space, "space"), (base, "baselines"), (prot, "protocol"),
                 (halving, "protocol.halving"), (seeds, "protocol.seeds"), (ask, "questions")):
        if not isinstance(d, dict):
            raise StudyError(f"{path}: [{s}] must be a table")
        _unknown(d, s)
    name = study.get("name")
    if not isinstance(name, str) or not name:
        raise StudyError(f"{path}: [study] name is missing: add name = \"{path.parent.name}\"")
    if "data" not in prot or not isinstance(prot["data"], str):
        raise StudyError(f"{path}: [protocol] data is missing: give the CIFAR-10 folder, e.g. "
                         f"data = \"../../data/cifar-10-subset\" (relative to the study file)")
    epochs = _int(prot, "protocol", "epochs", 3)
    rungs = halving.get("rungs", [1])
    if not isinstance(rungs, list) or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in rungs) \
            or rungs != sorted(set(rungs)) or (rungs and rungs[-1] >= epochs):
        raise StudyError(f"[protocol.halving] rungs = {rungs!r}: give increasing epoch budgets below "
                         f"epochs = {epochs}, e.g. rungs = [1]")
    questions = ask.get("ask", list(QUESTIONS))
    if not isinstance(questions, list) or not all(q in QUESTIONS for q in questions):
        raise StudyError(f"[questions] ask = {questions!r}: choose from {', '.join(QUESTIONS)}")
    generator = space.get("generator", "stratified")
    if not isinstance(generator, str):
        raise StudyError(f"[space] generator = {generator!r}: give a generator name, e.g. \"stratified\"")
    return StudySpec(
        path=path, name=name, description=str(study.get("description", "")), generator=generator,
        seed=_int(space, "space", "seed", 0, lo=0), size=_int(space, "space", "size", 300),
        min_level_count=_int(space, "space", "min_level_count", 20, lo=0),
        dimensions={k: _dimension(k, space[k]) for k in DIMENSIONS if k in space},
        cells_per_pair=_int(base, "baselines", "cells_per_pair", 1, lo=0),
        protocol=Protocol(
            data=prot["data"], epochs=epochs, batch=_int(prot, "protocol", "batch", 32),
            lr=_float(prot, "protocol", "lr", 0.01, 0.0, 10.0), momentum=_float(prot, "protocol", "momentum", 0.9, 0.0, 1.0),
            transform=str(prot.get("transform", "norm_flip")),
            train_limit=_int(prot, "protocol", "train_limit", None), test_limit=_int(prot, "protocol", "test_limit", None),
            workers="auto" if prot.get("workers") == "auto" else _int(prot, "protocol", "workers", 2), threads=_int(prot, "protocol", "threads", None),
            timeout=_float(prot, "protocol", "timeout", 900.0, 1.0, 1e6),
            halving=Halving(tuple(rungs), _int(halving, "protocol.halving", "eta", 3, lo=2),
                            _int(halving, "protocol.halving", "min_keep", 1)),
            seeds=_int(seeds, "protocol.seeds", "count", 3), top=_int(seeds, "protocol.seeds", "top", 10, lo=0),
            policies=_choice(prot, "protocol", "policies", "off", ("off", "auto")),
            device=_choice(prot, "protocol", "device", "auto", ("auto", "cpu", "cuda")),
            executor=_choice(prot, "protocol", "executor", "local", ("local", "ray")),
            address=prot.get("address"),
            gpus_per_trial=None if prot.get("gpus_per_trial") is None else
            _float(prot, "protocol", "gpus_per_trial", 0.0, 0.0, 64.0),
            cpus_per_trial=_float(prot, "protocol", "cpus_per_trial", 1.0, 0.01, 1024.0)),
        questions=tuple(questions))


def load(path: Path) -> StudySpec:
    """Read and check a study file; StudyError (one line) on anything unusable."""
    path = Path(path)
    if path.is_dir():
        path = path / "study.toml"
    try:
        text = path.read_text()
    except OSError as e:
        raise StudyError(f"cannot read study file {path} ({e.strerror or e}); give the path of a study.toml") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise StudyError(f"{path} is not valid TOML ({e}); fix that line") from None
    return parse(raw, path.absolute())
