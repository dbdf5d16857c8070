"""Generate FractalNet variants as LEMUR model files (the paper's `AlterNNFN`).

    python -m ab.gpt.brute.fract.AlterNNFN --help

Every dimension takes a comma list (integers also ranges like 1-4). Unset dimensions use the default
space, widened by installed plugins. Output defaults to <LEMUR root>/out/fractal, where NNEval looks.
"""
from __future__ import annotations

import functools
import itertools
import time
from pathlib import Path

import click
from tqdm import tqdm

from .util import cli as cli_util
from .space.baselines import baselines_for
from .space.families import NONE
from .generation.generate import OutputError, generate
from .space.generators import Request
from .sweep.loop import EVAL_MODULE, run_nneval, run_rounds
from .generation.manifest import Manifest, ManifestError
from .util.paths import models_dir, new_lemur_dir
from .space.registry import default_registry
from .space.space import LARSSON, PAPER_CHANNELS, Space, SpaceError
from .space.spec import ArchSpec, SpecError


def _channels(values: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    out = []
    for v in values:
        if v == "paper":
            out.append(PAPER_CHANNELS)
        else:
            out.append(cli_util.int_list(v, "channels"))
    return tuple(out)


def build_space(kind, depth, columns, plain_layers, channels, conv, norm, act, order, dropout, join,
                local_drop, global_drop, pool, head) -> Space:
    reg = default_registry()
    space = Space.default(reg, kind=kind)
    changes = {}
    if depth is not None:
        changes["depth"] = cli_util.int_list(depth, "depth")
    if columns is not None:
        changes["columns"] = cli_util.int_list(columns, "columns")
    if plain_layers is not None:
        changes["plain_layers"] = cli_util.int_list(plain_layers, "plain-layers")
    if channels:
        changes["channels"] = _channels(channels)
    for name, value in (("conv", conv), ("norm", norm), ("act", act), ("order", order), ("join", join),
                        ("pool", pool), ("head", head)):
        if value is not None:
            changes[name] = cli_util.str_list(value)
    if dropout is not None:  # rates, and/or "larsson" (per-block 0..0.4 scaled to the depth)
        changes["dropout"] = tuple(dict.fromkeys(w if w == LARSSON else cli_util.float_list(w, "dropout")[0]
                                                 for w in cli_util.str_list(dropout)))
    for name, value in (("local_drop", local_drop), ("global_drop", global_drop)):
        if value is not None:
            changes[name] = cli_util.float_list(value, name.replace("_", "-"))
    space = space.with_values(**changes)
    space.validate(reg)
    return space


def list_plugins() -> None:
    reg = default_registry()
    for name, c in reg.contributions.items():
        click.echo(f"{name}:")
        click.echo(f"  layer families: {', '.join(c.families) or '-'}")
        click.echo(f"  layer options:  {', '.join(c.options) or '-'}")
        click.echo(f"  generators:     {', '.join(c.generators) or '-'}")
    for err in reg.errors:
        click.echo(f"failed: {err}")


def list_space(space: Space) -> None:
    reg = default_registry()
    click.echo(f"{'dimension':<13}{'n':>4}  values")
    for name, n, shown in space.describe():
        click.echo(f"{name:<13}{n:>4}  {shown}")
    canonical = sum(1 for _ in space)
    click.echo(f"raw points: {space.raw_size}; canonical specs: {canonical} "
               f"(distinct architectures are counted after validation)")
    click.echo("layer options by slot: " + "; ".join(
        f"{slot}: {', '.join(reg.options_for(slot) + ([NONE] if slot in ('norm', 'act') else []))}"
        for slot in ("conv", "norm", "act")))


EXAMPLES = """Examples:

\b
  {prog}
  {prog} --depth 1-3 --columns 1-3 --generator stratified --limit 100
  {prog} --conv conv3x3,conv5x5 --norm bn,none --dry-run
  {prog} --baselines --models out/fractal
  {prog} --generator llm --limit 8 --rounds 3 --eval-arg=--epochs=1"""

_COMMON = cli_util.option_group(
    "Common",
    cli_util.option("--models", type=cli_util.Path(file_okay=False, path_type=Path), old=("--out",),
                    show_default="<LEMUR root>/out/fractal",
                    help="models folder the valid models are written to (where NNEval looks)"),
    cli_util.option("--limit", type=click.IntRange(min=1), show_default="the whole space",
                    help="stop once the models folder holds this many valid models of these proposals (models "
                         "already there count)"),
    cli_util.option("--seed", type=cli_util.Seed(), default=0, help="seed of random/stratified sampling"),
    cli_util.option("--dry-run", is_flag=True, help="show what would be generated; write nothing"),
    cli_util.quiet_option("no progress bar; the summary still prints"))
_SPACE = cli_util.option_group(
    "Space",
    "each takes a comma list (integers also ranges like 1-4); unset ones keep the default space, which "
         "installed plugins may widen (nn-gpt-fractal space lists it)",
    cli_util.option("--kind", type=click.Choice(["fractal", "plain"]), default="fractal",
                    help="fractal networks, or plain (non-fractal) baselines built from the same layers"),
    cli_util.option("--depth", show_default="1-4",
                    help="fractal depth N: number of blocks, each followed by 2x2 pooling"),
    cli_util.option("--columns", show_default="1-4", help="columns C of each fractal block"),
    cli_util.option("--plain-layers", show_default="5,10,20,40", help="ops in a plain baseline (with --kind plain)"),
    cli_util.option("--channels", multiple=True, show_default="paper",
                    help="channel schedule per block, e.g. 64,128,256,512,512 or 'paper'; repeat for several"),
    cli_util.option("--conv", show_default="conv3x3,conv5x5",
                    help="convolution options, e.g. conv3x3,conv5x5 (see nn-gpt-fractal space)"),
    cli_util.option("--norm", show_default="none,bn,inorm", help="normalization options including none, e.g. none,bn,inorm"),
    cli_util.option("--act", show_default="relu,gelu,silu", help="activation options, e.g. relu,gelu,silu"),
    cli_util.option("--order", show_default="conv-norm-act,norm-act-conv", help="layer orders inside a column op"),
    cli_util.option("--dropout", show_default="0,0.2",
                    help="dropout rates in [0, 1) at the end of each op, and/or 'larsson' (per-block 0, 0.1, .., "
                         "0.4 scaled to N blocks)"),
    cli_util.option("--join", show_default="mean,max", help="join rules: mean, sum, max"),
    cli_util.option("--local-drop", show_default="0.15", help="local drop-path rates in [0, 1)"),
    cli_util.option("--global-drop", show_default="0.5", help="share of batches using global drop-path, in [0, 1]"),
    cli_util.option("--pool", show_default="max", help="pooling after each block: max, avg"),
    cli_util.option("--head", show_default="gap", help="classifier head: gap (global average pool + linear), flatten"))
_GENERATOR = cli_util.option_group(
    "Generator",
    cli_util.option("--generator", "generator_name", default="enumerate",
                    help="how to pick points: enumerate, random, stratified, or a plugin's (see nn-gpt-fractal "
                         "plugins)"),
    cli_util.option("--gen-opt", multiple=True, metavar="KEY=VALUE", show_default="none",
                    help="option passed to the generator (repeatable)"),
    cli_util.option("--baselines", is_flag=True,
                    help="also generate, for every valid fractal variant, plain networks of 5, 10, 20, 40 ops and "
                         "its deepest column alone, from the same layers and widths"))
_VALIDATION = cli_util.option_group(
    "Validation",
    cli_util.option("--validate", "mode", type=click.Choice(["meta", "real"]), default="meta",
                    help="meta: shapes, signature, forward+backward on the meta device; real: also real CPU "
                         "tensors, train_setup and learn"),
    cli_util.option("--workers", type=click.IntRange(min=1), default=2, help="jailed validation processes"))
_LOOP = cli_util.option_group(
    "Closed loop",
    cli_util.option("--rounds", type=click.IntRange(min=1), show_default="no loop",
                    help="this many rounds of: generate --limit models, evaluate them with NNEval, let the "
                         "generator read the results (needs --limit)"),
    cli_util.option("--results", type=cli_util.Path(file_okay=False, path_type=Path), old=("--new-lemur",),
                    show_default="<LEMUR root>/new_lemur",
                    help="with --rounds: NNEval's results folder, read back as feedback"),
    cli_util.option("--eval-arg", "eval_args", multiple=True, metavar="ARG", show_default="none",
                    help="with --rounds: argument passed to NNEval, e.g. --eval-arg=--epochs=1 (repeatable)"),
    cli_util.option("--eval-module", default=EVAL_MODULE, hidden=True,
                    help="module run as `python -m MODULE --models DIR --results DIR [ARGS]` to evaluate a round"))
_LIMITS = cli_util.option_group(
    "Limits",
    cli_util.option("--timeout", type=cli_util.Finite(min=1), default=120, help="seconds allowed to validate one model"),
    cli_util.option("--unsafe-no-jail", is_flag=True,
                    help="DEBUGGING ONLY, UNSAFE: run model code without the bubblewrap jail (any model can then "
                         "read, write and run anything this user can)"))


@cli_util.command(epilog=EXAMPLES.format(prog="python -m ab.gpt.brute.fract.AlterNNFN"))
@_COMMON
@_SPACE
@_GENERATOR
@_VALIDATION
@_LOOP
@_LIMITS
@cli_util.deprecated_mode("--list-space", "show_space", "nn-gpt-fractal space")
@cli_util.deprecated_mode("--list-plugins", "show_plugins", "nn-gpt-fractal plugins")
def main(models, limit, seed, dry_run, quiet, kind, depth, columns, plain_layers, channels, conv, norm, act, order,
         dropout, join, local_drop, global_drop, pool, head, generator_name, gen_opt, baselines, mode, workers,
         rounds, results, eval_args, eval_module, timeout, unsafe_no_jail, show_space, show_plugins):
    """Generate and validate FractalNet variants as LEMUR model files.

    Each point of the declared space is rendered through the Jinja2 template, statically checked,
    then instantiated and run forward and backward in a jailed process (bubblewrap); only models that pass and
    are architecturally distinct from earlier ones are written. Reruns skip finished work.
    """
    if show_plugins:
        list_plugins()
        return 0
    space = build_space(kind, depth, columns, plain_layers, channels, conv, norm, act, order, dropout, join,
                        local_drop, global_drop, pool, head)
    if show_space:
        list_space(space)
        return 0
    gen = functools.partial(generate, unsafe_no_jail=unsafe_no_jail)
    if unsafe_no_jail:
        click.echo("WARNING: --unsafe-no-jail: model code runs WITHOUT the jail (debugging only)", err=True)
        eval_args = tuple(eval_args) + ("--unsafe-no-jail",)
    reg = default_registry()
    if generator_name not in reg.generators:
        raise click.BadParameter(f"unknown generator {generator_name!r}: choose from "
                                 f"{', '.join(reg.generators)}", param_hint="--generator")
    options = {}
    for item in gen_opt:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--gen-opt")
        k, v = item.split("=", 1)
        options[k.strip()] = v
    out = models or models_dir()
    if rounds:
        if baselines:
            raise click.UsageError("--baselines is not available with --rounds")
        return closed_loop(rounds, space, generator_name, options, limit, seed, out, workers, mode, timeout,
                           results or new_lemur_dir(), eval_args, eval_module, dry_run, gen)
    request = Request(limit=limit, seed=seed, options=options, out_dir=out)
    specs = reg.generators[generator_name].propose(space, request)
    proposed: list = []
    if baselines:  # remember the proposals: their valid fractal ones get baselines afterwards
        specs = _remember(specs, proposed)
    if dry_run:
        preview = list(itertools.islice(specs, limit)) if limit else list(specs)
        for spec in preview[:20]:
            click.echo(spec.name)
        click.echo(f"dry run: {len(preview)} specs would be proposed to validation into {out}")
        return 0

    builtin = generator_name in ("enumerate", "random", "stratified")
    total = limit or (sum(1 for _ in space) if builtin else None)
    started = time.perf_counter()
    with tqdm(total=total, desc="generating", unit="model", disable=quiet) as bar:
        def progress(status: str, name: str) -> None:
            if status == "valid" or limit is None:
                bar.update(1)
            bar.set_postfix_str(status, refresh=False)

        outcome = gen(specs, reg, out, limit=limit, generator=generator_name, workers=workers,
                           mode=mode, timeout=timeout, progress=progress)
    elapsed = time.perf_counter() - started
    validated = len(outcome.accepted) + len(outcome.invalid) + len(outcome.duplicates)
    click.echo(f"{len(outcome.accepted)} new valid models, {len(outcome.duplicates)} duplicates, "
               f"{len(outcome.invalid)} invalid, {outcome.skipped} already done; "
               f"{validated} validated in {elapsed:.1f} s ({validated / max(elapsed, 1e-9):.1f}/s) -> {out}")
    for name, reason in outcome.invalid[:10]:
        click.echo(f"invalid: {name}: {reason}", err=True)
    if baselines:
        records = Manifest.load(out).records
        valid = [s for s in proposed if isinstance(s, ArchSpec)
                 and records.get(s.spec_hash, {}).get("status") == "valid"]
        with tqdm(desc="baselines", unit="model", disable=quiet) as bar:
            b = gen(baselines_for(valid), reg, out, limit=None, generator="baselines", workers=workers,
                         mode=mode, timeout=timeout, progress=lambda status, name: bar.update(1))
        click.echo(f"baselines of {len(valid)} fractal variants: {len(b.accepted)} new valid models, "
                   f"{len(b.duplicates)} duplicates, {len(b.invalid)} invalid, {b.skipped} already done")
    return 0


def _remember(items, into: list):
    for item in items:
        into.append(item)
        yield item


def closed_loop(rounds, space, generator_name, options, limit, seed, out, workers, mode, timeout, new_lemur,
                eval_args, eval_module, dry_run, gen=generate) -> int:
    """`--rounds`: see loop.py. Round k uses seed + k - 1 and adds gen options round=k, new_lemur=PATH."""
    import importlib.util

    if dry_run:
        raise click.UsageError("--rounds trains models: it cannot be combined with --dry-run")
    if not limit:
        raise click.BadParameter("--rounds needs --limit (new models per round)", param_hint="--rounds")
    if importlib.util.find_spec(eval_module) is None:
        raise click.UsageError(f"--rounds evaluates with {eval_module}, which is not installed")
    reg = default_registry()

    def propose(k: int):
        opts = {"round": str(k), "new_lemur": str(new_lemur), **options}
        return reg.generators[generator_name].propose(space, Request(limit=limit, seed=seed + k - 1, options=opts,
                                                                     out_dir=out))

    def generate_round(proposals):
        return gen(proposals, reg, out, limit=limit, generator=generator_name, workers=workers, mode=mode,
                        timeout=timeout)

    history = run_rounds(rounds, propose, generate_round,
                         lambda folder: run_nneval(folder, new_lemur, eval_args, module=eval_module),
                         out, new_lemur, say=click.echo)
    best = [r.best for r in history if r.best]
    if best:
        name, acc = max(best, key=lambda x: x[1])
        click.echo(f"best after {rounds} rounds: {name} {acc:.4f} (results in {new_lemur})")
    return 0


SPACE_OPTIONS = ("kind", "depth", "columns", "plain_layers", "channels", "conv", "norm", "act", "order", "dropout",
                 "join", "local_drop", "global_drop", "pool", "head")
generate_cmd = cli_util.derive(main, "generate", drop=["show_space", "show_plugins"],
                               epilog=EXAMPLES.format(prog="nn-gpt-fractal generate"))
space_cmd = cli_util.derive(
    main, "space", keep=SPACE_OPTIONS, fixed={"show_space": True},
    help="List the space's dimensions, their values and its size (the same options as generate).",
    epilog="Examples:\n\n\b\n  nn-gpt-fractal space\n  nn-gpt-fractal space --depth 1-2 --columns 1-3 "
           "--dropout larsson")
plugins_cmd = cli_util.derive(main, "plugins", keep=(), fixed={"show_plugins": True},
                              help="List the loaded plugins and what each contributes (layers, options, "
                                   "generators).", epilog="Example:\n\n\b\n  nn-gpt-fractal plugins")


def cli(args: list[str] | None = None) -> None:
    cli_util.run(main, args, errors=(SpaceError, SpecError, ManifestError, OutputError))


if __name__ == "__main__":
    cli()
