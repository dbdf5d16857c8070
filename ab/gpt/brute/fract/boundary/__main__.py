"""Command line: python -m ab.gpt.brute.fract.boundary {map,zoom,dimension,cnn} --help"""
from __future__ import annotations

import json
import os
import sys

import click

from ..util import cli as cli_util
from .cnn_cli import cnn_cmd
from .config import ACTIVATIONS, DTYPES, KNOBS, READOUTS, SEED_MODES, Axis, BoundaryConfig, check_memory
from . import dimension, runner, zoom


def _grid_options(f):
    """The map settings shared by map and zoom (fresh groups per command: cloup keeps a group's options)."""
    Finite, opt = cli_util.Finite, cli_util.option
    groups = [
        cli_util.option_group(
            "Grid",
            opt("--x-knob", type=click.Choice(KNOBS), default="lr0", help="knob swept along x"),
            opt("--x-lo", type=Finite(), default=1e0, help="x value at the left edge"),
            opt("--x-hi", type=Finite(), default=1e5, help="x value at the right edge"),
            opt("--x-log/--x-linear", default=True, help="log or linear spacing of x"),
            opt("--y-knob", type=click.Choice(KNOBS), default="lr1", help="knob swept along y"),
            opt("--y-lo", type=Finite(), default=1e1, help="y value at the bottom edge"),
            opt("--y-hi", type=Finite(), default=1e4, help="y value at the top edge"),
            opt("--y-log/--y-linear", default=True, help="log or linear spacing of y"),
            opt("--res", type=int, default=64, help="pixels per side (both axes)"),
            opt("--res-x", type=int, show_default="--res", help="pixels along x"),
            opt("--res-y", type=int, show_default="--res", help="pixels along y")),
        cli_util.option_group(
            "Network and data",
            opt("--width", type=int, default=16, help="hidden width (= input dimension)"),
            opt("--activation", type=click.Choice(ACTIVATIONS), default="tanh", help="hidden activation"),
            opt("--layer-norm/--no-layer-norm", "norm", default=False, old=("--norm",),
                help="layer norm on the hidden pre-activation"),
            opt("--skip/--no-skip", default=False, help="skip connection: hidden = x + act(z)"),
            opt("--data-ratio", type=Finite(), default=1.0, help="samples = parameters x ratio"),
            opt("--n-data", type=int, show_default="parameters x --data-ratio",
                help="number of samples (1 = single point)")),
        cli_util.option_group(
            "Training",
            opt("--steps", type=int, default=500, help="gradient steps per network"),
            opt("--batch", "batch_size", type=int, old=("--batch-size",), show_default="full batch",
                help="minibatch size"),
            opt("--momentum", type=Finite(), default=0.0, help="SGD momentum, in [0, 1)"),
            opt("--lr0", type=Finite(), default=0.1, help="input-layer lr when not swept"),
            opt("--lr1", type=Finite(), default=0.1, help="output-layer lr when not swept"),
            opt("--offset0", type=Finite(), default=0.0, help="input-layer init offset when not swept"),
            opt("--offset1", type=Finite(), default=0.0, help="output-layer init offset when not swept"),
            opt("--seed", type=cli_util.Seed(), default=0, help="seed of the initial weights and the data"),
            opt("--seed-mode", type=click.Choice(SEED_MODES), default="shared",
                help="shared: one init and data set for all pixels; per_pixel: own seed per pixel"),
            opt("--dtype", type=click.Choice(DTYPES), default="float32", help="floating-point type of the networks")),
        cli_util.option_group(
            "Readout",
            opt("--readout", type=click.Choice(READOUTS), default="sum",
                help="sum (Sohl-Dickstein score) | final (final loss) | probe (loss at --probe-step)"),
            opt("--probe-step", type=int, show_default="last step", help="step read by --readout probe")),
        cli_util.option_group(
            "Advanced performance",
            opt("--tile", type=int, default=128, help="tile side; finished tiles are kept on disk"),
            opt("--chunk", type=int, default=256, help="networks trained together in one batch")),
    ]
    for g in reversed(groups):
        f = g(f)
    return cli_util.deprecated_flag("--no-norm", "norm", False, "--no-layer-norm")(f)


def _common_options(what: str, name: bool):
    """--maps, --name, --device and -q of map and zoom."""
    opts = [cli_util.option("--maps", "out_dir", type=cli_util.Path(file_okay=False), old=("--out",), required=True,
                            help=f"output folder for {what}; a rerun resumes")]
    if name:
        opts.append(cli_util.option("--name", type=cli_util.FileStem(), default="map",
                                    help="base name of the written files"))
    opts += [cli_util.option("--device", type=cli_util.Device(auto=True), default="cpu",
                             help="where the networks train; auto: cuda when torch sees a GPU, else cpu"),
             cli_util.quiet_option("no progress bar")]
    return cli_util.option_group("Common", *opts)


def _config(kw: dict) -> BoundaryConfig:
    """Build and validate the settings; errors become click usage errors (exit code 2)."""
    res = kw.pop("res")
    res_x, res_y = kw.pop("res_x"), kw.pop("res_y")
    res_x, res_y = (res if res_x is None else res_x), (res if res_y is None else res_y)
    x = Axis(kw.pop("x_knob"), kw.pop("x_lo"), kw.pop("x_hi"), res_x, kw.pop("x_log"))
    y = Axis(kw.pop("y_knob"), kw.pop("y_lo"), kw.pop("y_hi"), res_y, kw.pop("y_log"))
    kw["device"] = cli_util.resolve_device(kw["device"])
    cfg = BoundaryConfig(x=x, y=y, **kw)
    try:
        cfg.validate()
        check_memory(cfg.shape, cfg.working_bytes())
        if cfg.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"device {cfg.device!r} requested but CUDA is not available")
    except ValueError as e:
        raise click.UsageError(str(e))
    return cfg


@click.group(cls=cli_util.Group)
def cli():
    """Trainability-boundary explorer (Sohl-Dickstein 2024, arXiv 2402.06184).

    Trains one tiny network per pixel of a 2-D hyperparameter grid and colours each pixel by
    whether training converged (blue, negative score) or diverged (red, positive score).
    Run `COMMAND --help` for a command's options and examples.
    """


cli.add_command(cnn_cmd)


@cli.command("map", short_help="compute one map: <name>.npy, <name>.json, <name>.png, <name>_raw.png", epilog="""Examples:

\b
  nn-gpt-fractal boundary map --res 256 --maps out/boundary
  nn-gpt-fractal boundary map --x-knob lr --x-lo 0.01 --x-hi 100 --y-knob offset --y-lo -2 --y-hi 2 \\
      --y-linear --maps out/lr-offset
  nn-gpt-fractal boundary map --res 1024 --device cuda --maps out/big""")
@_common_options("<name>.npy, .json, .png, _raw.png and the finished tiles", name=True)
@_grid_options
def map_cmd(out_dir, name, quiet, **kw):
    """Compute a trainability map over the grid (resumable: finished tiles are reused)."""
    cfg = _config(kw)
    try:
        res = runner.compute_map(cfg, out_dir, progress=not quiet)
    except ValueError as e:  # --maps holds tiles of another map
        raise click.UsageError(str(e))
    paths = runner.write_outputs(res, out_dir, name)
    s = res.stats
    click.echo(f"{s['computed']} tiles computed, {s['reused']} reused, {res.seconds:.1f} s; "
               f"converged fraction {res.arrays['converged'].mean():.3f}")
    for p in paths.values():
        click.echo(p)


@cli.command("zoom", short_help="recompute frames zooming toward a border point: zoom.gif (+ zoom.mp4)", epilog="""Examples:

\b
  nn-gpt-fractal boundary zoom --frames 24 --maps out/zoom
  nn-gpt-fractal boundary zoom --frames 8 --factor 4 --centre-x 300 --centre-y 90 --maps out/zoom4""")
@_common_options("frame_NNN/ maps, zoom.gif (and zoom.mp4 with ffmpeg)", name=False)
@cli_util.option_group(
    "Zoom",
    cli_util.option("--frames", type=click.IntRange(min=1), default=16, help="frames, each zoomed in by --factor"),
    cli_util.option("--factor", type=cli_util.Finite(), default=2.0, help="zoom factor per frame (> 1)"),
    cli_util.option("--centre-x", type=cli_util.Finite(), show_default="border point nearest the centre",
                    help="zoom centre, x value"),
    cli_util.option("--centre-y", type=cli_util.Finite(), show_default="border point nearest the centre",
                    help="zoom centre, y value"),
    cli_util.option("--ms", type=click.IntRange(min=1), default=200, help="GIF frame duration in milliseconds"))
@_grid_options
def zoom_cmd(out_dir, frames, factor, centre_x, centre_y, ms, quiet, **kw):
    """Zoom toward a point on the border; every frame is recomputed at full resolution."""
    cfg = _config(kw)
    if not factor > 1:
        raise click.UsageError(f"--factor must be > 1, got {factor}")
    if (centre_x is None) != (centre_y is None):
        raise click.UsageError("give both --centre-x and --centre-y, or neither")
    centre = None if centre_x is None else (centre_x, centre_y)
    try:
        out = zoom.run_zoom(cfg, out_dir, frames, factor, centre, progress=not quiet, ms=ms)
    except ValueError as e:
        raise click.ClickException(str(e))
    click.echo(f"centre {out['centre']}")
    for p in out["paths"].values():
        click.echo(p)


@cli.command("dimension", short_help="box-counting fractal dimension of the border of saved maps", epilog="""Examples:

\b
  nn-gpt-fractal boundary dimension out/boundary/map.npy
  nn-gpt-fractal boundary dimension out/zoom --plot out/zoom/loglog.png -q""")
@click.argument("paths", nargs=-1, required=True, type=cli_util.Path(exists=True))
@cli_util.option_group(
    "Common",
    cli_util.option("--plot", type=cli_util.Path(dir_okay=False), show_default="no plot",
                    help="save the log-log box-counting plot here"),
    cli_util.option("--min-size", type=click.IntRange(min=1), default=1, help="smallest box size"),
    cli_util.quiet_option("print only the median line, not each map's dimension"))
def dimension_cmd(paths, plot, min_size, quiet):
    """Fractal dimension of the border of maps (.npy files or folders holding map.npy; zoom
    folders use their frames). Prints each and the median."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            frames = sorted(os.path.join(p, d, "map.npy") for d in os.listdir(p) if d.startswith("frame_"))
            files += [f for f in frames if os.path.exists(f)] or [os.path.join(p, "map.npy")]
        else:
            files.append(p)
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        raise click.UsageError(f"no map array at {missing[0]}")
    try:
        maps = [dimension.load_map(f) for f in files]
    except dimension.MapFileError as e:
        raise click.UsageError(str(e))
    med, res = dimension.median_dimension(maps, min_size=min_size)
    for f, r in zip(files, res):
        if not quiet:
            click.echo(f"{f}: {r.dimension:.4f}")
    click.echo(json.dumps({"median_dimension": med, "images": len(files)}))
    if plot:
        dimension.save_loglog(res, plot, labels=[os.path.basename(os.path.dirname(f)) or f for f in files])


def main(argv=None) -> int:
    """Entry point: errors are one line on stderr; usage errors exit with code 2."""
    try:
        rv = cli.main(args=argv, prog_name="python -m ab.gpt.brute.fract.boundary", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return 1
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        return e.exit_code
    except OSError as e:  # e.g. an output folder that cannot be written
        click.echo(f"error: {e}".splitlines()[0], err=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
