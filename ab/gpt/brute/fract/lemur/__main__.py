"""LEMUR commands of nn-gpt-fractal.

    python -m ab.gpt.brute.fract.lemur migrate [--models DIR] [--results DIR] [--db FILE]
        rename outputs of the old `_` naming scheme to nn-dataset's grammar (idempotent; see migrate.py)
    python -m ab.gpt.brute.fract.lemur site-dir
        print the folder to put on PYTHONPATH so torchvision accepts the recorded CIFAR-10 subset (subset.py)
"""
from __future__ import annotations

from pathlib import Path

import click

from ..util import cli as cli_util
from ..util.paths import lemur_root, models_dir, new_lemur_dir
from .migrate import migrate as run
from .subset import site_dir as folder


@click.group(cls=cli_util.Group)
def main():
    """LEMUR (nn-dataset) round-trip commands."""


@main.command(epilog="Examples:\n\n\b\n  nn-gpt-fractal lemur migrate\n"
                     "  nn-gpt-fractal lemur migrate --models out/fractal --results new_lemur "
                     "--db db/ab.nn.db")
@cli_util.option_group(
    "Common",
    cli_util.option("--models", type=cli_util.Path(file_okay=False, path_type=Path),
                    show_default="<LEMUR root>/out/fractal", help="models folder written by the generator"),
    cli_util.option("--results", type=cli_util.Path(file_okay=False, path_type=Path),
                    show_default="<LEMUR root>/new_lemur", help="NNEval's results folder"),
    cli_util.option("--db", type=cli_util.Path(dir_okay=False, path_type=Path),
                    show_default="<LEMUR root>/db/ab.nn.db", help="LEMUR SQLite DB"))
def migrate(models, results, db):
    """Rename old `_` model names (files, manifest, stat files, run records, DB rows) to the `-` scheme."""
    report = run(models or models_dir(), results or new_lemur_dir(), db or lemur_root() / "db" / "ab.nn.db")
    click.echo(report.line())
    return 0


@main.command("site-dir", epilog="Example:\n\n\b\n  PYTHONPATH=$(python -m ab.gpt.brute.fract.lemur site-dir) python ...")
def site_dir():
    """Folder whose sitecustomize lets torchvision verify the recorded CIFAR-10 subset by its own sums."""
    click.echo(str(folder()))
    return 0


def cli(args: list[str] | None = None) -> None:
    cli_util.run(main, args)


if __name__ == "__main__":
    cli()
