"""`nn-gpt-fractal`: one entry point whose subcommands are the tools' own click commands.

Subcommands import their module only when run, so `--help` stays fast and a tool that is not installed
(e.g. NNEval before it lands) gives a one-line message instead of breaking the others.
"""
from __future__ import annotations

import importlib

import click

from . import __version__
from .util import cli as cli_util

# name -> (module, help); the module's click command is its `main` (or `cli`)
COMMANDS = {
    "generate": ("ab.gpt.brute.fract.AlterNNFN", "generate and validate FractalNet variants (AlterNNFN)"),
    "eval": ("ab.gpt.NNEval", "train and evaluate generated models into new_lemur/ (NNEval)"),
    "report": ("ab.gpt.brute.fract.report.__main__", "analyse a sweep: tables, figures, statistics, HTML"),
    "study": ("ab.gpt.brute.fract.study.__main__", "run or plan a declared study (study.toml) end to end"),
    "boundary": ("ab.gpt.brute.fract.boundary.__main__", "trainability-boundary maps, zooms and dimensions"),
}


def _unavailable(name: str, module: str, why: str) -> click.Command:
    def run(args):
        raise click.ClickException(f"'{name}' is not available: {module} cannot be imported ({why})")
    return click.Command(name, callback=run, params=[click.Argument(["args"], nargs=-1)],
                         context_settings={"ignore_unknown_options": True}, help=COMMANDS[name][1])


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module = COMMANDS[name][0]
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name):
                return _unavailable(name, module, "module not found")
            raise
        for attr in ("main", "cli"):
            cmd = getattr(mod, attr, None)
            if isinstance(cmd, click.Command):
                return cmd
        return _unavailable(name, module, "it has no click command named main or cli")

    def format_commands(self, ctx, formatter):  # from the table above: listing imports nothing
        with formatter.section("Commands"):
            formatter.write_dl([(n, h) for n, (_, h) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(version=__version__, message="%(version)s")
def group():
    """Generate, evaluate and analyse FractalNet variants for the LEMUR dataset.

    Run `nn-gpt-fractal COMMAND --help` for a command's options."""


def main(args: list[str] | None = None) -> None:
    cli_util.run(group, args)


if __name__ == "__main__":
    main()
