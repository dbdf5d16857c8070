"""Command line: build the sweep report.

    python -m ab.gpt.brute.fract.report [--results new_lemur] [--models out/fractal] [--report out/report]
"""
from __future__ import annotations

from pathlib import Path

import click

from ..util import cli as cli_util
from ..util.paths import lemur_root, models_dir, new_lemur_dir
from .load import ResultsError
from .build import build_report

EXAMPLES = """Examples:

\b
  {prog}                      # the default sweep, also while it runs
  {prog} --results new_lemur --models out/fractal --report out/report
  {prog} --db db/ab.nn.db --top 20"""


@cli_util.command(epilog=EXAMPLES.format(prog="python -m ab.gpt.brute.fract.report"))
@cli_util.option_group(
    "Common",
    cli_util.option("--results", type=cli_util.Path(file_okay=False, path_type=Path),
                    show_default="<LEMUR root>/new_lemur",
                    help="NNEval's results folder (runs/, stat/train/, nn/)"),
    cli_util.option("--models", type=cli_util.Path(file_okay=False, path_type=Path),
                    show_default="<LEMUR root>/out/fractal when it exists",
                    help="models folder with manifest.jsonl, for the generated count and specs"),
    cli_util.option("--db", type=cli_util.Path(dir_okay=False, path_type=Path), show_default="none",
                    help="LEMUR SQLite DB (db/ab.nn.db) to read registered results from as well"),
    cli_util.option("--report", type=cli_util.Path(file_okay=False, path_type=Path), old=("--out",),
                    show_default="<LEMUR root>/out/report",
                    help="report folder: report.html, figures/ and tables/"),
    cli_util.quiet_option("no notes on stderr (figures not drawn, warnings); the summary line still prints"))
@cli_util.option_group(
    "Report",
    cli_util.option("--top", type=click.IntRange(min=1), default=10,
                    help="models in the leaderboard (and in the significance tests against #1)"),
    cli_util.option("--title", default="Fractal sweep report", help="title of the HTML page"))
def main(results, models, db, report, quiet, top, title):
    """Analyse a sweep: summary table, leaderboard with significance tests, figures (PNG and SVG),
    CSV tables and one self-contained HTML page. Works on a partial or still-running sweep."""
    results = results or new_lemur_dir()
    if models is None and models_dir().is_dir():
        models = models_dir()
    out = report or lemur_root() / "out" / "report"
    rep = build_report(results, out, models_dir=models, db=db, top=top, title=title)
    m = rep.results.models
    n_ok = int((m["status"] == "trained").sum())
    click.echo(f"{len(m)} models ({n_ok} trained); {len(rep.figures) // 2} figures, {len(rep.tables)} tables "
               f"-> {rep.html}")
    if not quiet:
        for stem, why in rep.missing_figures.items():
            click.echo(f"figure {stem} not drawn: {why}", err=True)
        for w in rep.results.warnings[:5]:
            click.echo(f"warning: {w}", err=True)
    return 0


report_cmd = cli_util.derive(main, "report", epilog=EXAMPLES.format(prog="nn-gpt-fractal report"))


def cli(args: list[str] | None = None) -> None:
    cli_util.run(main, args, errors=(ResultsError,))


if __name__ == "__main__":
    cli()
