"""Command line: run or plan a declared study.

    python -m ab.gpt.brute.fract.study run studies/cifar10-subset/study.toml
    python -m ab.gpt.brute.fract.study plan studies/cifar10-subset/study.toml
"""
from __future__ import annotations

import time
from pathlib import Path

import click

from ..util import cli as cli_util
from ..trial.data import DataError
from ..generation.generate import OutputError
from ..generation.manifest import ManifestError
from ..space.space import SpaceError
from . import runner
from .spec import StudyError, load

STUDY = click.argument("study", type=cli_util.Path(exists=True, path_type=Path))


@click.group(cls=cli_util.Group)
def main():
    """Run a study declared in a study.toml: generate its sample, train it (successive halving, then several
    seeds for the selection), and write results.csv, the report and the findings next to the file."""


@main.command("run", epilog="Example:\n\n\b\n  nn-gpt-fractal study run studies/cifar10-subset/study.toml")
@STUDY
@cli_util.option_group("Common", cli_util.quiet_option("no progress bars (e.g. when logging to a file)"))
def run_cmd(study, quiet):
    """Run STUDY (a study.toml or its folder) to the end; rerun to continue an interrupted run."""
    spec = load(study)
    say = lambda m: click.echo(f"{time.strftime('%H:%M:%S')} {m}", err=True)  # noqa: E731
    out = runner.run(spec, say=say, quiet=quiet)
    for line in out.findings:
        click.echo(line)
    click.echo(f"study {spec.name}: {out.trained_epochs} epochs trained in this run; {out.wall_s:.1f} s; "
               f"results in {spec.folder}")
    return 0


@main.command("plan", epilog="Example:\n\n\b\n  nn-gpt-fractal study plan studies/cifar10-subset/study.toml "
                             "--calibrate")
@STUDY
@cli_util.option_group(
    "Common",
    cli_util.option("--calibrate", is_flag=True, help="time a few training steps per shape class on this machine "
                    "(cached) for a time estimate; without it the plan gives FLOPs"))
def plan_cmd(study, calibrate):
    """Generate STUDY's sample (reused by run), show its coverage and estimate what training will cost."""
    runner.plan(load(study), say=click.echo, calibrate=calibrate)
    return 0


@main.command("verify", epilog="Example:\n\n\b\n  nn-gpt-fractal study verify studies/cifar10-subset "
                               "--rows 3")
@STUDY
@cli_util.option_group(
    "Common",
    cli_util.option("--rows", type=click.IntRange(min=1), default=3, help="rows of results.csv to retrain from scratch"),
    cli_util.option("--seed", type=cli_util.Seed(), default=0, help="which rows (seeded pick)"),
    cli_util.option("--tolerance-pp", type=cli_util.Finite(min=0), default=3.0,
                    help="largest accepted accuracy difference, in percentage points"),
    cli_util.quiet_option("no progress messages; the rows and the verdict still print"))
def verify_cmd(study, rows, seed, tolerance_pp, quiet):
    """Retrain ROWS rows of STUDY's results.csv with the recorded protocol and seed; exit 1 if any differs by
    more than the tolerance."""
    say = (lambda m: None) if quiet else (lambda m: click.echo(f"{time.strftime('%H:%M:%S')} {m}", err=True))
    items = runner.verify(load(study), rows, say=say, seed=seed)
    bad = [i for i in items if i["diff_pp"] is None or abs(i["diff_pp"]) > tolerance_pp]
    for i in items:
        click.echo(f"{i['model']},seed {i['seed']},{i['epochs']} epochs,{i['eval']}: recorded {i['recorded']:.4f} "
                   f"retrained {i['retrained']:.4f} ({i['diff_pp']:+.2f} pp)" if i["retrained"] is not None else
                   f"{i['model']}: retraining failed")
    click.echo(f"{len(items) - len(bad)} of {len(items)} rows within {tolerance_pp} pp")
    return 1 if bad else 0


def cli(args: list[str] | None = None) -> None:
    cli_util.run(main, args, errors=(StudyError, DataError, OutputError, ManifestError, SpaceError))


if __name__ == "__main__":
    cli()
