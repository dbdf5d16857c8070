"""`cnn` subcommand of the boundary CLI: the trainability map of a LEMUR model file on CIFAR-10."""
from __future__ import annotations

import shutil
from pathlib import Path

import click

from ..trial.data import DataError, lemur_norm, locate, prepare
from ..util import cli as cli_util
from ..util.paths import lemur_root
from . import cnn_map
from .config import Axis, check_memory


@click.command("cnn", cls=cli_util.Command,
               short_help="the same map for a LEMUR model file trained on CIFAR-10 (lr x momentum)", epilog="""Examples:

\b
  nn-gpt-fractal boundary cnn --model out/fractal/FractalNet-N1-C2-....py --res 8
  nn-gpt-fractal boundary cnn --model M.py --grid lr-groups --lr-range 0.001 1 --device cuda
  nn-gpt-fractal boundary cnn --model M.py --res 32 --executor ray --address HEAD_IP:6379""")
@cli_util.option_group(
    "Common",
    cli_util.option("--model", "model_path", type=cli_util.Path(dir_okay=False), required=True,
                    help="one LEMUR model file (e.g. from the models folder); statically checked, then trained "
                         "only inside bubblewrap jails"),
    cli_util.option("--maps", "out_dir", type=cli_util.Path(file_okay=False), old=("--out",),
                    show_default="<LEMUR root>/out/boundary-cnn/<model name>",
                    help="output folder for the map files and finished tiles; a rerun resumes"),
    cli_util.option("--name", type=cli_util.FileStem(), default="map", help="base name of the written files"),
    cli_util.option("--device", type=cli_util.Device(auto=True), default="cpu",
                    help="where pixels train: auto (cuda when torch sees a GPU, else cpu), cpu or cuda; pick the GPU "
                         "with CUDA_VISIBLE_DEVICES"),
    cli_util.option("--data-dir", type=cli_util.Path(), show_default="$NN_GPT_FRACTAL_CIFAR, then <LEMUR root>/data",
                    help="cifar-10-batches-py folder"),
    cli_util.quiet_option("no progress bar"))
@cli_util.option_group(
    "Grid",
    cli_util.option("--grid", type=click.Choice(["lr-momentum", "lr-groups"]), default="lr-momentum",
                    help="lr-momentum: x = learning rate (log), y = momentum (linear). lr-groups: x = lr of the "
                         "first half of the blocks, y = lr of the later blocks and head (both log), momentum fixed"),
    cli_util.option("--lr-range", nargs=2, type=cli_util.Finite(), default=(1e-3, 10.0), metavar="LO HI",
                    help="x axis: learning rate (first block group with --grid lr-groups)"),
    cli_util.option("--momentum-range", nargs=2, type=cli_util.Finite(), default=(0.0, 0.99), metavar="LO HI",
                    help="y axis of lr-momentum"),
    cli_util.option("--lr-late-range", nargs=2, type=cli_util.Finite(), metavar="LO HI", show_default="--lr-range",
                    help="y axis of lr-groups: lr of the later blocks + head"),
    cli_util.option("--momentum", type=cli_util.Finite(), default=0.0, help="fixed momentum of lr-groups"),
    cli_util.option("--res", type=click.IntRange(min=1), default=8, help="pixels per side"),
    cli_util.option("--res-x", type=click.IntRange(min=1), show_default="--res", help="pixels along x"),
    cli_util.option("--res-y", type=click.IntRange(min=1), show_default="--res", help="pixels along y"))
@cli_util.option_group(
    "Training",
    cli_util.option("--steps", type=click.IntRange(min=1), default=200, help="SGD steps per pixel"),
    cli_util.option("--batch", type=click.IntRange(min=1), default=16, help="training batch size"),
    cli_util.option("--seed", type=cli_util.Seed(), default=0,
                    help="one seed for all pixels: same initial weights, batch order and drop-path draws"),
    cli_util.option("--train-limit", type=click.IntRange(min=1), show_default="all",
                    help="use the first N training images (batches cycle through them)"),
    cli_util.option("--transform", type=click.Choice(["norm_flip", "norm"]), default="norm_flip",
                    help="nn-dataset transform name"))
@cli_util.option_group(
    "Readout",
    cli_util.option("--readout", type=click.Choice(["sum", "final", "probe"]), default="sum",
                    help="score written to <name>.npy; every readout is kept in <name>_arrays.npz"),
    cli_util.option("--window", type=click.IntRange(min=1), default=20,
                    help="converged when the mean of the last WINDOW loss ratios is below 1"))
@cli_util.option_group(
    "Workers and cluster",
    cli_util.option("--workers", type=click.IntRange(min=1), default=2,
                    help="local jails (one model process at a time each)"),
    cli_util.option("--executor", type=click.Choice(["local", "ray"]), default="local",
                    help="local: jailed processes on this machine; ray: jailed Ray tasks on a cluster"),
    cli_util.option("--address", show_default="start a local Ray", help="Ray cluster address, e.g. HEAD_IP:6379"),
    cli_util.option("--pixels-per-job", type=click.IntRange(min=0), default=0,
                    help="pixels one jailed job trains (0: auto)"))
@cli_util.option_group(
    "Advanced performance",
    cli_util.mode_option("--amp", modes=("on", "off"), default="off",
                         help="the model's autocast (bf16 on CPU); no auto here: there is no probe for maps"),
    cli_util.mode_option("--checkpointing", modes=("on", "off"), default="off",
                         help="the model's gradient checkpointing"),
    cli_util.option("--tile", type=click.IntRange(min=1), default=8,
                    help="tile side; finished tiles are kept on disk and reused by a rerun"))
@cli_util.option_group(
    "Limits",
    cli_util.option("--timeout", type=cli_util.Finite(min=1), default=300.0, help="seconds allowed per pixel"),
    cli_util.option("--unsafe-no-jail", is_flag=True, help="DEBUGGING ONLY, UNSAFE: train without the bubblewrap jail"))
@cli_util.deprecated_flag("--no-amp", "amp", "off", "--amp off")
@cli_util.deprecated_flag("--no-checkpointing", "checkpointing", "off", "--checkpointing off")
def cnn_cmd(model_path, grid, lr_range, momentum_range, lr_late_range, momentum, res, res_x, res_y, out_dir, name,
            quiet, workers, executor, address, data_dir, timeout, pixels_per_job, unsafe_no_jail, device, amp,
            checkpointing, **kw):
    """Map where a LEMUR model file trains on CIFAR-10 over a learning-rate x momentum grid (or the
    learning rates of two block groups). Every pixel trains from the same initial weights on the same
    batches; its score compares each step's loss with the untrained model's on that batch (negative =
    converged). Pixels run in bubblewrap jails, locally or as Ray tasks.

    \b
    Writes <name>.npy, <name>_arrays.npz, <name>.json, <name>.png, <name>_raw.png under --maps.
    """
    if ":" in device:
        raise click.BadParameter(f"{device}: the map uses one device; give cuda and pick the GPU with "
                                 f"CUDA_VISIBLE_DEVICES={device.split(':')[1]}", param_hint="--device")
    nx, ny = res_x or res, res_y or res
    x = Axis("lr", *lr_range, nx, True)
    y = (Axis("momentum", *momentum_range, ny, False) if grid == "lr-momentum"
         else Axis("lr_late", *(lr_late_range or lr_range), ny, True))
    try:
        code = cnn_map.check_model(model_path)
        cfg = cnn_map.CnnMapConfig(model="", code_sha="", model_name=Path(model_path).stem, grid=grid, x=x, y=y,
                                   momentum=momentum, pixels_per_job=pixels_per_job, timeout_per_pixel=timeout,
                                   device=cli_util.resolve_device(device), amp=amp == "on",
                                   checkpointing=checkpointing == "on", **kw)
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
        raise click.UsageError(str(e))  # --maps holds tiles of another map
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
