"""Per-epoch stat JSON exactly as nn-dataset's trainer writes it, plus our measurements where its importer
does not turn them into hyperparameters.

    <out>/stat/train/img-classification_cifar-10_acc_<Model>/<epoch>.json

holds a list of trials (one per seed that finished the epoch), sorted by accuracy, best first, as
nn-dataset's `ab.nn.util.db.Calc.save_results` keeps them. Each trial has nn-dataset's keys, in its order
(the first group sorted by name, as its `merge_prm` leaves them):

    the hyperparameters (prm): lr, momentum, [dropout | block_dropout], epoch_max, batch, transform;
    uid (nn-dataset's uuid4 of the prm dict in its trainer's order: lr, momentum, [dropout], epoch_max,
    batch, transform), duration (ns since the trial started), duration_seconds, accuracy, metric_acc,
    train_stat {train_loss, test_loss, train_accuracy, gradient_norm, samples_per_second, best_accuracy,
                best_epoch, epoch_max, cpu_count, cpu_type, cpu_usage_percent, total_ram_kb, occupied_ram_kb,
                ram_usage_percent, gpu_type, gpu_memory_kb, gpu_total_memory_kb, occupied_gpu_memory_kb,
                gpu_memory_usage_percent};
    then task, dataset, metric, model,

and ours under one key, `nn_gpt_fractal` (a dict: nn-dataset's JSON import drops dict values, so none of
it becomes a hyperparameter): seed, the driver's decisions (device, amp, checkpointing, channels_last),
wall_s (the driver's wall time of the epoch), params and flops (from the trusted template render when
the model file is byte-identical to it, else null), budget (the cgroup/seccomp limits the trial ran under
and what the kernel counted), `policies` (what the sweep's auto policies decided, with the reason and the
figures behind each, `tune/policies.py`) and `self_reported`: every figure measured inside the jail, where
the model code ran, by name (train_loss, train_accuracy, gradient_norm, images_per_s, peak_memory_mb,
epoch_time_s, train_time_s, and params, amp and checkpointing when the jail decided them).

Provenance: duration, accuracy, test_loss, best_accuracy, best_epoch, samples_per_second (training images
the driver configured over its wall time of the epoch) and the machine fields are the driver's. nn-dataset's
train_stat columns train_loss, train_accuracy and gradient_norm would hold the model's own claims, so they
are null here; the claims sit under `self_reported` (docs/security.md).

The prm keys are what the model uses: lr and momentum (the template's supported_hyperparameters()),
batch, epoch_max and transform (the trainer's), and the dropout the model applies, from its spec: `dropout`
(one rate) or `block_dropout` (per-block rates as text "0,0.2,0.4", since a list is not a prm value);
neither when the model has no dropout. Seeds share the uid (nn-dataset's uid depends on prm only).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ..util.atomic import write_text

from .names import DATASET, METRIC, TASK, config_name
from .system import FIELDS as SYSTEM_FIELDS

EXTRA = "nn_gpt_fractal"
SELF_REPORTED = ("train_loss", "train_accuracy", "gradient_norm", "images_per_s", "peak_memory_mb", "epoch_time_s",
                 "train_time_s")


def stat_dir(out: Path, name: str) -> Path:
    return Path(out) / "stat" / "train" / config_name(name)


def uuid4(obj) -> str:
    """nn-dataset's `uuid4`: md5 of the object's text without whitespace (not an RFC uuid)."""
    return hashlib.md5(re.sub(r"\s", "", str(obj)).encode()).hexdigest()


def model_dropout(spec: dict | None) -> dict:
    """The prm entry for the dropout the built model applies ({} without dropout or without a spec)."""
    if not spec or "dropout" not in spec.get("layers", ()):
        return {}
    if spec.get("block_dropout"):
        return {"block_dropout": ",".join(f"{p:g}" for p in spec["block_dropout"])}
    return {"dropout": float(spec["dropout"])}


def trial_prm(config: dict, spec: dict | None) -> dict:
    """The hyperparameters of a trial, in nn-dataset's trainer order."""
    return {"lr": config["lr"], "momentum": config["momentum"], **model_dropout(spec),
            "epoch_max": config["epochs"], "batch": config["batch"], "transform": config["transform"]}


def finished_epochs(seed_result: dict) -> list[dict]:
    """Epochs that completed with finite numbers (what goes to stat JSON and the DB)."""
    return [e for e in seed_result.get("epochs", []) if e.get("accuracy") is not None and e.get("train_loss") is not None]


def _train_stat(e: dict, best_acc: float, best_epoch: int, epochs: int) -> dict:
    system = e.get("system") or {}
    return {"train_loss": None, "test_loss": e.get("val_loss"), "train_accuracy": None, "gradient_norm": None,
            "samples_per_second": e.get("samples_per_second"), "best_accuracy": best_acc,
            "best_epoch": best_epoch, "epoch_max": epochs, **{k: system.get(k) for k in SYSTEM_FIELDS}}


def stat_trials(name: str, config: dict, seeds: list[dict], spec: dict | None = None) -> dict[int, list[dict]]:
    """{epoch: [trial per seed]} in nn-dataset's stat JSON format (see the module docstring).

    config: lr, momentum, batch, epochs, transform, amp, checkpointing, device (channels_last optional).
    seeds: the sweep's per-seed results (evaluate.seed_result): seed, params, flops, device, amp, checkpointing,
    channels_last, budget, self_reported {claims} and epochs [{epoch, accuracy, val_loss, duration_ns, wall_s,
    samples_per_second (the driver's), the self-reported train_loss, train_accuracy, gradient_norm,
    epoch_time_s, train_time_s, images_per_s, peak_memory_mb, and system {the train_stat machine fields}}]."""
    prm = trial_prm(config, spec)
    uid = uuid4(prm)
    out: dict[int, list[dict]] = {}
    for s in seeds:
        best_acc, best_epoch = 0.0, 0
        for e in finished_epochs(s):
            if e["accuracy"] > best_acc:
                best_acc, best_epoch = e["accuracy"], e["epoch"]
            duration = int(e["duration_ns"])
            claims = {k: e.get(k) for k in SELF_REPORTED}
            claims.update(s.get("self_reported") or {})
            extra = {"seed": s["seed"], "device": s.get("device", config["device"]),
                     "amp": s.get("amp", config["amp"]), "checkpointing": s.get("checkpointing", config["checkpointing"]),
                     "channels_last": s.get("channels_last", config.get("channels_last", False)),
                     "wall_s": e.get("wall_s"), "params": s.get("params"), "flops": s.get("flops"),
                     "budget": s.get("budget") or {}, "self_reported": claims}
            if s.get("policies"):  # what the auto policies decided for this trial, and why
                extra["policies"] = s["policies"]
            trial = dict(sorted({  # nn-dataset's merge_prm sorts these keys
                **prm, "uid": uid, "duration": duration, "duration_seconds": round(duration / 1e9, 2),
                "accuracy": e["accuracy"], "train_stat": _train_stat(e, best_acc, best_epoch, config["epochs"]),
                f"metric_{METRIC}": e["accuracy"]}.items()))
            out.setdefault(e["epoch"], []).append(
                {**trial, "task": TASK, "dataset": DATASET, "metric": METRIC, "model": name, EXTRA: extra})
    for trials in out.values():
        trials.sort(key=lambda t: (-t["accuracy"], t[EXTRA]["seed"]))
    return out


def trial_figures(trial: dict) -> dict:
    """A stat trial read back with our block's figures beside nn-dataset's keys: the driver's, and where the
    driver has none the trial's own claims (`self_reported`: images/s, peak memory, epoch times)."""
    ours = trial.get(EXTRA)
    if not isinstance(ours, dict):
        return dict(trial)
    claims = ours.get("self_reported") if isinstance(ours.get("self_reported"), dict) else {}
    return {**claims, **trial, **{k: v for k, v in ours.items() if k != "self_reported"}}


def importable(trial: dict) -> dict:
    """A trial as nn-dataset's JSON import hands it to `save_stat`: values that are dicts or lists are
    dropped, train_stat is kept (ab.nn.util.db.Write.json_train_to_db)."""
    out = {k: v for k, v in trial.items() if not isinstance(v, (dict, list))}
    if isinstance(trial.get("train_stat"), dict) and trial["train_stat"]:
        out["train_stat"] = trial["train_stat"]
    return out


def write_stat_files(out: Path, name: str, trials: dict[int, list[dict]]) -> None:
    """One `<epoch>.json` per epoch, atomically, as nn-dataset writes them (keys in its order, indent 4)."""
    for epoch, items in sorted(trials.items()):
        write_text(stat_dir(out, name) / f"{epoch}.json", json.dumps(items, indent=4))
