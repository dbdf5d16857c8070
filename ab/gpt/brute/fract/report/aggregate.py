"""Per-model aggregates over seeds: accuracy mean, std and 95% CI, and mean costs."""
from __future__ import annotations

import math

import pandas as pd

from .stats import summarize

AGG_COLS = ["n_seeds", "acc_n", "acc_mean", "acc_std", "acc_lo", "acc_hi", "acc_first_mean", "epochs_done",
            "train_loss_last", "epoch_time_s", "images_per_s", "peak_memory_mb"]


def usable_seeds(status: str, seeds: pd.DataFrame) -> pd.DataFrame:
    """The seeds a model's accuracy is computed from: its trained seeds when it trained (all seeds with
    results otherwise, e.g. for a run in progress or a failure that still logged epochs)."""
    with_results = seeds[seeds["epochs"] > 0]
    trained = with_results[with_results["status"] == "trained"]
    return trained if status == "trained" and len(trained) else with_results


def add_seed_aggregates(models: pd.DataFrame, seeds: pd.DataFrame) -> pd.DataFrame:
    by_model = dict(tuple(seeds.groupby("model", sort=False))) if len(seeds) else {}
    rows = []
    for _, m in models.iterrows():
        s = by_model.get(m["model"], seeds.iloc[0:0])
        use = usable_seeds(m["status"], s)
        acc = summarize(use["acc_last"])
        row = {"n_seeds": len(s), "acc_n": acc.n, "acc_mean": acc.mean, "acc_std": acc.std, "acc_lo": acc.lo,
               "acc_hi": acc.hi, "acc_first_mean": _mean(use["acc_first"]),
               "epochs_done": int(s["epochs"].max()) if len(s) else 0,
               "train_loss_last": _mean(use["train_loss_last"]), "epoch_time_s": _mean(use["epoch_time_s"]),
               "images_per_s": _mean(use["images_per_s"]), "peak_memory_mb": _mean(use["peak_memory_mb"])}
        # parameters and FLOPs: the manifest's, else what the runner measured
        for col in ("params", "flops"):
            if math.isnan(m.get(col, math.nan)) and len(s):
                row[col] = _mean(s[col])
        rows.append(row)
    extra = pd.DataFrame(rows, index=models.index, columns=AGG_COLS + ["params", "flops"])
    out = models.copy()
    for col in extra.columns:
        if col in ("params", "flops"):
            out[col] = extra[col].where(extra[col].notna(), out.get(col))
        else:
            out[col] = extra[col]
    return out


def _mean(values) -> float:
    v = pd.to_numeric(pd.Series(values, dtype=float), errors="coerce").dropna()
    return float(v.mean()) if len(v) else math.nan
