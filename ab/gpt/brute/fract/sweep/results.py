"""The run records and the summary an evaluation sweep leaves under `new_lemur/` (all written atomically),
and how to read them. The LEMUR files themselves (model code, per-epoch stat JSON) are `lemur/stats.py`'s:

    new_lemur/nn/<Model>.py                      model code (models with at least one finished epoch)
    new_lemur/stat/train/img-classification_cifar-10_acc_<Model>/<epoch>.json   (see lemur/stats.py)
    new_lemur/runs/<Model>.json                  one model's outcome (written last: its presence = done):
        {"name", "status", "message",
         "seeds": [{"seed", "status", "message", "params", "flops",
                    "epochs": [{"epoch", "accuracy", "train_loss", "val_loss", "train_accuracy",
                                "epoch_time_s", "images_per_s", "peak_memory_mb"}]}],
         "spec" (the generator's spec dict, or null), "config" {lr, momentum, batch, epochs, transform,
         amp, checkpointing, device},
         "schedule" (only under --schedule halving: where and why the model stopped, sweep/halving_sweep.py)}
        status is one of trained, diverged, out-of-memory, timed-out, error; the model's status is
        "trained" when every seed trained, else that of its first seed that did not. Numbers that were
        not finite are null; a diverged seed's last epoch has null losses/accuracy.
    new_lemur/summary.json                       the whole result set and the last run:
        {"models", "trials", "counts" {status: models}, "success_rate" (trained / models),
         "train_time_s" (sum of epoch times), "updated", "last_run" {"evaluated", "skipped", "counts",
         "success_rate", "wall_s", "config", "db"}}
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..util.atomic import write_json, write_text
from ..lemur.stats import stat_trials, write_stat_files

STATUSES = ("trained", "diverged", "out-of-memory", "timed-out", "error", "killed")  # killed: retried next run
EPOCH_KEYS = ("epoch", "accuracy", "train_loss", "val_loss", "train_accuracy", "epoch_time_s", "images_per_s",
              "peak_memory_mb")
CONFIG_KEYS = ("lr", "momentum", "batch", "epochs", "transform", "amp", "checkpointing", "device")
WORK = ".work"  # the sweep's folder of unfinished trials, one subfolder per model


def runs_dir(out: Path) -> Path:
    return Path(out) / "runs"


def run_file(out: Path, name: str) -> Path:
    return runs_dir(out) / f"{name}.json"


def model_status(seeds: list[dict]) -> tuple[str, str]:
    for s in seeds:
        if s["status"] != "trained":
            return s["status"], f"seed {s['seed']}: {s['message']}" if len(seeds) > 1 else s["message"]
    return "trained", ""


def run_record(name: str, seeds: list[dict], spec: dict | None, config: dict, flops: int | None,
               schedule: dict | None = None) -> dict:
    status, message = model_status(seeds)
    return {**({"schedule": schedule} if schedule is not None else {}), "name": name, "status": status,
            "message": message, "spec": spec,
            "config": {k: config[k] for k in CONFIG_KEYS},
            "seeds": [{"seed": s["seed"], "status": s["status"], "message": s["message"],
                       # the template's count for a trusted render, else the jail's own (reports and studies
                       # read it; the stat JSON and the DB keep only the former, docs/security.md)
                       "params": s.get("params") if s.get("params") is not None
                       else (s.get("self_reported") or {}).get("params"), "flops": flops,
                       "epochs": [{k: e.get(k) for k in EPOCH_KEYS} for e in s.get("epochs", [])]}
                      for s in seeds]}


def write_model(out: Path, name: str, code: str, spec: dict | None, config: dict, seeds: list[dict],
                flops: int | None = None, schedule: dict | None = None) -> dict:
    """Write one finished model's files; runs/<Model>.json goes last. Returns the run record."""
    trials = stat_trials(name, config, seeds, spec)
    if trials:
        write_text(Path(out) / "nn" / f"{name}.py", code)
        write_stat_files(out, name, trials)
    record = run_record(name, seeds, spec, config, flops, schedule)
    write_json(run_file(out, name), record)
    return record


def load_run(out: Path, name: str) -> dict | None:
    path = run_file(out, name)
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("status") in STATUSES else None


def load_runs(new_lemur_dir: Path) -> list[dict]:
    """Every model's run record under new_lemur_dir/runs, sorted by name (unreadable files are skipped)."""
    folder = runs_dir(new_lemur_dir)
    if not folder.is_dir():
        return []
    recs = (load_run(new_lemur_dir, p.stem) for p in sorted(folder.glob("*.json")))
    return [r for r in recs if r is not None]


def counts(records: list[dict]) -> dict[str, int]:
    c = {s: 0 for s in STATUSES}
    for r in records:
        c[r["status"]] = c.get(r["status"], 0) + 1
    return c


def success_rate(records: list[dict]) -> float | None:
    return round(sum(r["status"] == "trained" for r in records) / len(records), 4) if records else None


def write_summary(out: Path, last_run: dict) -> dict:
    records = load_runs(out)
    epochs = [e for r in records for s in r["seeds"] for e in s["epochs"]]
    summary = {"models": len(records), "trials": sum(len(r["seeds"]) for r in records),
               "counts": counts(records), "success_rate": success_rate(records),
               "train_time_s": round(sum(e.get("epoch_time_s") or 0 for e in epochs), 1),
               "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "last_run": last_run}
    write_json(Path(out) / "summary.json", summary)
    return summary
