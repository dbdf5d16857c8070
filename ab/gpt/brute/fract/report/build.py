"""Build the whole report: load results, compute tables, draw figures, write CSV/PNG/SVG and the HTML."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..util.atomic import write_text
from . import figures, fmt, html, tables
from .load import FINISHED, PENDING, RUNNING, Results, load_results
from .stats import ALPHA, CONFIDENCE

CAPTIONS = {
    "accuracy_distribution": "How many models reach which validation accuracy after the first epoch (grey) "
                             "and after the last (blue); each model counts once, with its mean over seeds.",
    "loss_curves": "Training loss per epoch (mean over seeds; bands: 95% CI) of the best fractal variant, "
                   "the mean of all fractal variants, plain networks of 5/10/20/40 layers built from the same "
                   "layers and widths, and the variant's deepest column trained alone (dashed).",
    "heatmap_depth_columns": "Mean validation accuracy of trained fractal variants in each (N, C) cell, "
                             "with the 95% CI half-width over the cell's models and the number of models.",
    "factor_effects": "Marginal effect of each choice: mean accuracy of the trained fractal variants that "
                      "use it (other choices vary within each group), with the 95% CI over models.",
    "pareto": "Each trained model's mean accuracy against its cost; circled models are Pareto-optimal "
              "(no other model is both cheaper and more accurate).",
}
CSV = ("summary", "models", "seeds", "epochs", "leaderboard", "baselines", "grid", "factors", "failures")


@dataclass
class Report:
    html: Path
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    results: Results | None = None
    missing_figures: dict[str, str] = field(default_factory=dict)


def _summary_cell(kind: str, value) -> tuple[str, str]:
    """(displayed text, raw data-value) of one summary cell."""
    if kind == "count":
        return fmt.count(value), fmt.raw(value)
    if kind in ("rate", "acc"):
        return fmt.pct(value), fmt.raw(value)
    if kind == "acc_ci":
        return fmt.ci(*value), "" if any(map(fmt.missing, value)) else f"{value[0]!r}..{value[1]!r}"
    if kind == "acc_seed":
        if value is None:
            return fmt.DASH, ""
        return fmt.acc(*value[:4]), fmt.raw(value[0])
    if kind == "seconds":
        return fmt.seconds(value), fmt.raw(value)
    if kind == "mb":
        return fmt.mb(value), fmt.raw(value)
    return fmt.si(value), fmt.raw(value)


def summary_context(values: dict[str, dict]) -> dict:
    rows = []
    for m in tables.SUMMARY_METRICS:
        if m.key == "in_db" and all(fmt.missing(v[m.key]) for v in values.values()):
            continue  # no DB was read
        cells = []
        for g, v in values.items():
            text, raw = _summary_cell(m.kind, v[m.key])
            note = v[m.key][4] if m.kind == "acc_seed" and v[m.key] is not None else ""
            cells.append({"group": g, "text": text, "raw": raw, "note": note})
        rows.append({"key": m.key, "label": m.label, "cells": cells,
                     "section": m.key in ("success_rate", "acc_first_mean", "epoch_time_s")})
    return {"groups": list(values), "rows": rows}


def spec_text(row: pd.Series) -> str:
    if fmt.missing(row.get("depth")):
        return "spec unknown"
    shape = (f"N={row['depth']:.0f} · C={row['columns']:.0f}" if row["kind"] == "fractal"
             else f"plain · {row['plain_layers']:.0f} layers · N={row['depth']:.0f}")
    parts = [shape, f"width {row['channels']}", str(row["layers"])]
    if row["kind"] == "fractal" and row["columns"] > 1:
        parts.append(f"join {row['join']} · drop-path {row['local_drop']:g}/{row['global_drop']:g}")
    if row["dropout"]:
        parts.append(f"dropout {row['dropout']:g}")
    return " · ".join(parts)


def significance_notes(board: pd.DataFrame) -> list[str]:
    if len(board) < 2:
        return []
    notes = []
    best = board.iloc[0]["model"]
    for _, r in board.iloc[1:].iterrows():
        if r["vs_best_significant"] is None or fmt.missing(r["vs_best_p_holm"]):
            notes.append(f"#1 vs #{r['rank']}: Δ {100 * r['vs_best_diff']:.2f} pp, not testable "
                         f"(needs at least 2 seeds on both sides)")
            continue
        verdict = "significant" if r["vs_best_significant"] else "not significant"
        notes.append(f"#1 vs #{r['rank']}: Δ {100 * r['vs_best_diff']:.2f} pp, Holm-adjusted "
                     f"p = {fmt.pvalue(r['vs_best_p_holm'])}: {verdict}")
    sig = int((board["vs_best_significant"] == True).sum())  # noqa: E712 (None stays out)
    head = (f"{best} is significantly better than {sig} of the {len(board) - 1} next models"
            if sig else "No difference between #1 and the next models is significant")
    return [f"{head} (Welch's t-test over seeds, Holm correction, α = {ALPHA})."] + notes


def build_report(results_dir: Path, out_dir: Path, models_dir: Path | None = None, db: Path | None = None,
                 top: int = 10, title: str = "Fractal sweep report") -> Report:
    r = load_results(results_dir, models_dir, db)
    out_dir = Path(out_dir)
    fig_dir, csv_dir = out_dir / "figures", out_dir / "tables"
    csv_dir.mkdir(parents=True, exist_ok=True)

    values = tables.summary(r)
    board = tables.leaderboard(r, top)
    frames = {"summary": tables.summary_frame(values), "models": r.models, "seeds": r.seeds, "epochs": r.epochs,
              "leaderboard": board, "baselines": tables.baseline_frame(r), "grid": tables.grid(r),
              "factors": tables.factors(r), "failures": tables.failures(r)}
    report = Report(out_dir / "report.html", results=r)
    for name in CSV:
        path = csv_dir / f"{name}.csv"
        frames[name].to_csv(path, index=False)
        report.tables.append(path)

    figs = []
    for stem, fig_title, builder in figures.BUILDERS:
        item = {"stem": stem, "title": fig_title, "caption": CAPTIONS[stem], "uri": None, "reason": ""}
        try:
            saved = figures.save(builder(r), fig_dir, stem)
        except figures.NoData as e:
            item["reason"] = str(e)
            report.missing_figures[stem] = str(e)
            for old in (fig_dir / f"{stem}.png", fig_dir / f"{stem}.svg"):
                old.unlink(missing_ok=True)  # never show a stale figure from an earlier build
        else:
            item.update(uri=html.data_uri(saved.png), png=f"figures/{stem}.png", svg=f"figures/{stem}.svg")
            report.figures += [saved.png, saved.svg]
        figs.append(item)

    status = r.models["status"].value_counts()
    context = {
        "title": title, "generated_at": time.strftime("%Y-%m-%d %H:%M:%S"), "results_dir": str(r.results_dir),
        "models_dir": str(models_dir) if models_dir else "", "db": str(db) if db else "",
        "config": r.config, "warnings": r.warnings[:30], "more_warnings": max(0, len(r.warnings) - 30),
        "running": int(status.get(RUNNING, 0)), "pending": int(status.get(PENDING, 0)),
        "finished": int(status.reindex(list(FINISHED)).fillna(0).sum()), "top": top,
        "confidence": int(CONFIDENCE * 100), "alpha": ALPHA,
        "max_seeds": int(r.models["n_seeds"].max()) if len(r.models) else 0,
        "summary": summary_context(values),
        "leaderboard": [dict(row, spec=spec_text(row)) for _, row in board.iterrows()],
        "significance": significance_notes(board),
        "baselines": frames["baselines"].to_dict("records"),
        "grid": frames["grid"].to_dict("records"), "factors": frames["factors"].to_dict("records"),
        "failures": frames["failures"].to_dict("records"), "figures": figs,
        "csv": [f"tables/{p.name}" for p in report.tables],
    }
    write_text(report.html, html.render(context))
    report.html.chmod(0o644)  # a page to share, not a private temp file
    return report
