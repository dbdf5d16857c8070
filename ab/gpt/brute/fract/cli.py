"""`nn-gpt-fractal`: one entry point whose subcommands are the tools' own click commands.

Subcommands import their module only when run, so `--help` stays fast and a tool that is not installed
gives a one-line message instead of breaking the others. A new subcommand is one row of COMMANDS.
"""
from __future__ import annotations

import importlib
from typing import NamedTuple

import click

from . import __version__
from .util import cli as cli_util


class Entry(NamedTuple):
    module: str
    attr: str  # the module's click command
    help: str
    section: str


COMMANDS = {
    "space": Entry("ab.gpt.brute.fract.AlterNNFN", "space_cmd", "list the space's dimensions, values and size",
                   "Pipeline"),
    "generate": Entry("ab.gpt.brute.fract.AlterNNFN", "generate_cmd",
                      "generate and validate FractalNet variants into the models folder (AlterNNFN)", "Pipeline"),
    "plan": Entry("ab.gpt.NNEval", "plan_cmd", "estimate a sweep: FLOPs, time on this machine, run order",
                  "Pipeline"),
    "eval": Entry("ab.gpt.NNEval", "eval_cmd", "train and evaluate the models into the results folder and DB (NNEval)",
                  "Pipeline"),
    "report": Entry("ab.gpt.brute.fract.report.__main__", "report_cmd",
                    "analyse a sweep (also a running one): tables, figures, statistics, HTML", "Pipeline"),
    "boundary": Entry("ab.gpt.brute.fract.boundary.__main__", "cli",
                      "trainability-boundary maps, zooms and dimensions", "Analysis"),
    "lemur": Entry("ab.gpt.brute.fract.lemur.__main__", "main", "LEMUR round trip: migrate old names, site-dir",
                   "LEMUR"),
    "plugins": Entry("ab.gpt.brute.fract.AlterNNFN", "plugins_cmd", "list loaded plugins and their contributions",
                     "Extending"),
    "study": Entry("ab.gpt.brute.fract.study.__main__", "main", "run or plan a declared study (study.toml) end to end",
                   "Pipeline"),
}


def _unavailable(name: str, module: str, why: str) -> click.Command:
    def run(args):
        raise click.ClickException(f"'{name}' is not available: {module} cannot be imported ({why})")
    return click.Command(name, callback=run, params=[click.Argument(["args"], nargs=-1)],
                         context_settings={"ignore_unknown_options": True}, help=COMMANDS[name].help)


class LazyGroup(cli_util.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        entry = COMMANDS[name]
        try:
            mod = importlib.import_module(entry.module)
        except ModuleNotFoundError as e:
            if e.name and entry.module.startswith(e.name):
                return _unavailable(name, entry.module, "module not found")
            raise
        cmd = getattr(mod, entry.attr, None)
        if isinstance(cmd, click.Command):
            return cmd
        return _unavailable(name, entry.module, f"it has no click command named {entry.attr}")

    def format_commands(self, ctx, formatter):  # from the table above: listing imports nothing
        sections: dict[str, list] = {}
        width = max(map(len, COMMANDS))  # one column for all sections
        for name, entry in COMMANDS.items():
            sections.setdefault(entry.section, []).append((name.ljust(width), entry.help))
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, epilog="""Examples:

\b
  nn-gpt-fractal space                 # what the default space holds
  nn-gpt-fractal generate              # into <LEMUR root>/out/fractal
  nn-gpt-fractal plan                  # how long eval would take here
  nn-gpt-fractal eval --device cuda    # into <LEMUR root>/new_lemur and the DB
  nn-gpt-fractal report                # <LEMUR root>/out/report/report.html""")
@click.version_option(version=__version__, message="%(version)s")
def group():
    """Generate, evaluate and analyse FractalNet variants for the LEMUR dataset.

    Run `nn-gpt-fractal COMMAND --help` for a command's options and examples."""


def main(args: list[str] | None = None) -> None:
    cli_util.run(group, args)


if __name__ == "__main__":
    main()
