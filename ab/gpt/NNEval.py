"""Evaluate generated models on CIFAR-10 and register them in the LEMUR dataset (the paper's `NNEval`).

    python -m ab.gpt.NNEval --help

Trains every model in --models (default <LEMUR root>/out/fractal) that has no result yet, each in a
bubblewrap jail (one fresh process per model), writes LEMUR-format results to --out (default <LEMUR root>/new_lemur) and
registers them into nn-dataset's SQLite DB. Rerunning resumes; interrupted models continue from their
last finished epoch. `--schedule halving` gives every model a first budget and only the best 1/eta the
next (successive halving, `sweep/halving_sweep.py`). Data: --data-dir or $NN_GPT_FRACTAL_CIFAR (a
cifar-10-batches-py folder), else <LEMUR root>/data (downloaded as nn-dataset does when missing and online).
"""
from __future__ import annotations

import csv
from pathlib import Path

import click

from ab.gpt.brute.fract.util import cli as cli_util
from ab.gpt.brute.fract.trial.data import DATA_ENV, TRANSFORMS, DataError
from ab.gpt.brute.fract.sweep.evaluate import SweepConfig, SweepOutcome, run_sweep
from ab.gpt.brute.fract.generation.manifest import ManifestError
from ab.gpt.brute.fract.util.paths import models_dir, new_lemur_dir
from ab.gpt.brute.fract.sweep import halving_sweep, plan_halving
from ab.gpt.brute.fract.sweep import plan as tplan
from ab.gpt.brute.fract.sweep.halving import sweep_rungs
from ab.gpt.brute.fract.trial.gpus import select, visible_gpus


def _mode(choice: str) -> bool | str:
    """on/off/auto -> True/False/"auto"."""
    return {"on": True, "off": False}.get(choice, choice)


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def summary_rows(outcome: SweepOutcome) -> list[list[str]]:
    rows = []
    for r in outcome.records:
        last = [s["epochs"][-1] for s in r["seeds"] if s["epochs"]]
        accs = [e["accuracy"] for e in last if e["accuracy"] is not None]
        ips = [e["images_per_s"] for e in last if e.get("images_per_s")]
        mem = [e["peak_memory_mb"] for e in last if e.get("peak_memory_mb")]
        secs = sum(e["epoch_time_s"] or 0 for s in r["seeds"] for e in s["epochs"])
        rows.append([r["name"], r["status"], _fmt(sum(accs) / len(accs) if accs else None, ".4f"),
                     _fmt(sum(ips) / len(ips) if ips else None, ".0f"), _fmt(max(mem) if mem else None, ".0f"),
                     f"{secs:.1f}", (r["message"] or "")[:60]])
    return rows


SHOWN = 10  # rows of the end-of-run table; the full table goes to a CSV file
TABLE = "last_run.csv"


def _best_first(rows: list[list[str]]) -> list[list[str]]:
    return sorted(rows, key=lambda r: (r[1] != "trained", -float(r[2]) if r[2] != "-" else 0.0, r[0]))


def print_summary(outcome: SweepOutcome, out: Path | None = None) -> None:
    """The run's counts and its best SHOWN models; with more, the full table is written to out/last_run.csv."""
    head = ["model", "status", "accuracy", "img/s", "peak MB", "time s", "message"]
    rows = _best_first(summary_rows(outcome))
    if len(rows) > SHOWN and out is not None:
        path = Path(out) / TABLE
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([head] + rows)
    shown = rows[:SHOWN]
    if shown:
        title = "NNEval summary (this run)" if len(rows) <= SHOWN else \
            f"NNEval summary (this run): the best {SHOWN} of {len(rows)} models"
        try:
            from rich.console import Console
            from rich.table import Table

            table = Table(title=title)
            for h in head:
                table.add_column(h, overflow="fold")
            for row in shown:
                table.add_row(*row)
            Console(width=160).print(table)
        except ImportError:
            click.echo(title)
            widths = [max(len(h), *(len(r[i]) for r in shown)) for i, h in enumerate(head)]
            for row in [head] + shown:
                click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)))
        if len(rows) > SHOWN:
            click.echo(f"{len(rows) - SHOWN} more models" + (f": the full table is in {Path(out) / TABLE}"
                                                             if out is not None else ""))
    s, last = outcome.summary, outcome.summary.get("last_run", {})
    counts = ", ".join(f"{k} {v}" for k, v in last.get("counts", {}).items() if v)
    rate = last.get("success_rate")
    click.echo(f"this run: {last.get('evaluated', 0)} evaluated ({counts or 'none'}), "
               f"{outcome.skipped} already done; success rate "
               f"{'-' if rate is None else f'{100 * rate:.1f}%'}; {outcome.wall_s:.1f} s")
    total_rate = s.get("success_rate")
    click.echo(f"all results: {s.get('models', 0)} models, success rate "
               f"{'-' if total_rate is None else f'{100 * total_rate:.1f}%'}"
               + (f"; {outcome.registered_rows} new DB rows" if last.get("db") else ""))
    if last.get("schedule"):
        for line in halving_sweep.describe(last["schedule"]):
            click.echo(line)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--models", type=cli_util.Path(file_okay=False, path_type=Path), help="model folder [<LEMUR root>/out/fractal]")
@click.option("--filter", "pattern", help="only models whose name matches this glob, e.g. 'FractalNet-N2-*'")
@click.option("--limit", type=click.IntRange(min=1), help="evaluate at most this many models")
@click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--lr", type=cli_util.Finite(min=0, min_open=True), default=0.01, show_default=True)
@click.option("--momentum", type=cli_util.Finite(0, 1), default=0.9, show_default=True)
@click.option("--dropout", type=cli_util.Finite(0, 1), default=0.2, show_default=True,
              help="prm['dropout'] handed to models (generated FractalNets ignore it: their dropout is part of the "
                   "spec, and the stat files record that one)")
@click.option("--transform", type=click.Choice(sorted(TRANSFORMS)), default="norm_flip", show_default=True,
              help="nn-dataset transform name")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True, help="trials per model")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="first seed")
@click.option("--amp", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="mixed precision (CPU bf16; CUDA bf16 or fp16); auto: whatever a short probe of the model's "
                   "shape class measured fastest on this machine (cached, see --tune-cache)")
@click.option("--checkpointing", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="gradient checkpointing of fractal blocks; auto: on when the activations one training step "
                   "saves exceed half the memory free for the trial")
@click.option("--channels-last", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="channels_last memory format; auto: as the probe measured for the model's shape class")
@click.option("--compile", "compile_mode", type=click.Choice(["auto", "on", "off"]), default="auto",
              show_default=True, help="torch.compile the model; auto: only when its expected training time "
              "pays back the measured compile time many times over")
@click.option("--device", type=cli_util.Device(auto=True, several=True), default="auto", show_default=True,
              help="where trials train: auto (every visible GPU, else the CPU), cpu, cuda (every visible GPU), "
                   "cuda:N or cuda:0,2 (the listed GPUs); each jail sees only its own GPU")
@click.option("--trials-per-gpu", type=cli_util.IntOrAuto(min=1, max=64), default="auto", show_default=True,
              help="trials sharing one GPU at once; auto: the count a short probe of the sweep's dominant shape "
                   "class measured fastest in aggregate, within each trial's measured peak memory (cached per GPU "
                   "model); with --executor ray it sets --gpus-per-trial to 1/K")
@click.option("--data-dir", type=cli_util.Path(file_okay=False), envvar=DATA_ENV, show_envvar=True,
              help="a cifar-10-batches-py folder (or its parent), e.g. a shortened subset")
@click.option("--train-limit", type=click.IntRange(min=1), help="train on the first N training images")
@click.option("--test-limit", type=click.IntRange(min=1), help="evaluate on the first N test images")
@click.option("--out", type=cli_util.Path(file_okay=False, path_type=Path), help="results [<LEMUR root>/new_lemur]")
@click.option("--db", type=cli_util.Path(dir_okay=False, path_type=Path), help="SQLite DB [<LEMUR root>/db/ab.nn.db]")
@click.option("--no-register", is_flag=True, help="write new_lemur/ only, no DB")
@click.option("--fetch-lemur-db", is_flag=True, help="download the full LEMUR DB first when there is none (online)")
@click.option("--workers", type=cli_util.IntOrAuto(min=1), default="auto", show_default=True,
              help="local jailed training processes; auto: the workers x threads packing a short probe "
                   "measured fastest here")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--address", help="Ray cluster address, e.g. HEAD_IP:6379 (default: start a local Ray)")
@click.option("--gpus-per-trial", type=cli_util.Finite(min=0), help="Ray: GPU share per trial, e.g. 0.25 packs "
              "4 trials on a GPU; 0: CPU trials [1 when the driver sees CUDA, else 0]")
@click.option("--cpus-per-trial", type=cli_util.Finite(min=0, min_open=True), help="Ray: CPUs per trial (also its "
              "torch threads unless --threads) [1]")
@click.option("--memory-per-trial-gb", type=cli_util.Finite(min=0.1), help="Ray: memory reserved per trial, so a "
              "node takes no more trials than fit [1 GiB + twice the dataset]")
@click.option("--order", type=click.Choice(["longest", "file"]), default="longest", show_default=True,
              help="hand out models longest first (manifest FLOPs) or in file order")
@click.option("--timeout", type=cli_util.Finite(min=1), default=3600, show_default=True,
              help="seconds per model and seed")
@click.option("--memory-gb", type=cli_util.Finite(min=0.5), default=16, show_default=True,
              help="address-space budget of a CPU training worker beyond its start (not applied on CUDA)")
@click.option("--threads", type=cli_util.Threads(), help="torch threads per worker, at most the CPUs [cores / workers]")
@click.option("--save-best", is_flag=True, help="keep each trial's best weights in <out>/ckpt/")
@click.option("--retry-failed", is_flag=True, help="evaluate again models whose result is not 'trained'")
@click.option("--schedule", type=click.Choice(["full", "halving"]), default="full", show_default=True,
              help="full: every model trains --epochs; halving: successive halving, every model gets the first "
                   "rung's epochs and the best 1/eta of each rung go on (resumable; records say where and why a model "
                   "stopped; a later --schedule full leaves the stopped ones as they are)")
@click.option("--eta", type=click.IntRange(min=2), help="halving: the best 1/eta of a rung go on [3]")
@click.option("--rungs", type=halving_sweep.RungsParam(), help="halving: the epoch budgets below --epochs, e.g. 1 "
              "or 1,2 (--epochs is added) [1, eta, eta^2, ... below --epochs]")
@click.option("--min-keep", type=click.IntRange(min=1), help="halving: at least this many go on from each rung [1]")
@click.option("--unsafe-no-jail", is_flag=True, help="DEBUGGING ONLY, UNSAFE: train without the bubblewrap jail "
              "(model code can then read, write and run anything this user can)")
@click.option("-q", "--quiet", is_flag=True, help="no progress bars")
@click.option("--plan", is_flag=True, help="print the sweep's FLOPs, time estimate and run order; train nothing")
@click.option("--tune-cache", type=cli_util.Path(dir_okay=False, path_type=Path),
              help="per-machine tuning cache [$NN_GPT_FRACTAL_TUNE_CACHE or ~/.cache/nn-gpt-fractal/tune.json]")
def main(models, pattern, limit, epochs, batch, lr, momentum, dropout, transform, seeds, seed, amp, checkpointing,
         channels_last, compile_mode, device, trials_per_gpu, data_dir, train_limit, test_limit, out, db, no_register, fetch_lemur_db, workers,
         executor, address, gpus_per_trial, cpus_per_trial, memory_per_trial_gb, order, timeout, memory_gb, threads,
         save_best, retry_failed, unsafe_no_jail, quiet, plan, tune_cache, schedule, eta, rungs, min_keep):
    """Train generated models on CIFAR-10, write LEMUR-format results and register them in the DB."""
    for name, value in (("--eta", eta), ("--rungs", rungs), ("--min-keep", min_keep)):
        if value is not None and schedule != "halving":
            raise click.BadParameter(f"{name} needs --schedule halving", param_hint=name)
    eta, min_keep = eta or 3, min_keep or 1
    if schedule == "halving":
        try:
            halving_rungs = sweep_rungs(epochs, eta, rungs, min_keep)
        except ValueError as e:  # --rungs past --epochs: the one rule the sweep applies, checked before anything runs
            raise click.UsageError(str(e)) from None
    if gpus_per_trial is not None and trials_per_gpu != "auto":
        raise click.BadParameter("give --trials-per-gpu or --gpus-per-trial, not both (--gpus-per-trial is 1/K)",
                                 param_hint="--trials-per-gpu")
    if device.startswith("cuda") and executor == "local":  # every listed GPU must be here, before anything runs
        try:
            select(cli_util.parse_device(device), visible_gpus())
        except ValueError as e:
            raise click.BadParameter(str(e).removeprefix(f"--device {device}: "), param_hint="--device") from None
    if address and executor != "ray":
        raise click.BadParameter("--address needs --executor ray", param_hint="--address")
    for name, value in (("--gpus-per-trial", gpus_per_trial), ("--cpus-per-trial", cpus_per_trial),
                        ("--memory-per-trial-gb", memory_per_trial_gb)):
        if value is not None and executor != "ray":
            raise click.BadParameter(f"{name} needs --executor ray", param_hint=name)
    if plan:  # what the sweep would cost, calibrated on this device; nothing is trained or written
        p = tplan.plan_sweep(models or models_dir(), out or new_lemur_dir(), pattern, limit, retry_failed, epochs,
                             seeds, batch, train_limit, test_limit, data_dir, device, workers,
                             _mode(checkpointing), threads=threads, trials_per_gpu=trials_per_gpu,
                             cache_path=tune_cache, echo=lambda m: click.echo(m, err=True))
        tplan.render(p, echo=click.echo)
        if schedule == "halving":
            if seen := plan_halving.halving_records(out or new_lemur_dir()):
                click.echo(f"{len(seen)} model(s) in {out or new_lemur_dir()} have halving records: the estimate "
                           f"below is a fresh halving run of the models above, not the rest of that run", err=True)
            plan_halving.render(plan_halving.estimate(p, halving_rungs), echo=click.echo)
        return 0
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise click.UsageError("--executor ray needs Ray: pip install 'nn-gpt-fractal[ray]'") from None
    cfg = SweepConfig(models=models or models_dir(), out=out or new_lemur_dir(), filter=pattern, limit=limit,
                      epochs=epochs, batch=batch, lr=lr, momentum=momentum, dropout=dropout, transform=transform,
                      seeds=seeds, seed=seed, amp=_mode(amp), checkpointing=_mode(checkpointing),
                      channels_last=_mode(channels_last), compile=compile_mode,
                      device=device, trials_per_gpu=trials_per_gpu, data_dir=data_dir, train_limit=train_limit, test_limit=test_limit, db=db,
                      register=not no_register, fetch_lemur_db=fetch_lemur_db, workers=workers, executor=executor,
                      address=address, gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial or 1.0,
                      memory_per_trial_gb=memory_per_trial_gb, order=order, timeout=timeout, memory_gb=memory_gb,
                      threads=threads, save_best=save_best, retry_failed=retry_failed, quiet=quiet,
                      unsafe_no_jail=unsafe_no_jail, tune_cache=tune_cache, schedule=schedule, eta=eta,
                      rungs=rungs, min_keep=min_keep)
    if unsafe_no_jail:
        click.echo("WARNING: --unsafe-no-jail: model code runs WITHOUT the jail (debugging only)", err=True)
    outcome = run_sweep(cfg, say=lambda m: click.echo(m, err=True))
    print_summary(outcome, cfg.out)
    return 2 if outcome.stat_errors else 0  # each was reported (one line per model); the rest went on


def cli(args: list[str] | None = None) -> None:
    cli_util.run(main, args, errors=(DataError, ManifestError))


if __name__ == "__main__":
    cli()
