"""The report's figures (matplotlib, Agg backend). Each builder returns a Figure, or raises NoData with
a sentence saying what is missing; `save` writes it as PNG and SVG."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import tables  # noqa: E402
from .load import Results  # noqa: E402
from .stats import pareto_front, summarize  # noqa: E402

FRACTAL, PLAIN, FRONT = "#1f6fb4", "#e07b1a", "#c0392b"
PLAIN_COLOURS = {5: "#f5b041", 10: "#e67e22", 20: "#ba4a00", 40: "#6e2c00"}
plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 130, "font.size": 9.5, "axes.titlesize": 10.5,
                     "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
                     "grid.alpha": 0.3, "legend.frameon": False, "svg.fonttype": "none"})


class NoData(Exception):
    """Not enough results for this figure; the message says what is missing."""


@dataclass
class Saved:
    stem: str
    png: Path
    svg: Path


def save(fig: plt.Figure, out: Path, stem: str) -> Saved:
    out.mkdir(parents=True, exist_ok=True)
    png, svg = out / f"{stem}.png", out / f"{stem}.svg"
    fig.savefig(png, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight")
    plt.close(fig)
    return Saved(stem, png, svg)


def _pct(s) -> np.ndarray:
    return 100 * np.asarray(s, dtype=float)


def _err(mean, lo, hi, scale: float = 100.0, bounds=(0.0, 1.0)) -> np.ndarray:
    """Error-bar lengths below and above `mean` for a CI clipped to `bounds` (accuracy lies in [0, 1])."""
    mean, lo, hi = (np.asarray(x, dtype=float) for x in (mean, lo, hi))
    lo, hi = np.clip(lo, *bounds), np.clip(hi, *bounds)
    return np.nan_to_num(scale * np.vstack([mean - lo, hi - mean]))


def accuracy_distribution(r: Results) -> plt.Figure:
    """Histogram of validation accuracy after the first and after the last epoch."""
    m = r.models
    first = m[m["status"].isin(("trained", "running")) & m["acc_first_mean"].notna()]["acc_first_mean"]
    last = tables.trained(m)["acc_mean"]
    if not len(first) and not len(last):
        raise NoData("no model has finished an epoch yet")
    both = np.concatenate([_pct(first), _pct(last)])
    lo, hi = math.floor(both.min() - 1), math.ceil(both.max() + 1)
    bins = np.linspace(lo, hi, min(40, max(10, len(both))) + 1)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ends = set(tables.trained(m)["epochs_done"])
    last_label = f"epoch {ends.pop()}" if len(ends) == 1 else "last epoch"
    ax.hist(_pct(first), bins=bins, alpha=0.55, color="#95a5a6", label=f"epoch 1 (n={len(first)})")
    ax.hist(_pct(last), bins=bins, alpha=0.65, color=FRACTAL, label=f"{last_label}, trained (n={len(last)})")
    for s, colour in ((first, "#7f8c8d"), (last, FRACTAL)):
        if len(s):
            ax.axvline(100 * s.mean(), color=colour, ls="--", lw=1.2)
    ax.set_xlabel("validation accuracy (%), mean over seeds")
    ax.set_ylabel("number of models")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Validation-accuracy distribution: first vs last epoch (dashed: means)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def _curve(r: Results, names, col: str = "train_loss") -> pd.DataFrame:
    """Per-epoch mean and 95% CI of `col` over the seeds (and models) in `names`."""
    e = r.epochs[r.epochs["model"].isin(list(names))]
    rows = []
    for epoch, g in e.groupby("epoch"):
        s = summarize(g[col])
        rows.append({"epoch": epoch, "mean": s.mean, "lo": s.lo, "hi": s.hi, "n": s.n})
    return pd.DataFrame(rows, columns=["epoch", "mean", "lo", "hi", "n"])


def _draw(ax, c: pd.DataFrame, label: str, colour: str, band: bool = False, **kw) -> None:
    if not len(c):
        return
    ax.plot(c["epoch"], c["mean"], marker="o", ms=3.5, color=colour, label=label, **kw)
    band = c.dropna(subset=["lo", "hi"]) if band else c.iloc[0:0]
    if len(band):  # a loss is never negative
        ax.fill_between(band["epoch"], band["lo"].clip(lower=0), band["hi"], color=colour, alpha=0.15, lw=0)


def loss_curves(r: Results) -> plt.Figure:
    """Training loss of the best fractal variant against plain networks of 5, 10, 20 and 40 layers and
    against its deepest column alone; matched baselines share its layers and widths, else all plain
    networks of each depth are pooled."""
    ok = tables.trained(r.models)
    frac = ok[ok["kind"] == "fractal"].sort_values("acc_mean", ascending=False)
    plain = r.models[(r.models["kind"] == "plain") & r.models["status"].isin(("trained", "running"))]
    if not len(frac):
        raise NoData("no fractal variant has trained yet")
    if not len(r.epochs):
        raise NoData("no epoch results yet")
    best = frac.iloc[0]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    if len(frac) > 1:
        _draw(ax, _curve(r, frac["model"]), f"all fractal variants (mean of {len(frac)})", "#7f8c8d", lw=1)
    _draw(ax, _curve(r, [best["model"]]), f"best fractal: N={best['depth']:.0f}, C={best['columns']:.0f}",
          FRACTAL, band=True, lw=2.4)
    matched = plain[(plain["spec_key"] == best["spec_key"]) & (plain["depth"] == best["depth"])]
    pool = matched if len(matched) else plain
    tag = "matched" if len(matched) else "all plain"
    for L, g in pool.groupby("plain_layers"):
        L = int(L)
        deepest = len(matched) and L == best["deepest_path"]
        label = f"deepest column alone ({L} layers)" if deepest else f"plain {L} layers ({tag}, n={len(g)})"
        _draw(ax, _curve(r, g["model"]), label, "#2c3e50" if deepest else PLAIN_COLOURS.get(L, PLAIN),
              band=bool(deepest), ls="--" if deepest else "-", lw=1.8 if deepest else 1.4)
    if not len(plain):
        ax.text(0.98, 0.95, "no plain baselines in this sweep\n(generate with AlterNNFN --baselines)",
                transform=ax.transAxes, ha="right", va="top", fontsize=8.5, color="#7f8c8d")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (cross-entropy, mean per image)")
    ax.set_title("Training loss: fractal vs plain networks\n"
                 "(bands: 95% CI over seeds, best variant and its deepest column)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def heatmap(r: Results) -> plt.Figure:
    g = tables.grid(r)
    if not len(g):
        raise NoData("no trained fractal variants to place on the (N, columns) grid")
    depths, cols = sorted(g["depth"].unique()), sorted(g["columns"].unique())
    z = np.full((len(depths), len(cols)), np.nan)
    for _, row in g.iterrows():
        z[depths.index(row["depth"]), cols.index(row["columns"])] = 100 * row["acc_mean"]
    fig, ax = plt.subplots(figsize=(1.3 * len(cols) + 2.6, 0.9 * len(depths) + 1.8))
    im = ax.imshow(z, cmap="viridis", aspect="auto", origin="lower")
    ax.grid(False)
    for _, row in g.iterrows():
        i, j = depths.index(row["depth"]), cols.index(row["columns"])
        ci = "" if math.isnan(row["acc_lo"]) else f"\n±{50 * (row['acc_hi'] - row['acc_lo']):.1f}"
        bright = z[i, j] > np.nanmean(z)
        ax.text(j, i, f"{100 * row['acc_mean']:.1f}{ci}\nn={int(row['models'])}", ha="center", va="center",
                fontsize=8, color="black" if bright else "white")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(depths)), [str(d) for d in depths])
    ax.set_xlabel("columns C")
    ax.set_ylabel("fractal depth N (blocks)")
    ax.set_title("Mean validation accuracy (%) by (N, C)\n(± 95% CI half-width over models; n models)")
    fig.colorbar(im, ax=ax, label="validation accuracy (%)")
    return fig


def factor_effects(r: Results) -> plt.Figure:
    f = tables.factors(r)
    if not len(f):
        raise NoData("no layer-family or shape choice takes two values among trained fractal variants")
    names = list(dict.fromkeys(f["factor"]))
    ncol = min(3, len(names))
    nrow = math.ceil(len(names) / ncol)
    heights = [max(len(f[f["factor"] == n]) for n in names[i * ncol:(i + 1) * ncol]) for i in range(nrow)]
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, sum(0.45 * h + 0.9 for h in heights)),
                             sharex=True, squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, name in zip(axes.flat, names):
        d = f[f["factor"] == name].reset_index(drop=True)
        y = np.arange(len(d))
        mean = 100 * d["acc_mean"]
        err = _err(d["acc_mean"], d["acc_lo"], d["acc_hi"])
        ax.errorbar(mean, y, xerr=err, fmt="o", color=FRACTAL, ecolor="#7fb3d5", capsize=3)
        ax.set_yticks(y, [f"{v} (n={n})" for v, n in zip(d["value"], d["models"])])
        ax.set_ylim(-0.6, len(d) - 0.4)
        ax.set_title(name)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("validation accuracy (%)")
    fig.suptitle("Effect of each choice: mean accuracy of trained fractal variants,\n"
                 "95% CI over models (clipped to 0-100%)", y=1.0)
    fig.tight_layout()
    return fig


COSTS = (("params", "parameters (log scale)", True), ("flops", "FLOPs per image, forward (log scale)", True),
         ("epoch_time_s", "time per epoch (s)", False))


def pareto(r: Results) -> plt.Figure:
    ok = tables.trained(r.models)
    if not len(ok):
        raise NoData("no trained models yet")
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8), sharey=True)
    for ax, (col, label, log) in zip(axes, COSTS):
        d = ok[ok[col].notna() & (ok[col] > 0)] if log else ok[ok[col].notna()]
        if not len(d):
            ax.text(0.5, 0.5, f"no {col} recorded", ha="center", transform=ax.transAxes)
            continue
        front = pareto_front(d[col], d["acc_mean"])
        for kind, colour, marker in (("fractal", FRACTAL, "o"), ("plain", PLAIN, "s")):
            k = d[d["kind"] == kind]
            if len(k):
                err = _err(k["acc_mean"], k["acc_lo"], k["acc_hi"])
                ax.errorbar(k[col], 100 * k["acc_mean"], yerr=err, fmt=marker, ms=4.5,
                            color=colour, ecolor=colour, elinewidth=0.6, alpha=0.75, label=kind)
        f = d[front].sort_values(col)
        ax.step(f[col], 100 * f["acc_mean"], where="post", color=FRONT, lw=1.2)
        ax.scatter(f[col], 100 * f["acc_mean"], s=90, facecolors="none", edgecolors=FRONT, lw=1.5,
                   label="Pareto front", zorder=3)
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short ranges
        ax.set_xlabel(label)
    axes[0].set_ylabel("validation accuracy (%)")
    handles = {l: h for ax in axes for h, l in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.06))
    fig.suptitle("Accuracy against cost (error bars: 95% CI over seeds, clipped to 0-100%; circled: Pareto-optimal)")
    fig.tight_layout()
    return fig


BUILDERS = (
    ("accuracy_distribution", "Accuracy distribution, first vs last epoch", accuracy_distribution),
    ("loss_curves", "Training loss: fractal vs plain baselines", loss_curves),
    ("heatmap_depth_columns", "Accuracy over fractal depth N and columns C", heatmap),
    ("factor_effects", "Effect of each layer-family choice", factor_effects),
    ("pareto", "Accuracy against parameters, FLOPs and time", pareto),
)
