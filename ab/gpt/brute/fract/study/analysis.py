"""The study's answers, computed from results.csv alone: one finding per question, each with an effect size,
a 95% CI and a test corrected for multiple comparisons (Holm), in a plain sentence.

    dimensions       each level of each dimension vs the dimension's first level: difference in mean
                     accuracy after the first rung (every sampled model has it), bootstrap 95% CI, Welch's
                     t-test, Holm over all levels of all dimensions
    failures         the same for the share of failed models (not trained, or at chance: accuracy <= CHANCE),
                     Fisher's exact test, Holm
    depth_columns    mean accuracy per (N, C) cell with its CI (rows N, columns C: the paper's Table 2 layout)
                     and the F-test of the N x C interaction against the additive model
    fractal_vs_plain each pair's fractal model vs its depth- and its parameter-matched plain twin over seeds
                     (Welch, Holm), and the mean of the per-pair differences (t CI)
    deepest_column   the pairs' fractal models scored with all columns vs the deepest column alone: the same
                     trained weights (same seed), so paired differences (t CI, Wilcoxon signed-rank test)
    rung_rank        Spearman correlation of first-rung and final accuracy (bootstrap CI) among the models
                     that have both, and how many of the final top 10 the first rung ranked in its top 10
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats as st

from ..util.atomic import write_text
from ..report import stats as rs
from . import figures
from .sample import LEVEL_DIMS
from .spec import StudySpec

CHANCE = 0.12  # CIFAR-10 has 10 classes: at or below 12% a model has learnt next to nothing
BOOT = 2000
Say = Callable[[str], None]


def pct(x: float) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def pp(x: float) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:+.1f} pp"


def pval(p: float) -> str:
    return "-" if p is None or not np.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def boot_diff(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, fn=np.mean) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of fn(a) - fn(b), resampling each group."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    ia = rng.integers(0, len(a), (BOOT, len(a)))
    ib = rng.integers(0, len(b), (BOOT, len(b)))
    d = fn(a[ia], axis=1) - fn(b[ib], axis=1)
    return float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))


def load(results_csv: Path) -> pd.DataFrame:
    df = pd.read_csv(results_csv, dtype={"dropout": str, "join": str, "drop_path": str})
    df["failed"] = (df["status"] != "trained") | (df["accuracy"].fillna(0) <= CHANCE)
    return df


def first_rung(df: pd.DataFrame, study: StudySpec) -> pd.DataFrame:
    """Every sampled model at the first rung's budget (failed models at whatever they reached)."""
    b = df[(df["stage"] == "breadth") & (df["kind"] == "fractal")]
    r1 = study.protocol.halving.rungs[0]
    at = b[b["epochs"] == r1]
    rest = b[~b["model"].isin(at["model"])].drop_duplicates("model")  # failed before the first budget
    return pd.concat([at, rest], ignore_index=True)


FIXED_ORDER = {"order": ["conv-first", "norm/act-first"], "drop_path": ["none", "local", "global", "local+global"]}


def level_order(study: StudySpec, dim: str, values) -> list:
    """Levels in the study's declared order; the first is the reference the others are compared with."""
    declared = [str(v) if not isinstance(v, float) else f"{v:g}" for v in study.dimensions.get(dim, ())]
    declared = FIXED_ORDER.get(dim, declared)
    values = [str(v) for v in values]

    def key(v: str):
        if v in declared:
            return (0, declared.index(v), v)
        try:
            return (1, float(v), v)
        except ValueError:
            return (2, 0.0, v)
    return sorted(values, key=key)


def dimension_effects(r1: pd.DataFrame, outcome: str, rng, study: StudySpec) -> pd.DataFrame:
    """Each level vs the dimension's reference (first) level on `outcome` ('accuracy' or 'failed')."""
    rows = []
    for dim in LEVEL_DIMS:
        col = r1[dim].astype(str)
        levels = [v for v in level_order(study, dim, col.dropna().unique()) if not v.startswith("n/a")]
        if len(levels) < 2:
            continue
        ref = levels[0]
        a_ref = r1.loc[col == ref, outcome].astype(float).dropna().to_numpy()
        for lv in levels:
            a = r1.loc[col == lv, outcome].astype(float).dropna().to_numpy()
            s = rs.summarize(a)
            row = {"dimension": dim, "level": str(lv), "reference": str(ref), "n": len(a), "mean": s.mean,
                   "lo": s.lo, "hi": s.hi, "diff": math.nan, "diff_lo": math.nan, "diff_hi": math.nan,
                   "p": math.nan}
            if lv != ref:
                row["diff"] = float(a.mean() - a_ref.mean()) if len(a) and len(a_ref) else math.nan
                row["diff_lo"], row["diff_hi"] = boot_diff(a, a_ref, rng)
                if outcome == "failed":
                    table = [[int(a.sum()), int(len(a) - a.sum())], [int(a_ref.sum()), int(len(a_ref) - a_ref.sum())]]
                    row["p"] = float(st.fisher_exact(table)[1])
                else:
                    row["p"] = rs.welch(a, a_ref)[1]
            rows.append(row)
    out = pd.DataFrame(rows)
    out["p_holm"] = rs.holm(out["p"].tolist()) if len(out) else []
    return out


def nc_table(r1: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Mean accuracy per (N, C) with CI, and the N x C interaction F-test (full cell means vs additive)."""
    ok = r1.dropna(subset=["accuracy"])
    rows = []
    for (n, c), g in ok.groupby(["depth", "columns"]):
        s = rs.summarize(g["accuracy"])
        rows.append({"N": int(n), "C": int(c), "n": s.n, "mean": s.mean, "lo": s.lo, "hi": s.hi})
    cells = pd.DataFrame(rows)
    y = ok["accuracy"].to_numpy(float)
    ns, cs = sorted(ok["depth"].unique()), sorted(ok["columns"].unique())
    x_add = np.column_stack([np.ones(len(ok))] + [(ok["depth"] == n).to_numpy(float) for n in ns[1:]]
                            + [(ok["columns"] == c).to_numpy(float) for c in cs[1:]])
    rss_add = float(np.sum((y - x_add @ np.linalg.lstsq(x_add, y, rcond=None)[0]) ** 2))
    cell_mean = ok.groupby(["depth", "columns"])["accuracy"].transform("mean").to_numpy(float)
    rss_full = float(np.sum((y - cell_mean) ** 2))
    df_full = len(y) - len(cells)
    df_int = len(cells) - int(np.linalg.matrix_rank(x_add))  # cells the additive model cannot fit exactly
    test = {"F": math.nan, "p": math.nan, "df": [df_int, df_full], "partial_eta2": math.nan}
    if df_int > 0 and df_full > 0 and rss_full > 0:
        f = ((rss_add - rss_full) / df_int) / (rss_full / df_full)
        test.update(F=float(f), p=float(st.f.sf(f, df_int, df_full)),
                    partial_eta2=float((rss_add - rss_full) / (rss_add - rss_full + rss_full)))
    return cells, test


def final(df: pd.DataFrame, epochs: int, evaluation: str = "all") -> pd.DataFrame:
    return df[(df["stage"] == "seeds") & (df["eval"] == evaluation) & (df["epochs"] == epochs)]


def fractal_vs_plain(df: pd.DataFrame, pairs: list[dict], epochs: int) -> pd.DataFrame:
    f = final(df, epochs)
    acc = {m: g["accuracy"].astype(float).to_numpy() for m, g in f.groupby("model")}
    rows = []
    for p in pairs:
        a = acc.get(p["fractal"], np.array([]))
        for twin in ("depth_twin", "params_twin"):
            b = acc.get(p[twin], np.array([]))
            t, pv = rs.welch(a, b)
            lo, hi = _welch_ci(a, b)
            rows.append({"N": p["depth"], "C": p["columns"], "fractal": p["fractal"], "twin": twin, "plain": p[twin],
                         "fractal_mean": float(np.nanmean(a)) if len(a) else math.nan,
                         "plain_mean": float(np.nanmean(b)) if len(b) else math.nan, "n": min(len(a), len(b)),
                         "diff": float(np.nanmean(a) - np.nanmean(b)) if len(a) and len(b) else math.nan,
                         "lo": lo, "hi": hi, "p": pv})
    out = pd.DataFrame(rows)
    if len(out):
        out["p_holm"] = rs.holm(out["p"].tolist())
    return out


def _welch_ci(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    a, b = rs.clean(a), rs.clean(b)
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        d = float(a.mean() - b.mean())
        return d, d
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    h = float(st.t.ppf(0.975, dof)) * se
    d = float(a.mean() - b.mean())
    return d - h, d + h


def deepest_column(df: pd.DataFrame, epochs: int) -> pd.DataFrame:
    allc = final(df, epochs, "all").set_index(["model", "seed"])["accuracy"]
    deep = final(df, epochs, "deepest").set_index(["model", "seed"])["accuracy"]
    both = pd.concat({"all": allc, "deepest": deep}, axis=1).dropna().reset_index()
    both["diff"] = both["deepest"] - both["all"]
    return both


def paired_summary(d: np.ndarray) -> dict:
    s = rs.summarize(d)
    p = math.nan
    if len(rs.clean(d)) >= 2 and np.any(rs.clean(d) != 0):
        p = float(st.wilcoxon(rs.clean(d)).pvalue)
    return {"n": s.n, "mean": s.mean, "lo": s.lo, "hi": s.hi, "p": p}


def boot_spearman(x: np.ndarray, y: np.ndarray, rng) -> np.ndarray:
    """Spearman's rho of BOOT resamples of the (x, y) pairs (resamples without spread dropped)."""
    idx = rng.integers(0, len(x), (BOOT, len(x)))
    rx, ry = st.rankdata(x[idx], axis=1), st.rankdata(y[idx], axis=1)
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))
    ok = den > 0
    return (rx * ry).sum(axis=1)[ok] / den[ok]


def rung_rank(df: pd.DataFrame, study: StudySpec, rng) -> dict:
    """Spearman of first-rung vs final accuracy among models with both (stage 1 finishers and the stage-2
    models' seed 0), with a bootstrap CI; top-10 overlap among the stage-1 finishers."""
    r1, fin = study.protocol.halving.rungs[0], study.protocol.epochs
    out = {}
    for name, part in (("breadth", df[(df["stage"] == "breadth")]),
                       ("seeds", df[(df["stage"] == "seeds") & (df["eval"] == "all")])):
        a = part[part["epochs"] == r1].groupby("model")["accuracy"].mean()
        b = part[part["epochs"] == fin].groupby("model")["accuracy"].mean()
        both = pd.concat({"first": a, "final": b}, axis=1).dropna()
        res = {"n": len(both), "rho": math.nan, "lo": math.nan, "hi": math.nan, "p": math.nan}
        if len(both) >= 4:
            x, y = both["first"].to_numpy(), both["final"].to_numpy()
            rho, p = st.spearmanr(x, y)
            boots = boot_spearman(x, y, rng)
            res.update(rho=float(rho), p=float(p), lo=float(np.percentile(boots, 2.5)),
                       hi=float(np.percentile(boots, 97.5)))
            k = min(10, len(both))
            res["top_overlap"] = len(set(both["first"].nlargest(k).index) & set(both["final"].nlargest(k).index))
            res["top_k"] = k
        res["points"] = both.reset_index().rename(columns={"index": "model"}).to_dict("records")
        out[name] = res
    return out


def repeats(df: pd.DataFrame, epochs: int) -> pd.DataFrame:
    """Models trained twice with the same seed and budget: in halving's rungs (resumed between them) and from
    scratch in the seeds stage. The same numbers are expected (fixed threads, seeded data order and dropout)."""
    a = df[(df["stage"] == "breadth") & (df["epochs"] == epochs)].set_index(["model", "seed"])["accuracy"]
    b = final(df, epochs).set_index(["model", "seed"])["accuracy"]
    both = pd.concat({"halving": a, "seeds": b}, axis=1).dropna().reset_index()
    both["diff"] = both["seeds"] - both["halving"]
    return both


def sentences(study: StudySpec, r1: pd.DataFrame, eff: pd.DataFrame, fail: pd.DataFrame, cells: pd.DataFrame,
              inter: dict, fvp: pd.DataFrame, deep: pd.DataFrame, rr: dict) -> tuple[list[str], list[str]]:
    """(findings, what the data cannot decide), one plain sentence each."""
    f, undecided = [], []
    alpha = rs.ALPHA
    r1b = study.protocol.halving.rungs[0]
    fin = study.protocol.epochs
    if "dimensions" in study.questions and len(eff):
        for dim, g in eff.groupby("dimension", sort=False):
            tested = g.dropna(subset=["p_holm"])
            sig = tested[tested["p_holm"] < alpha]
            best = g.loc[g["mean"].idxmax()]
            if len(sig):
                parts = "; ".join(f"{r.level} vs {r.reference}: {pp(r['diff'])} [95% CI {pp(r.diff_lo)}, {pp(r.diff_hi)}], "
                                  f"Holm p={pval(r.p_holm)}" for _, r in sig.iterrows())
                f.append(f"{dim}: changes accuracy after {r1b} epoch(s) ({parts}); best level {best.level} "
                         f"({pct(best['mean'])}).")
            else:
                widest = tested.loc[(tested["diff_hi"] - tested["diff_lo"]).idxmax()] if len(tested) else None
                undecided.append(f"{dim}: no level differs from {g.iloc[0].reference} after Holm correction"
                                 + (f" (largest CI {pp(widest.diff_lo)} to {pp(widest.diff_hi)})" if widest is not None
                                    else "") + ".")
    if "failures" in study.questions and len(fail):
        rate = float(r1["failed"].mean())
        sig = fail[fail["p_holm"] < alpha]
        hard = int((r1["status"] != "trained").sum())
        line = (f"training failure: {hard} of the {len(r1)} sampled models failed outright (diverged, out of memory, "
                f"timed out or error); {pct(rate)} failed or were still at chance (at most {pct(CHANCE)}) after "
                f"{r1b} epoch(s)")
        if len(sig):
            line += "; " + "; ".join(f"{r.dimension}={r.level}: {pct(r['mean'])} vs {pct(fail[(fail.dimension == r.dimension) & (fail.level == r.reference)]['mean'].iloc[0])} "
                                     f"({pp(r['diff'])} [{pp(r.diff_lo)}, {pp(r.diff_hi)}], Holm p={pval(r.p_holm)})"
                                     for _, r in sig.iterrows())
        else:
            undecided.append("failures: no dimension level changes the failure rate significantly after Holm correction.")
        f.append(line + ".")
    if "depth_columns" in study.questions and len(cells):
        best = cells.loc[cells["mean"].idxmax()]
        worst = cells.loc[cells["mean"].idxmin()]
        sig = inter["p"] < alpha if np.isfinite(inter["p"]) else False
        f.append(f"N x C: best cell N={int(best.N)}, C={int(best.C)} ({pct(best['mean'])} [{pct(best.lo)}, {pct(best.hi)}]), "
                 f"worst N={int(worst.N)}, C={int(worst.C)} ({pct(worst['mean'])}); the N x C interaction is "
                 f"{'significant' if sig else 'not significant'} (F({inter['df'][0]}, {inter['df'][1]}) = "
                 f"{inter['F']:.2f}, p={pval(inter['p'])}, partial eta^2 = {inter['partial_eta2']:.3f}).")
    if "fractal_vs_plain" in study.questions and len(fvp):
        for twin, label in (("depth_twin", "a plain net of the same depth (its deepest column)"),
                            ("params_twin", "a plain net with as many convolutions (about its parameters)")):
            g = fvp[fvp["twin"] == twin].dropna(subset=["diff"])
            if not len(g):
                continue
            s = rs.summarize(g["diff"])
            wins = int((g["diff"] > 0).sum())
            sig = g[g["p_holm"] < alpha]
            f.append(f"fractal vs {label}: fractal ahead in {wins} of {len(g)} pairs, mean difference {pp(s.mean)} "
                     f"[95% CI {pp(s.lo)}, {pp(s.hi)}] over pairs at {fin} epochs; {len(sig)} pair(s) significant "
                     f"after Holm.")
            if not np.isfinite(s.lo) or (s.lo < 0 < s.hi):
                undecided.append(f"fractal vs {label}: the CI of the mean difference includes 0.")
    if "deepest_column" in study.questions and len(deep):
        s = paired_summary(deep["diff"].to_numpy())
        f.append(f"deepest column alone vs all columns (same weights): {pp(s['mean'])} [95% CI {pp(s['lo'])}, "
                 f"{pp(s['hi'])}] over {s['n']} model x seed pairs, Wilcoxon p={pval(s['p'])}.")
        if not (np.isfinite(s["lo"]) and (s["lo"] > 0 or s["hi"] < 0)):
            undecided.append("deepest column vs all columns: the CI includes 0.")
    if "rung_rank" in study.questions:
        for name, label in (("breadth", "stage-1 finishers (selected by that first rung: a restricted range)"),
                            ("seeds", "stage-2 models (seed means; selected partly independently of rung 1)")):
            r = rr.get(name, {})
            if r.get("n", 0) >= 4:
                f.append(f"rung {r1b} predicts the {fin}-epoch ranking among {r['n']} {label}: Spearman "
                         f"rho = {r['rho']:.2f} [95% CI {r['lo']:.2f}, {r['hi']:.2f}], p={pval(r['p'])}; "
                         f"{r['top_overlap']} of the top {r['top_k']} at {fin} epochs were top {r['top_k']} after "
                         f"{r1b}.")
    return f, undecided


def repeat_sentence(rep: pd.DataFrame, epochs: int) -> str | None:
    if not len(rep):
        return None
    same = int((rep["diff"].abs() < 1e-9).sum())
    return (f"reproducibility: {same} of {len(rep)} models trained twice with seed 0 to {epochs} epochs (in halving's "
            f"rungs, resumed in between, and again from scratch) got the same accuracy; largest difference "
            f"{100 * float(rep['diff'].abs().max()):.2f} pp.")


def write(study: StudySpec, results_csv: Path, folder: Path, say: Say) -> list[str]:
    """Compute every answer, write findings.md / findings.json and the tables and figures under analysis/."""
    rng = np.random.default_rng(0)
    df = load(results_csv)
    out = folder / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    sel_path = study.work / "selection.json"
    sel = json.loads(sel_path.read_text()) if sel_path.exists() else {"top": [], "pairs": []}
    r1 = first_rung(df, study)
    eff = dimension_effects(r1, "accuracy", rng, study)
    fail = dimension_effects(r1, "failed", rng, study)
    cells, inter = nc_table(r1)
    fvp = fractal_vs_plain(df, sel["pairs"], study.protocol.epochs)
    deep = deepest_column(df, study.protocol.epochs)
    rr = rung_rank(df, study, rng)
    board = leaderboard(df, study.protocol.epochs)
    for name, frame in (("dimension_effects", eff), ("failure_effects", fail), ("depth_columns", cells),
                        ("fractal_vs_plain", fvp), ("deepest_column", deep), ("leaderboard", board),
                        ("repeats", repeats(df, study.protocol.epochs))):
        frame.to_csv(out / f"{name}.csv", index=False, float_format="%.6g")
    findings, undecided = sentences(study, r1, eff, fail, cells, inter, fvp, deep, rr)
    rep = repeats(df, study.protocol.epochs)
    if (line := repeat_sentence(rep, study.protocol.epochs)) is not None:
        findings.append(line)
    figs = figures.draw(out, eff, fail, cells, rr, fvp, deep, study)
    summary = {"findings": findings, "undecided": undecided, "interaction": inter,
               "rung_rank": {k: {kk: vv for kk, vv in v.items() if kk != "points"} for k, v in rr.items()},
               "models": int(r1["model"].nunique()), "rows": len(df), "figures": [p.name for p in figs]}
    write_text(out / "findings.json", json.dumps(summary, indent=1, default=float) + "\n")
    write_text(out / "findings.md", markdown(study, findings, undecided, cells, board, figs))
    say(f"analysis: {len(findings)} findings, {len(undecided)} undecided -> {out / 'findings.md'}")
    return findings


def leaderboard(df: pd.DataFrame, epochs: int) -> pd.DataFrame:
    f = final(df, epochs)
    rows = []
    for m, g in f.groupby("model"):
        s = rs.summarize(g["accuracy"])
        rows.append({"model": m, "kind": g["kind"].iloc[0], "seeds": len(g), "mean": s.mean, "lo": s.lo, "hi": s.hi,
                     "per_seed": " ".join(f"{a:.3f}" for a in g.sort_values("seed")["accuracy"]),
                     "params": g["params"].iloc[0]})
    return pd.DataFrame(rows).sort_values("mean", ascending=False) if rows else pd.DataFrame(rows)


def markdown(study: StudySpec, findings: list[str], undecided: list[str], cells: pd.DataFrame, board: pd.DataFrame,
             figs: list[Path]) -> str:
    lines = [f"# Findings: {study.name}", "", "Generated by `study run` from results.csv; 95% CIs, Holm-corrected "
             f"tests at alpha = {rs.ALPHA}.", "", "## Answers", ""]
    lines += [f"- {x}" for x in findings] + ["", "## What the data cannot decide", ""]
    lines += [f"- {x}" for x in undecided] or ["- (nothing flagged)"]
    if len(cells):
        ns, cs = sorted(cells["N"].unique()), sorted(cells["C"].unique())
        lines += ["", "## Accuracy by depth N and columns C (after the first rung; mean [95% CI], models)", "",
                  "| N \\ C | " + " | ".join(map(str, cs)) + " |", "|---|" + "---|" * len(cs)]
        for n in ns:
            cell = []
            for c in cs:
                r = cells[(cells.N == n) & (cells.C == c)]
                cell.append("-" if not len(r) else f"{pct(r['mean'].iloc[0])} [{pct(r.lo.iloc[0])}, {pct(r.hi.iloc[0])}], {r.n.iloc[0]}")
            lines.append(f"| {n} | " + " | ".join(cell) + " |")
    if len(board):
        lines += ["", "## Leaderboard at the final budget (mean over seeds)", "", "| # | model | kind | seeds | mean [95% CI] | per seed |",
                  "|---|---|---|---|---|---|"]
        for i, (_, r) in enumerate(board.head(10).iterrows(), 1):
            lines.append(f"| {i} | {r.model} | {r.kind} | {r.seeds} | {pct(r['mean'])} [{pct(r.lo)}, {pct(r.hi)}] | {r.per_seed} |")
    lines += ["", "## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figs if p.suffix == ".png"]
    return "\n".join(lines) + "\n"
