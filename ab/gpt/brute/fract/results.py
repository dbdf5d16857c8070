"""The files an evaluation sweep leaves under `new_lemur/` (all written atomically), and how to read them.

    new_lemur/nn/<Model>.py                      model code (models with at least one finished epoch)
    new_lemur/stat/train/img-classification_cifar-10_acc_<Model>/<epoch>.json
        nn-dataset's per-epoch format: a list with one trial dict per seed that finished the epoch:
        accuracy, batch, lr, momentum, dropout, duration (ns since the trial started), duration_seconds,
        epoch_max, transform, uid (distinct per seed), task, dataset, metric, model,
        train_stat {train_loss, test_loss, train_accuracy, gradient_norm, samples_per_second,
                    best_accuracy, best_epoch, epoch_max},
        and ours: peak_memory_mb, images_per_s, epoch_time_s, amp, checkpointing, channels_last, seed, device.
    new_lemur/runs/<Model>.json                  one model's outcome (written last: its presence = done):
        {"name", "status", "message",
         "seeds": [{"seed", "status", "message", "params", "flops",
                    "epochs": [{"epoch", "accuracy", "train_loss", "val_loss", "train_accuracy",
                                "epoch_time_s", "images_per_s", "peak_memory_mb"}]}],
         "spec" (the generator's spec dict, or null), "config" {lr, momentum, batch, epochs, transform,
         amp, checkpointing, device}}
        status is one of trained, diverged, out-of-memory, timed-out, error; the model's status is
        "trained" when every seed trained, else that of its first seed that did not. Numbers that were
        not finite are null; a diverged seed's last epoch has null losses/accuracy.
    new_lemur/summary.json                       the whole result set and the last run:
        {"models", "trials", "counts" {status: models}, "success_rate" (trained / models),
         "train_time_s" (sum of epoch times), "updated", "last_run" {"evaluated", "skipped", "counts",
         "success_rate", "wall_s", "config", "db"}}
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from .atomic import write_json, write_text
from .space.spec import result_name

STATUSES = ("trained", "diverged", "out-of-memory", "timed-out", "error", "killed")  # killed: retried next run
TASK, DATASET, METRIC = "img-classification", "cifar-10", "acc"
EPOCH_KEYS = ("epoch", "accuracy", "train_loss", "val_loss", "train_accuracy", "epoch_time_s", "images_per_s",
              "peak_memory_mb")
CONFIG_KEYS = ("lr", "momentum", "batch", "epochs", "transform", "amp", "checkpointing", "device")


def runs_dir(out: Path) -> Path:
    return Path(out) / "runs"


def run_file(out: Path, name: str) -> Path:
    return runs_dir(out) / f"{name}.json"


def stat_dir(out: Path, name: str) -> Path:
    return Path(out) / "stat" / "train" / result_name(name, TASK, DATASET, METRIC)


def model_status(seeds: list[dict]) -> tuple[str, str]:
    for s in seeds:
        if s["status"] != "trained":
            return s["status"], f"seed {s['seed']}: {s['message']}" if len(seeds) > 1 else s["message"]
    return "trained", ""


def trial_prm(config: dict, seed: int) -> dict:
    """The hyperparameters of one trial, as nn-dataset stores them in its prm table."""
    return {"lr": config["lr"], "momentum": config["momentum"], "dropout": config["dropout"],
            "batch": config["batch"], "epoch": config["epochs"], "transform": config["transform"], "seed": seed}


def trial_uid(name: str, prm: dict) -> str:
    return hashlib.md5(json.dumps({"nn": name, **prm}, sort_keys=True).encode()).hexdigest()


def finished_epochs(seed_result: dict) -> list[dict]:
    """Epochs that completed with finite numbers (what goes to stat JSON and the DB)."""
    return [e for e in seed_result.get("epochs", []) if e.get("accuracy") is not None and e.get("train_loss") is not None]


def stat_trials(name: str, config: dict, seeds: list[dict]) -> dict[int, list[dict]]:
    """{epoch: [trial dict per seed]} in nn-dataset's stat JSON format plus our keys."""
    out: dict[int, list[dict]] = {}
    for s in seeds:
        prm = trial_prm(config, s["seed"])
        best_acc, best_epoch = -1.0, 0
        for e in finished_epochs(s):
            if e["accuracy"] > best_acc:
                best_acc, best_epoch = e["accuracy"], e["epoch"]
            duration = int(e.get("duration_ns") or e["epoch_time_s"] * 1e9)
            out.setdefault(e["epoch"], []).append({
                "accuracy": e["accuracy"], "batch": config["batch"], "lr": config["lr"],
                "momentum": config["momentum"], "dropout": config["dropout"], "duration": duration,
                "duration_seconds": round(duration / 1e9, 2), "epoch_max": config["epochs"],
                "transform": config["transform"], "uid": trial_uid(name, prm), "task": TASK, "dataset": DATASET,
                "metric": METRIC, "model": name,
                "train_stat": {"train_loss": e["train_loss"], "test_loss": e["val_loss"],
                               "train_accuracy": e["train_accuracy"], "gradient_norm": e.get("gradient_norm"),
                               "samples_per_second": e["images_per_s"], "best_accuracy": best_acc,
                               "best_epoch": best_epoch, "epoch_max": config["epochs"],
                               # measured by the jailed model process itself, unverified (test figures
                               # are computed by the driver from the logits)
                               "self_reported": ["train_loss", "train_accuracy", "gradient_norm",
                                                 "samples_per_second"]},
                "peak_memory_mb": e["peak_memory_mb"], "images_per_s": e["images_per_s"],
                "epoch_time_s": e["epoch_time_s"], "amp": s.get("amp", config["amp"]),
                "checkpointing": s.get("checkpointing", config["checkpointing"]),
                "channels_last": s.get("channels_last", config.get("channels_last", False)),
                "seed": s["seed"], "device": s.get("device", config["device"])})
    return out


def run_record(name: str, seeds: list[dict], spec: dict | None, config: dict, flops: int | None) -> dict:
    status, message = model_status(seeds)
    return {"name": name, "status": status, "message": message, "spec": spec,
            "config": {k: config[k] for k in CONFIG_KEYS},
            "seeds": [{"seed": s["seed"], "status": s["status"], "message": s["message"],
                       "params": s.get("params"), "flops": flops,
                       "epochs": [{k: e.get(k) for k in EPOCH_KEYS} for e in s.get("epochs", [])]}
                      for s in seeds]}


def write_model(out: Path, name: str, code: str, spec: dict | None, config: dict, seeds: list[dict],
                flops: int | None = None) -> dict:
    """Write one finished model's files; runs/<Model>.json goes last. Returns the run record."""
    trials = stat_trials(name, config, seeds)
    if trials:
        write_text(Path(out) / "nn" / f"{name}.py", code)
        for epoch, items in sorted(trials.items()):
            write_json(stat_dir(out, name) / f"{epoch}.json", items)
    record = run_record(name, seeds, spec, config, flops)
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
