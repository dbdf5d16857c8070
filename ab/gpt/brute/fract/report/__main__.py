"""Command line: build the sweep report.

    python -m ab.gpt.brute.fract.report [--results new_lemur] [--models out/fractal] [--out out/report]
"""
from __future__ import annotations

from pathlib import Path

import click

from ..util import cli as cli_util
from ..util.paths import lemur_root, models_dir, new_lemur_dir
from .load import ResultsError
from .build import build_report


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--results", type=cli_util.Path(file_okay=False, path_type=Path),
              help="NNEval's results folder (runs/, stat/train/, nn/) [<LEMUR root>/new_lemur]")
@click.option("--models", type=cli_util.Path(file_okay=False, path_type=Path),
              help="generator output with manifest.jsonl, for the generated count and specs "
                   "[<LEMUR root>/out/fractal when it exists]")
@click.option("--db", type=cli_util.Path(dir_okay=False, path_type=Path),
              help="LEMUR SQLite DB (db/ab.nn.db) to read registered results from as well")
@click.option("--out", type=cli_util.Path(file_okay=False, path_type=Path),
              help="output folder for report.html, figures/ and tables/ [<LEMUR root>/out/report]")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="models in the leaderboard (and in the significance tests against #1)")
@click.option("--title", default="Fractal sweep report", show_default=True)
def main(results, models, db, out, top, title):
    """Analyse a sweep: summary table, leaderboard with significance tests, figures (PNG and SVG),
    CSV tables and one self-contained HTML page. Works on a partial or still-running sweep."""
    results = results or new_lemur_dir()
    if models is None and models_dir().is_dir():
        models = models_dir()
    out = out or lemur_root() / "out" / "report"
    rep = build_report(results, out, models_dir=models, db=db, top=top, title=title)
    m = rep.results.models
    n_ok = int((m["status"] == "trained").sum())
    click.echo(f"{len(m)} models ({n_ok} trained); {len(rep.figures) // 2} figures, {len(rep.tables)} tables "
               f"-> {rep.html}")
    for stem, why in rep.missing_figures.items():
        click.echo(f"figure {stem} not drawn: {why}", err=True)
    for w in rep.results.warnings[:5]:
        click.echo(f"warning: {w}", err=True)
    return 0


def cli(args: list[str] | None = None) -> None:
    cli_util.run(main, args, errors=(ResultsError,))


if __name__ == "__main__":
    cli()
