"""`cnn` subcommand of the boundary CLI: the trainability map of a LEMUR model file on CIFAR-10."""
from __future__ import annotations

import shutil
from pathlib import Path

import click

from ..trial.data import DataError, lemur_norm, locate, prepare
from ..util import cli as cli_util
from ..util.paths import lemur_root
from . import cnn_map
from .config import SEED_MAX, Axis, check_memory


@click.command("cnn")
@click.option("--model", "model_path", type=cli_util.Path(dir_okay=False), required=True,
              help="LEMUR model file (e.g. one written by AlterNNFN); statically checked, then trained only "
                   "inside bubblewrap jails.")
@click.option("--grid", type=click.Choice(["lr-momentum", "lr-groups"]), default="lr-momentum", show_default=True,
              help="lr-momentum: x = learning rate (log), y = momentum (linear). lr-groups: x = lr of the first "
                   "half of the blocks, y = lr of the later blocks and head (both log), momentum fixed.")
@click.option("--lr-range", nargs=2, type=cli_util.Finite(), default=(1e-3, 10.0), show_default=True, metavar="LO HI",
              help="x axis: learning rate (first block group with --grid lr-groups).")
@click.option("--momentum-range", nargs=2, type=cli_util.Finite(), default=(0.0, 0.99), show_default=True, metavar="LO HI",
              help="y axis of lr-momentum.")
@click.option("--lr-late-range", nargs=2, type=cli_util.Finite(), default=None, metavar="LO HI",
              help="y axis of lr-groups: lr of the later blocks + head [default: --lr-range].")
@click.option("--momentum", type=cli_util.Finite(), default=0.0, show_default=True, help="Fixed momentum of lr-groups.")
@click.option("--res", type=click.IntRange(min=1), default=8, show_default=True, help="Pixels per side.")
@click.option("--res-x", type=click.IntRange(min=1), default=None, help="Pixels along x (overrides --res).")
@click.option("--res-y", type=click.IntRange(min=1), default=None, help="Pixels along y (overrides --res).")
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True, help="SGD steps per pixel.")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, show_default=True,
              help="One seed for all pixels: same initial weights, batch order and drop-path draws.")
@click.option("--train-limit", type=click.IntRange(min=1), default=None,
              help="Use the first N training images (batches cycle through them) [all].")
@click.option("--transform", type=click.Choice(["norm_flip", "norm"]), default="norm_flip", show_default=True)
@click.option("--amp/--no-amp", default=False, show_default=True, help="The model's autocast (bf16 on CPU).")
@click.option("--checkpointing/--no-checkpointing", default=False, show_default=True,
              help="The model's gradient checkpointing.")
@click.option("--readout", type=click.Choice(["sum", "final", "probe"]), default="sum", show_default=True,
              help="Score written to <name>.npy; every readout is kept in <name>_arrays.npz.")
@click.option("--window", type=click.IntRange(min=1), default=20, show_default=True,
              help="Converged when the mean of the last WINDOW loss ratios is below 1.")
@click.option("--tile", type=click.IntRange(min=1), default=8, show_default=True,
              help="Tile side; finished tiles are kept on disk and reused by a rerun.")
@click.option("--pixels-per-job", type=click.IntRange(min=0), default=0, show_default=True,
              help="Pixels one jailed job trains (0: auto).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Local jails (one model process at a time each).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--address", default=None, help="Ray cluster address [start a local Ray].")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--timeout", type=cli_util.Finite(min=1), default=300.0, show_default=True,
              help="Seconds allowed per pixel.")
@click.option("--data-dir", type=cli_util.Path(), default=None,
              help="cifar-10-batches-py folder [$NN_GPT_FRACTAL_CIFAR, then <LEMUR root>/data].")
@click.option("--out", "out_dir", type=cli_util.Path(file_okay=False), default=None,
              help="Output folder; a rerun resumes [<LEMUR root>/out/boundary-cnn/<model name>].")
@click.option("--name", type=cli_util.FileStem(), default="map", show_default=True, help="Base name of the written files.")
@click.option("--unsafe-no-jail", is_flag=True, help="DEBUGGING ONLY, UNSAFE: train without the bubblewrap jail.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def cnn_cmd(model_path, grid, lr_range, momentum_range, lr_late_range, momentum, res, res_x, res_y, out_dir, name,
            quiet, workers, executor, address, data_dir, timeout, pixels_per_job, unsafe_no_jail, **kw):
    """Map where a LEMUR model file trains on CIFAR-10 over a learning-rate x momentum grid (or the
    learning rates of two block groups). Every pixel trains from the same initial weights on the same
    batches; its score compares each step's loss with the untrained model's on that batch (negative =
    converged). Pixels run in bubblewrap jails, locally or as Ray tasks.

    \b
    Writes <name>.npy, <name>_arrays.npz, <name>.json, <name>.png, <name>_raw.png under --out.
    """
    nx, ny = res_x or res, res_y or res
    x = Axis("lr", *lr_range, nx, True)
    y = (Axis("momentum", *momentum_range, ny, False) if grid == "lr-momentum"
         else Axis("lr_late", *(lr_late_range or lr_range), ny, True))
    try:
        code = cnn_map.check_model(model_path)
        cfg = cnn_map.CnnMapConfig(model="", code_sha="", model_name=Path(model_path).stem, grid=grid, x=x, y=y,
                                   momentum=momentum, pixels_per_job=pixels_per_job, timeout_per_pixel=timeout, **kw)
        cfg.validate()
        check_memory(cfg.shape)
        if cfg.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ValueError("--device cuda requested but CUDA is not available")
        data = prepare(locate(data_dir), lemur_root() / "out" / "cache").to_dict()
    except (ValueError, DataError) as e:
        raise click.UsageError(str(e))
    out = (Path(out_dir) if out_dir else lemur_root() / "out" / "boundary-cnn" / cfg.model_name).absolute()
    out.mkdir(parents=True, exist_ok=True)
    cfg.model, cfg.code_sha = cnn_map.stage_model(code, out)
    cfg.data_id = Path(data["train_x"]).parent.name
    run_dir = out / "work"

    if unsafe_no_jail:
        click.echo("WARNING: --unsafe-no-jail: model code runs WITHOUT the jail (debugging only)", err=True)

    def start():
        return cnn_map.make_executor(executor, workers, run_dir, data, cuda=cfg.device == "cuda", address=address,
                                     unsafe_no_jail=unsafe_no_jail)

    try:
        result = cnn_map.compute_map(cfg, out, data, lemur_norm(), start, progress=not quiet)
    except cnn_map.JobError as e:
        raise click.ClickException(f"a job failed: {e}")
    except ValueError as e:
        if "different settings" not in str(e):
            raise
        raise click.UsageError(str(e))  # --out holds tiles of another map
    finally:
        try:
            shutil.rmtree(run_dir, ignore_errors=True)  # the jails' scratch folders, emptied by their zygotes
        except OSError:
            pass
    paths = cnn_map.write_outputs(result, out, name)
    s, conv = result.stats, result.arrays["converged"]
    click.echo(f"{s['computed']} tiles computed, {s['reused']} reused, {result.seconds:.1f} s; "
               f"{int(conv.sum())}/{conv.size} pixels converged")
    for p in paths.values():
        click.echo(p)
