"""The report's tables as DataFrames (raw numbers; formatting is the HTML's job). Accuracy is a fraction
in [0, 1] here. A model's accuracy is its last-epoch validation accuracy, averaged over its seeds."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .load import FAILURES, FINISHED, PENDING, RUNNING, Results
from .stats import compare_to_best, summarize, welch, holm, ALPHA

GROUPS = ("all", "fractal", "plain")
FACTORS = ("depth", "columns", "width", "conv", "norm", "act", "order", "dropout", "join")


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    kind: str  # count, rate, acc, seconds, mb, number, text


def trained(models: pd.DataFrame) -> pd.DataFrame:
    return models[(models["status"] == "trained") & models["acc_mean"].notna()]


def _group(models: pd.DataFrame, group: str) -> pd.DataFrame:
    if group == "all" or "kind" not in models:
        return models
    return models[models["kind"] == group]


SUMMARY_METRICS = (
    Metric("generated", "models generated (valid)", "count"),
    Metric("evaluated", "models evaluated (finished)", "count"),
    Metric("running", "in progress (or interrupted)", "count"),
    Metric("in_db", "registered in the LEMUR DB", "count"),
    Metric("pending", "not yet evaluated", "count"),
    Metric("trained", "trained successfully", "count"),
    *(Metric(f, f"failed: {f}", "count") for f in FAILURES),
    Metric("success_rate", "success rate (trained / evaluated)", "rate"),
    Metric("acc_first_mean", "validation accuracy, first epoch: mean", "acc"),
    Metric("acc_mean", "validation accuracy: mean over models", "acc"),
    Metric("acc_std", "validation accuracy: std over models", "acc"),
    Metric("acc_ci", "validation accuracy: 95% CI of the mean", "acc_ci"),
    Metric("acc_median", "validation accuracy: median", "acc"),
    Metric("acc_max", "validation accuracy: max (best model)", "acc"),
    Metric("acc_max_ci", "best model: mean ± std over seeds [95% CI]", "acc_seed"),
    Metric("seed_std", "seed-to-seed std of accuracy (mean over models)", "acc"),
    Metric("epoch_time_s", "time per epoch: mean", "seconds"),
    Metric("peak_memory_mb", "peak memory: mean", "mb"),
    Metric("params_mean", "parameters: mean", "number"),
    Metric("params_max", "parameters: max", "number"),
    Metric("flops_mean", "FLOPs per image (forward): mean", "number"),
    Metric("flops_max", "FLOPs per image (forward): max", "number"),
)


def summary_values(models: pd.DataFrame, generated: int | None, db_read: bool = False) -> dict:
    """The summary metrics of one group of models (raw values; NaN when unknown)."""
    status = models["status"].value_counts()
    evaluated = int(status.reindex(list(FINISHED)).fillna(0).sum())
    ok = trained(models)
    acc = summarize(ok["acc_mean"])
    best = ok.loc[ok["acc_mean"].idxmax()] if len(ok) else None
    done = models[models["status"].isin(FINISHED)]
    v = {"generated": math.nan if generated is None else generated, "evaluated": evaluated,
         "running": int(status.get(RUNNING, 0)), "pending": int(status.get(PENDING, 0)),
         "in_db": int(models["in_db"].sum()) if db_read else math.nan,
         "trained": int(status.get("trained", 0)), **{f: int(status.get(f, 0)) for f in FAILURES},
         "success_rate": status.get("trained", 0) / evaluated if evaluated else math.nan,
         "acc_first_mean": summarize(ok["acc_first_mean"]).mean, "acc_mean": acc.mean, "acc_std": acc.std,
         "acc_ci": (acc.lo, acc.hi), "acc_median": float(ok["acc_mean"].median()) if len(ok) else math.nan,
         "acc_max": float(best["acc_mean"]) if best is not None else math.nan,
         "acc_max_ci": (best["acc_mean"], best["acc_std"], best["acc_lo"], best["acc_hi"], best["model"])
         if best is not None else None,
         "seed_std": summarize(ok["acc_std"]).mean,
         "epoch_time_s": summarize(done["epoch_time_s"]).mean,
         "peak_memory_mb": summarize(done["peak_memory_mb"]).mean,
         "params_mean": summarize(done["params"]).mean, "params_max": _max(done["params"]),
         "flops_mean": summarize(done["flops"]).mean, "flops_max": _max(done["flops"])}
    return v


def summary(results: Results) -> dict[str, dict]:
    """Summary values by group (all, fractal, plain); groups without models are left out."""
    m = results.models
    out = {}
    for g in GROUPS:
        sub = _group(m, g)
        if g != "all" and not len(sub):
            continue
        generated = int(sub["generated"].sum()) if results.generation else None
        out[g] = summary_values(sub, generated, results.db is not None)
    return out


def summary_frame(values: dict[str, dict]) -> pd.DataFrame:
    """The summary as a CSV-ready frame: one row per metric, one column per group."""
    rows = []
    for m in SUMMARY_METRICS:
        row = {"key": m.key, "metric": m.label}
        for g, v in values.items():
            x = v[m.key]
            if m.key == "acc_ci":
                x = f"{x[0]:.4f}..{x[1]:.4f}" if not any(map(math.isnan, x)) else ""
            elif m.key == "acc_max_ci":
                x = "" if x is None else f"{x[4]}: {x[0]:.4f} sd {x[1]:.4f} CI {x[2]:.4f}..{x[3]:.4f}"
            row[g] = x
        rows.append(row)
    return pd.DataFrame(rows)


def leaderboard(results: Results, top: int) -> pd.DataFrame:
    """The best `top` trained models with their specs, and Welch tests of #1 against each (Holm)."""
    ok = trained(results.models).sort_values(["acc_mean", "acc_n"], ascending=False).head(top)
    seeds = results.seeds
    groups = [(name, _seed_acc(seeds, name)) for name in ok["model"]]
    tests = {r["name"]: r for r in compare_to_best(groups)}
    board = ok.reset_index(drop=True).copy()
    board.insert(0, "rank", range(1, len(board) + 1))
    for col in ("diff", "p", "p_holm", "significant"):
        board[f"vs_best_{col}"] = [tests.get(n, {}).get(col, math.nan if col != "significant" else None)
                                   for n in board["model"]]
    return board


def _seed_acc(seeds: pd.DataFrame, model: str) -> list[float]:
    s = seeds[(seeds["model"] == model) & (seeds["epochs"] > 0)]
    ok = s[s["status"] == "trained"]
    return list((ok if len(ok) else s)["acc_last"])


def grid(results: Results) -> pd.DataFrame:
    """Accuracy over (N, columns) for trained fractal models: one row per cell."""
    ok = trained(results.models)
    ok = ok[ok.get("kind") == "fractal"] if "kind" in ok else ok.iloc[0:0]
    rows = []
    for (n, c), g in ok.groupby(["depth", "columns"]):
        s = summarize(g["acc_mean"])
        rows.append({"depth": int(n), "columns": int(c), "models": s.n, "acc_mean": s.mean, "acc_std": s.std,
                     "acc_lo": s.lo, "acc_hi": s.hi, "acc_max": float(g["acc_mean"].max())})
    return pd.DataFrame(rows, columns=["depth", "columns", "models", "acc_mean", "acc_std", "acc_lo",
                                       "acc_hi", "acc_max"])


def factors(results: Results) -> pd.DataFrame:
    """Mean accuracy with 95% CI per value of each layer-family and shape choice (trained fractal
    models), for every factor that takes two or more values in the sweep. Marginal means: other
    choices vary inside each group."""
    ok = trained(results.models)
    ok = ok[ok["kind"] == "fractal"] if "kind" in ok else ok.iloc[0:0]
    rows, partitions = [], []
    for f in FACTORS:
        if f not in ok or ok[f].nunique(dropna=True) < 2:
            continue
        part = sorted(sorted(g.index) for _, g in ok.groupby(f, dropna=True))
        if part in partitions:  # splits the models exactly as an earlier factor does (e.g. order vs norm)
            continue
        partitions.append(part)
        for value, g in ok.groupby(f, dropna=True):
            s = summarize(g["acc_mean"])
            rows.append({"factor": f, "value": _plain(value), "models": s.n, "acc_mean": s.mean,
                         "acc_std": s.std, "acc_lo": s.lo, "acc_hi": s.hi})
    return pd.DataFrame(rows, columns=["factor", "value", "models", "acc_mean", "acc_std", "acc_lo", "acc_hi"])


def baselines(results: Results, fractal: pd.Series) -> list[dict]:
    """The plain baselines of one fractal variant: plain networks with the same op layers, widths, pool
    and head (deepest column alone: plain_layers equal to its deepest path). Each with a Welch test
    against the variant, Holm-corrected over the variant's baselines."""
    m = results.models
    if "kind" not in m or "spec_key" not in m:
        return []
    plain = m[(m["kind"] == "plain") & (m["spec_key"] == fractal["spec_key"]) & (m["depth"] == fractal["depth"])]
    rows = []
    for _, p in plain.sort_values("plain_layers").iterrows():
        deepest = p["plain_layers"] == fractal["deepest_path"]
        t, pv = welch(_seed_acc(results.seeds, fractal["model"]), _seed_acc(results.seeds, p["model"]))
        rows.append({"fractal": fractal["model"], "baseline": p["model"], "plain_layers": int(p["plain_layers"]),
                     "role": "deepest column alone" if deepest else f"plain, {int(p['plain_layers'])} layers",
                     "status": p["status"], "acc_mean": p["acc_mean"], "acc_std": p["acc_std"],
                     "acc_lo": p["acc_lo"], "acc_hi": p["acc_hi"], "acc_n": p["acc_n"],
                     "diff": fractal["acc_mean"] - p["acc_mean"], "p": pv})
    for row, adj in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = adj
        row["significant"] = None if math.isnan(adj) else bool(adj < ALPHA)
    return rows


def baseline_frame(results: Results, top: int = 3) -> pd.DataFrame:
    ok = trained(results.models)
    ok = ok[ok["kind"] == "fractal"] if "kind" in ok else ok.iloc[0:0]
    rows = []
    for _, f in ok.sort_values("acc_mean", ascending=False).head(top).iterrows():
        rows.extend(baselines(results, f))
    return pd.DataFrame(rows, columns=["fractal", "baseline", "plain_layers", "role", "status", "acc_mean",
                                       "acc_std", "acc_lo", "acc_hi", "acc_n", "diff", "p", "p_holm",
                                       "significant"])


def failures(results: Results) -> pd.DataFrame:
    m = results.models
    bad = m[~m["status"].isin(("trained", PENDING))]
    return bad[["model", "status", "message", "epochs_done"]].reset_index(drop=True)


def _max(s: pd.Series) -> float:
    s = pd.to_numeric(s, errors="coerce").dropna()
    return float(s.max()) if len(s) else math.nan


def _plain(v):
    v = v.item() if isinstance(v, np.generic) else v
    return int(v) if isinstance(v, float) and v.is_integer() else v
