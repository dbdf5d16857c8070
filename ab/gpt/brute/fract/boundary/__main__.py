"""Command line: python -m ab.gpt.brute.fract.boundary {map,zoom,dimension,cnn} --help"""
from __future__ import annotations

import json
import os
import sys

import click

from ..util import cli as cli_util
from .cnn_cli import cnn_cmd
from .config import ACTIVATIONS, DTYPES, KNOBS, READOUTS, SEED_MODES, SEED_MAX, Axis, BoundaryConfig, check_memory
from . import dimension, runner, zoom


def _grid_options(f):
    opts = [
        click.option("--x-knob", type=click.Choice(KNOBS), default="lr0", show_default=True, help="Knob swept along x."),
        click.option("--x-lo", type=cli_util.Finite(), default=1e0, show_default=True),
        click.option("--x-hi", type=cli_util.Finite(), default=1e5, show_default=True),
        click.option("--x-log/--x-linear", default=True, show_default=True, help="Log or linear spacing of x."),
        click.option("--y-knob", type=click.Choice(KNOBS), default="lr1", show_default=True, help="Knob swept along y."),
        click.option("--y-lo", type=cli_util.Finite(), default=1e1, show_default=True),
        click.option("--y-hi", type=cli_util.Finite(), default=1e4, show_default=True),
        click.option("--y-log/--y-linear", default=True, show_default=True),
        click.option("--res", type=int, default=64, show_default=True, help="Pixels per side (both axes)."),
        click.option("--res-x", type=int, default=None, help="Pixels along x (overrides --res)."),
        click.option("--res-y", type=int, default=None, help="Pixels along y (overrides --res)."),
        click.option("--width", type=int, default=16, show_default=True, help="Hidden width (= input dimension)."),
        click.option("--activation", type=str, default="tanh", show_default=True, help="|".join(ACTIVATIONS)),
        click.option("--norm/--no-norm", default=False, show_default=True, help="Layer norm on the hidden pre-activation."),
        click.option("--skip/--no-skip", default=False, show_default=True, help="Skip connection: hidden = x + act(z)."),
        click.option("--data-ratio", type=cli_util.Finite(), default=1.0, show_default=True, help="Samples = parameters x ratio."),
        click.option("--n-data", type=int, default=None, help="Number of samples (overrides --data-ratio; 1 = single point)."),
        click.option("--steps", type=int, default=500, show_default=True, help="Gradient steps per network."),
        click.option("--batch-size", type=int, default=None, help="Minibatch size (default: full batch)."),
        click.option("--momentum", type=cli_util.Finite(), default=0.0, show_default=True),
        click.option("--lr0", type=cli_util.Finite(), default=0.1, show_default=True, help="Input-layer lr when not swept."),
        click.option("--lr1", type=cli_util.Finite(), default=0.1, show_default=True, help="Output-layer lr when not swept."),
        click.option("--offset0", type=cli_util.Finite(), default=0.0, show_default=True, help="Input-layer init offset when not swept."),
        click.option("--offset1", type=cli_util.Finite(), default=0.0, show_default=True, help="Output-layer init offset when not swept."),
        click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, show_default=True),
        click.option("--seed-mode", type=str, default="shared", show_default=True,
                     help="shared: one init and data set for all pixels; per_pixel: own seed per pixel."),
        click.option("--dtype", type=str, default="float32", show_default=True, help="|".join(DTYPES)),
        click.option("--readout", type=str, default="sum", show_default=True,
                     help="sum (Sohl-Dickstein score) | final (final loss) | probe (loss at --probe-step)."),
        click.option("--probe-step", type=int, default=None, help="Step read by --readout probe (default: last)."),
        click.option("--device", type=cli_util.Device(), default="cpu", show_default=True, help="cpu, cuda, cuda:1, ..."),
        click.option("--tile", type=int, default=128, show_default=True, help="Tile side; finished tiles are kept on disk."),
        click.option("--chunk", type=int, default=256, show_default=True, help="Networks trained together in one batch."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _config(kw: dict) -> BoundaryConfig:
    """Build and validate the settings; errors become click usage errors (exit code 2)."""
    res = kw.pop("res")
    res_x, res_y = kw.pop("res_x"), kw.pop("res_y")
    res_x, res_y = (res if res_x is None else res_x), (res if res_y is None else res_y)
    x = Axis(kw.pop("x_knob"), kw.pop("x_lo"), kw.pop("x_hi"), res_x, kw.pop("x_log"))
    y = Axis(kw.pop("y_knob"), kw.pop("y_lo"), kw.pop("y_hi"), res_y, kw.pop("y_log"))
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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def cli():
    """Trainability-boundary explorer (Sohl-Dickstein 2024, arXiv 2402.06184).

    Trains one tiny network per pixel of a 2-D hyperparameter grid and colours each pixel by
    whether training converged (blue, negative score) or diverged (red, positive score).

    \b
      map        compute one map: <name>.npy, <name>.json, <name>.png, <name>_raw.png
      zoom       recompute frames zooming toward a border point: zoom.gif (+ zoom.mp4)
      dimension  box-counting fractal dimension of the border of saved maps
      cnn        the same map for a LEMUR model file trained on CIFAR-10 (lr x momentum)
    """


cli.add_command(cnn_cmd)


@cli.command("map")
@_grid_options
@click.option("--out", "out_dir", type=cli_util.Path(file_okay=False), required=True, help="Output folder (rerun resumes).")
@click.option("--name", type=cli_util.FileStem(), default="map", show_default=True, help="Base name of the written files.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def map_cmd(out_dir, name, quiet, **kw):
    """Compute a trainability map over the grid (resumable: finished tiles are reused)."""
    cfg = _config(kw)
    try:
        res = runner.compute_map(cfg, out_dir, progress=not quiet)
    except ValueError as e:  # --out holds tiles of another map
        raise click.UsageError(str(e))
    paths = runner.write_outputs(res, out_dir, name)
    s = res.stats
    click.echo(f"{s['computed']} tiles computed, {s['reused']} reused, {res.seconds:.1f} s; "
               f"converged fraction {res.arrays['converged'].mean():.3f}")
    for p in paths.values():
        click.echo(p)


@cli.command("zoom")
@_grid_options
@click.option("--out", "out_dir", type=cli_util.Path(file_okay=False), required=True)
@click.option("--frames", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--factor", type=cli_util.Finite(), default=2.0, show_default=True, help="Zoom factor per frame (> 1).")
@click.option("--centre-x", type=cli_util.Finite(), default=None, help="Zoom centre, x value (default: border point nearest the centre).")
@click.option("--centre-y", type=cli_util.Finite(), default=None, help="Zoom centre, y value.")
@click.option("--ms", type=click.IntRange(min=1), default=200, show_default=True, help="GIF frame duration in milliseconds.")
@click.option("--quiet", is_flag=True)
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


@cli.command("dimension")
@click.argument("paths", nargs=-1, required=True, type=cli_util.Path(exists=True))
@click.option("--plot", type=cli_util.Path(dir_okay=False), default=None, help="Save the log-log box-counting plot here.")
@click.option("--min-size", type=click.IntRange(min=1), default=1, show_default=True, help="Smallest box size.")
def dimension_cmd(paths, plot, min_size):
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
