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


@click.group()
def main():
    """LEMUR (nn-dataset) round-trip commands."""


@main.command()
@click.option("--models", type=click.Path(file_okay=False, path_type=Path),
              help="generated models folder [<LEMUR root>/out/fractal]")
@click.option("--results", type=click.Path(file_okay=False, path_type=Path),
              help="NNEval results folder [<LEMUR root>/new_lemur]")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), help="LEMUR DB [<LEMUR root>/db/ab.nn.db]")
def migrate(models, results, db):
    """Rename old `_` model names (files, manifest, stat files, run records, DB rows) to the `-` scheme."""
    report = run(models or models_dir(), results or new_lemur_dir(), db or lemur_root() / "db" / "ab.nn.db")
    click.echo(report.line())
    return 0


@main.command("site-dir")
def site_dir():
    """Folder whose sitecustomize lets torchvision verify the recorded CIFAR-10 subset by its own sums."""
    click.echo(str(folder()))
    return 0


def cli(args: list[str] | None = None) -> None:
    cli_util.run(main, args)


if __name__ == "__main__":
    cli()
