"""The study's figures: dimension effects with CIs, the N x C grid, halving rank stability, and the paired
comparisons (fractal vs plain twins, deepest column vs all columns). PNG and SVG, via report.figures.save."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..report.figures import save  # noqa: E402


def _err(mean, lo, hi) -> np.ndarray:
    m, l, h = (np.asarray(x, float) * 100 for x in (mean, lo, hi))
    return np.nan_to_num(np.vstack([m - l, h - m]), nan=0.0).clip(min=0)


def effects(eff: pd.DataFrame, title: str, xlabel: str) -> plt.Figure:
    dims = list(dict.fromkeys(eff["dimension"]))
    fig, axes = plt.subplots(1, len(dims), figsize=(2.2 * len(dims), 3.6), sharey=True)
    for ax, dim in zip(np.atleast_1d(axes), dims):
        g = eff[eff["dimension"] == dim]
        x = np.arange(len(g))
        ax.errorbar(x, g["mean"] * 100, yerr=_err(g["mean"], g["lo"], g["hi"]), fmt="o", capsize=3)
        for i, (_, r) in enumerate(g.iterrows()):
            if np.isfinite(r.get("p_holm", np.nan)) and r["p_holm"] < 0.05:
                ax.annotate("*", (i, r["hi"] * 100), ha="center", va="bottom")
        ax.set_xticks(x, [str(v) for v in g["level"]], rotation=45, ha="right", fontsize=8)
        ax.set_title(dim, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel(xlabel)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def grid(cells: pd.DataFrame) -> plt.Figure:
    ns, cs = sorted(cells["N"].unique()), sorted(cells["C"].unique())
    m = np.full((len(ns), len(cs)), np.nan)
    for _, r in cells.iterrows():
        m[ns.index(r.N), cs.index(r.C)] = r["mean"] * 100
    fig, ax = plt.subplots(figsize=(1.4 * len(cs) + 2, 1.1 * len(ns) + 1.5))
    im = ax.imshow(m, cmap="viridis", aspect="auto")
    mid = np.nanmean(m)
    for _, r in cells.iterrows():
        ax.text(cs.index(r.C), ns.index(r.N), f"{100 * r['mean']:.1f}\n±{50 * (r.hi - r.lo):.1f}\nn={int(r.n)}",
                ha="center", va="center", color="k" if 100 * r["mean"] > mid else "w", fontsize=8)
    ax.set_xticks(range(len(cs)), cs)
    ax.set_yticks(range(len(ns)), ns)
    ax.set_xlabel("columns C")
    ax.set_ylabel("depth N (blocks)")
    fig.colorbar(im, ax=ax, label="accuracy % (first rung)")
    ax.set_title("Accuracy by N and C (mean ± 95% CI half-width)")
    fig.tight_layout()
    return fig


def rank_stability(rr: dict, first: int, final: int) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, (name, label) in zip(axes, (("breadth", "stage 1: halving finishers"), ("seeds", "stage 2: seed means"))):
        pts = pd.DataFrame(rr.get(name, {}).get("points", []))
        if len(pts) < 2:
            ax.set_title(f"{label}: too few models")
            continue
        rf = pts["first"].rank(ascending=False)
        rl = pts["final"].rank(ascending=False)
        ax.scatter(rf, rl, s=14)
        lim = len(pts) + 1
        ax.plot([0, lim], [0, lim], color="grey", lw=0.8, ls="--")
        r = rr[name]
        ax.set_title(f"{label}\nSpearman {r['rho']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}], n={r['n']}", fontsize=9)
        ax.set_xlabel(f"rank after {first} epoch(s)")
        ax.set_ylabel(f"rank after {final} epochs")
    fig.suptitle("Halving rank stability: does the first rung predict the final ranking?", fontsize=10)
    fig.tight_layout()
    return fig


def pairs(fvp: pd.DataFrame, deep: pd.DataFrame) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    for k, (twin, label, colour) in enumerate((("depth_twin", "plain, same depth", "tab:orange"),
                                               ("params_twin", "plain, same #convs", "tab:green"))):
        g = fvp[fvp["twin"] == twin].reset_index(drop=True)
        x = np.arange(len(g)) + (k - 0.5) * 0.3
        ax.errorbar(x, g["diff"] * 100, yerr=_err(g["diff"], g["lo"], g["hi"]), fmt="o", capsize=3, color=colour,
                    label=label)
    if len(fvp):
        labels = fvp[fvp["twin"] == "depth_twin"].apply(lambda r: f"N{r.N}C{r.C}", axis=1)
        ax.set_xticks(range(len(labels)), labels)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel("fractal - plain accuracy (pp, Welch 95% CI)")
    ax.set_title("Fractal vs plain twins (same layers and widths)", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[1]
    if len(deep):
        ax.scatter(deep["all"] * 100, deep["deepest"] * 100, s=16)
        lo = float(min(deep["all"].min(), deep["deepest"].min())) * 100 - 2
        hi = float(max(deep["all"].max(), deep["deepest"].max())) * 100 + 2
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("all columns (accuracy %)")
    ax.set_ylabel("deepest column alone (accuracy %)")
    ax.set_title("Same trained weights, two ways to evaluate", fontsize=9)
    fig.tight_layout()
    return fig


def draw(out: Path, eff, fail, cells, rr, fvp, deep, study) -> list[Path]:
    first, final = study.protocol.halving.rungs[0], study.protocol.epochs
    made = []
    for stem, build in (
            ("dimension_effects", lambda: effects(eff, f"Accuracy after {first} epoch(s) by level (mean, 95% CI; "
                                                  "* = differs from the first level, Holm)", "accuracy %")),
            ("failure_effects", lambda: effects(fail, "Share of failed models by level (mean, 95% CI)", "failed %")),
            ("depth_columns", lambda: grid(cells)),
            ("rank_stability", lambda: rank_stability(rr, first, final)),
            ("pairs", lambda: pairs(fvp, deep))):
        if stem in ("dimension_effects", "failure_effects") and not len(eff):
            continue
        if (stem == "depth_columns" and not len(cells)) or (stem == "pairs" and not len(fvp) and not len(deep)):
            continue
        fig = build()
        saved = save(fig, out, stem)
        made += [saved.png, saved.svg]
    return made
