"""Read a sweep's results (NNEval's `new_lemur/` folder, optionally the generator's manifest and the LEMUR
DB) into three pandas DataFrames: one row per model, per (model, seed) and per (model, seed, epoch).

Tolerant by design: a still-running sweep has models with stat files but no run record yet ("running"),
and generated models with no results at all ("pending"); unreadable files are skipped with a warning.
Only when nothing at all can be read does it raise `ResultsError`, with a message that says what to do.
"""
from __future__ import annotations

import json
import math
import re
import sqlite3
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from ..lemur.stats import trial_figures
from ..space.spec import ArchSpec, SpecError
from ..space.registry import default_registry
from ..sweep.results import WORK
from ..util.dbfile import connect_existing
from .aggregate import add_seed_aggregates

FINISHED = ("trained", "diverged", "out-of-memory", "timed-out", "error")
FAILURES = FINISHED[1:]
RUNNING, PENDING = "running", "pending"
STAT_PREFIX = "img-classification_cifar-10_acc_"  # the paper's result folder prefix
MODEL_NAME = re.compile(r"^(FractalNet|PlainNet)_\w+$")  # the generator's names
SPEC_LINE = re.compile(r"^Spec: (\{.*\})\s*$", re.M)  # the generated file's docstring carries its spec

SPEC_COLS = ["kind", "depth", "columns", "plain_layers", "deepest_path", "width", "channels", "layers", "conv",
             "norm", "act", "order", "dropout", "join", "local_drop", "global_drop", "pool", "head", "spec_key"]
EPOCH_COLS = ["model", "seed", "epoch", "accuracy", "train_loss", "val_loss", "train_accuracy",
              "epoch_time_s", "images_per_s", "peak_memory_mb"]


class ResultsError(ValueError):
    """Results that cannot be read at all; the message says where and what to do."""


@dataclass
class Results:
    models: pd.DataFrame  # one row per model (evaluated, running or pending)
    seeds: pd.DataFrame  # one row per (model, seed)
    epochs: pd.DataFrame  # one row per (model, seed, epoch)
    generation: dict[str, int] = field(default_factory=dict)  # manifest counts: valid, invalid, duplicate
    warnings: list[str] = field(default_factory=list)
    results_dir: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)  # training defaults of the first run record
    db: Path | None = None  # the LEMUR DB that was read, if any


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def _read_json(path: Path, warnings: list[str], root: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        warnings.append(f"skipped {path.relative_to(root)}: unreadable ({e.__class__.__name__}: {e})")
        return None


# -- specs -----------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _slots() -> dict[str, str]:
    """Layer option name -> slot (conv, norm, act, drop), from the registry with plugins."""
    return {name: opt.slot for name, opt in default_registry().options.items()}


def spec_columns(spec: dict | None) -> dict[str, Any]:
    """Flat, human-readable columns of a spec dict; empty when there is no usable spec."""
    if not isinstance(spec, dict):
        return {}
    try:
        s = ArchSpec.from_dict(spec)
    except (SpecError, TypeError, ValueError):
        return {}
    slots = _slots()
    chosen = {slot: "none" for slot in ("conv", "norm", "act")}
    order = []
    for layer in s.layers:
        slot = slots.get(layer, "conv" if layer.startswith("conv") else "other")
        if slot in chosen:
            chosen[slot] = layer
            order.append(slot)
    deepest = s.plain_layers if s.kind == "plain" else s.depth * 2 ** (s.columns - 1)
    return {"kind": s.kind, "depth": s.depth, "columns": s.columns if s.kind == "fractal" else math.nan,
            "plain_layers": s.plain_layers if s.kind == "plain" else math.nan, "deepest_path": deepest,
            "width": s.channels[0], "channels": "-".join(map(str, s.channels)), "layers": " → ".join(s.layers),
            **chosen, "order": "-".join(order), "dropout": s.dropout,
            "join": s.join if s.kind == "fractal" and s.columns > 1 else "n/a",
            "local_drop": s.local_drop, "global_drop": s.global_drop, "pool": s.pool, "head": s.head,
            "spec_key": _match_key(s)}


def _match_key(s: ArchSpec) -> str:
    """What a fractal variant and its plain baselines share: the op's layers, widths, pool and head."""
    return json.dumps([list(s.layers), s.dropout, list(s.channels), s.pool, s.head])


def _spec_from_code(path: Path) -> dict | None:
    try:
        m = SPEC_LINE.search(path.read_text(errors="replace")[:4000])
        return json.loads(m.group(1)) if m else None
    except (OSError, json.JSONDecodeError):
        return None


# -- sources ---------------------------------------------------------------------------------------
def _epoch_row(model: str, seed: Any, e: dict) -> dict:
    return {"model": model, "seed": seed, "epoch": int(_num(e.get("epoch")) if not math.isnan(
        _num(e.get("epoch"))) else 0), **{k: _num(e.get(k)) for k in EPOCH_COLS[3:]}}


def read_runs(root: Path, warnings: list[str]) -> dict[str, dict]:
    """runs/<Model>.json records by model name; malformed ones are skipped with a warning."""
    out: dict[str, dict] = {}
    for path in sorted((root / "runs").glob("*.json")):
        rec = _read_json(path, warnings, root)
        if rec is None:
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("seeds", []), list):
            warnings.append(f"skipped {path.relative_to(root)}: not a run record (expected an object with "
                            f"'name', 'status' and a 'seeds' list)")
            continue
        rec.setdefault("name", path.stem)
        out[str(rec["name"])] = rec
    return out


def read_stats(root: Path, warnings: list[str]) -> dict[str, dict[int, list]]:
    """stat/train/<task>_<dataset>_<metric>_<Model>/<epoch>.json trials, by model and epoch."""
    out: dict[str, dict[int, list]] = {}
    base = root / "stat" / "train"
    if not base.is_dir():
        return out
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        parts = folder.name.split("_", 3)
        model = parts[3] if len(parts) == 4 else folder.name
        for path in folder.glob("*.json"):
            if not path.stem.isdigit():
                continue
            trials = _read_json(path, warnings, root)
            if trials is None:
                continue
            if not isinstance(trials, list) or not all(isinstance(t, dict) for t in trials):
                warnings.append(f"skipped {path.relative_to(root)}: expected a list of trial objects")
                continue
            out.setdefault(model, {})[int(path.stem)] = trials
    return out


def _seeds_from_trials(model: str, by_epoch: dict[int, list]) -> list[dict]:
    """Rebuild seed records from LEMUR stat trials (a run still in progress has only these)."""
    seeds: dict[Any, dict] = {}
    for epoch in sorted(by_epoch):
        for i, t in enumerate(by_epoch[epoch]):
            t = trial_figures(t)  # our block's figures too (lemur/stats.py)
            seed = t.get("seed", i)
            ts = t.get("train_stat") if isinstance(t.get("train_stat"), dict) else {}
            dur = _num(t.get("epoch_time_s"))  # NNEval's; nn-dataset's duration may count from the start
            if math.isnan(dur):
                dur = _num(t.get("duration")) / 1e9
            mem = _num(t.get("peak_memory_mb"))
            seeds.setdefault(seed, {"seed": seed, "status": RUNNING, "message": "", "epochs": []})["epochs"].append({
                "epoch": epoch, "accuracy": t.get("accuracy"), "train_loss": ts.get("train_loss"),
                "val_loss": ts.get("test_loss"), "train_accuracy": ts.get("train_accuracy"),
                "epoch_time_s": dur, "images_per_s": t.get("images_per_s", ts.get("samples_per_second")),
                "peak_memory_mb": mem})
            seeds[seed]["epoch_max"] = t.get("epoch_max")
    return list(seeds.values())


def read_manifest(folder: Path | None, warnings: list[str]) -> tuple[dict[str, dict], dict[str, int]]:
    """Generator manifest records by model name (last record wins) and counts by status."""
    if folder is None:
        return {}, {}
    path = Path(folder) / "manifest.jsonl"
    if not path.is_file():
        warnings.append(f"no generator manifest at {path}: the number of generated models is unknown")
        return {}, {}
    recs: dict[str, dict] = {}
    for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            rec = json.loads(line)
            recs[rec.get("spec_hash") or rec["name"]] = rec
        except (ValueError, KeyError, TypeError, AttributeError):
            warnings.append(f"skipped line {i} of {path}: not a manifest record")
    by_name = {r["name"]: r for r in recs.values() if "name" in r}
    counts: dict[str, int] = {}
    for r in by_name.values():
        counts[str(r.get("status"))] = counts.get(str(r.get("status")), 0) + 1
    return by_name, counts


def read_db(path: Path, names: set[str] | None) -> tuple[dict[str, list[dict]], set[str]]:
    """LEMUR DB stat rows as seed records (one per repeat of a hyperparameter set) and the registered models.
    Without `names`, takes the generator's models (names starting FractalNet/PlainNet)."""
    if not Path(path).is_file():
        raise ResultsError(f"LEMUR database {path} does not exist; drop --db or point it at db/ab.nn.db")
    try:
        con = connect_existing(path)
        try:
            rows = con.execute(
                "SELECT s.nn, s.prm, s.epoch, s.accuracy, s.duration, t.train_loss, t.test_loss, "
                "t.train_accuracy, t.samples_per_second, t.epoch_max FROM stat s "
                "LEFT JOIN train_stat t ON t.stat_id = s.id "
                "WHERE s.nn LIKE 'FractalNet%' OR s.nn LIKE 'PlainNet%' OR s.nn IN (SELECT value FROM json_each(?)) "
                "ORDER BY s.rowid",
                (json.dumps(sorted(names or [])),)).fetchall()
        finally:
            con.close()
    except sqlite3.Error as e:
        raise ResultsError(f"cannot read LEMUR database {path}: {e}") from None
    seeds: dict[str, dict[Any, dict]] = {}
    seen: dict[tuple, int] = {}  # repeats of one hyperparameter set (seeds share nn-dataset's uid) per epoch
    for nn, prm, epoch, acc, dur, tl, vl, ta, ips, emax in rows:
        k = seen[(nn, prm, epoch)] = seen.get((nn, prm, epoch), -1) + 1
        s = seeds.setdefault(nn, {}).setdefault((prm, k), {"seed": len(seeds[nn]), "status": RUNNING, "message": "",
                                                           "epochs": [], "epoch_max": emax})
        s["epochs"].append({"epoch": epoch, "accuracy": acc, "train_loss": tl, "val_loss": vl,
                            "train_accuracy": ta, "epoch_time_s": _num(dur) / 1e9, "images_per_s": ips})
    for by_prm in seeds.values():  # a trial that reached its epoch_max is complete
        for s in by_prm.values():
            last = max((_num(e["epoch"]) for e in s["epochs"]), default=0)
            if s.get("epoch_max") and last >= _num(s["epoch_max"]):
                s["status"] = "trained"
    return {nn: list(v.values()) for nn, v in seeds.items()}, set(seeds)


# -- assembly --------------------------------------------------------------------------------------
def load_results(results_dir: Path, models_dir: Path | None = None, db: Path | None = None) -> Results:
    """Everything known about a sweep. Raises ResultsError only when there is nothing to report."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ResultsError(f"results folder {root} does not exist: run NNEval first "
                           f"(python -m ab.gpt.NNEval --results {root}) or pass --results DIR")
    warnings: list[str] = []
    runs = read_runs(root, warnings)
    stats = read_stats(root, warnings)
    manifest, gen_counts = read_manifest(models_dir, warnings)
    db_seeds, in_db = read_db(db, set(runs) | set(stats) | set(manifest)) if db else ({}, set())

    work = root / WORK
    working = sorted(p.name for p in work.iterdir()
                     if p.is_dir() and (p.name in manifest or MODEL_NAME.match(p.name))) if work.is_dir() else []
    names = list(dict.fromkeys([*runs, *stats, *db_seeds, *working]))
    if not names:
        hint = f" ({len(warnings)} unreadable: {warnings[0]})" if warnings else ""
        raise ResultsError(f"no results in {root}{hint}: expected runs/<Model>.json or "
                           f"stat/train/{STAT_PREFIX}<Model>/<epoch>.json, as NNEval writes them")
    model_rows, seed_rows, epoch_rows = [], [], []
    config: dict = {}
    for name in names:
        if name in runs:
            rec, source = runs[name], "runs"
            seeds = [s for s in rec.get("seeds") or [] if isinstance(s, dict)]
            status = str(rec.get("status") or RUNNING)
            config = config or (rec.get("config") if isinstance(rec.get("config"), dict) else {})
        else:
            rec, source = {}, "stat" if name in stats else "db" if name in db_seeds else "work"
            seeds = _seeds_from_trials(name, stats[name]) if name in stats else db_seeds.get(name, [])
            finished = seeds and all(s["status"] == "trained" for s in seeds)
            status = "trained" if (source == "db" and finished) else RUNNING
        spec = rec.get("spec") or (manifest.get(name) or {}).get("spec")
        if not spec and (root / "nn" / f"{name}.py").is_file():
            spec = _spec_from_code(root / "nn" / f"{name}.py")
        gen = manifest.get(name) or {}
        for i, s in enumerate(seeds):
            seed = s.get("seed", i)
            eps = [_epoch_row(name, seed, e) for e in s.get("epochs") or [] if isinstance(e, dict)]
            eps.sort(key=lambda e: e["epoch"])
            epoch_rows.extend(eps)
            sstatus = str(s.get("status") or status)
            seed_rows.append({
                "model": name, "seed": seed, "status": sstatus, "message": str(s.get("message") or ""),
                "epochs": len(eps), "acc_first": eps[0]["accuracy"] if eps else math.nan,
                "acc_last": eps[-1]["accuracy"] if eps else math.nan,
                "train_loss_last": eps[-1]["train_loss"] if eps else math.nan,
                "epoch_time_s": _mean(e["epoch_time_s"] for e in eps),
                "images_per_s": _mean(e["images_per_s"] for e in eps),
                "peak_memory_mb": max((e["peak_memory_mb"] for e in eps if not math.isnan(e["peak_memory_mb"])),
                                      default=math.nan),
                "params": _num(s.get("params", gen.get("params"))), "flops": _num(s.get("flops", gen.get("flops"))),
            })
        model_rows.append({"model": name, "status": status, "message": str(rec.get("message") or ""),
                           "source": source, "in_db": name in in_db, "generated": gen.get("status") == "valid",
                           **spec_columns(spec),
                           "params": _num(gen.get("params")), "flops": _num(gen.get("flops"))})
    for name, gen in manifest.items():  # generated, not (yet) evaluated
        if gen.get("status") == "valid" and name not in names:
            model_rows.append({"model": name, "status": PENDING, "message": "", "source": "manifest",
                               "in_db": False, "generated": True, **spec_columns(gen.get("spec")),
                               "params": _num(gen.get("params")), "flops": _num(gen.get("flops"))})

    models = pd.DataFrame(model_rows)
    for col in SPEC_COLS:  # models without a readable spec still get every column
        if col not in models:
            models[col] = math.nan
    models["kind"] = [k if isinstance(k, str) else _kind_from_name(n) for k, n in zip(models["kind"], models["model"])]
    seeds_df = pd.DataFrame(seed_rows, columns=["model", "seed", "status", "message", "epochs", "acc_first",
                                                "acc_last", "train_loss_last", "epoch_time_s", "images_per_s",
                                                "peak_memory_mb", "params", "flops"])
    epochs = pd.DataFrame(epoch_rows, columns=EPOCH_COLS)

    models = add_seed_aggregates(models, seeds_df)
    return Results(models, seeds_df, epochs, gen_counts, warnings, root, config or {}, db)


def _kind_from_name(name: str) -> str:
    return "plain" if name.startswith("PlainNet") else "fractal" if name.startswith("FractalNet") else "other"


def _mean(values) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan
