"""Evaluate generated models on CIFAR-10 and register them in the LEMUR dataset (the paper's `NNEval`).

    python -m ab.gpt.NNEval --help

Trains every model in --models (default <LEMUR root>/out/fractal) that has no result yet, each in a
bubblewrap jail (one fresh process per model), writes LEMUR-format results to --results (default <LEMUR root>/new_lemur)
and registers them into nn-dataset's SQLite DB. Rerunning resumes; interrupted models continue from their
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


def examples(prog: str, plan: bool) -> str:
    lines = [f"{prog} --plan      # estimate first: FLOPs, time, run order"] if plan else []
    lines += [f"{prog} --epochs 5 --device cuda", f"{prog} --schedule halving --rungs 1,2 --eta 6",
              f"{prog} --executor ray --address HEAD_IP:6379 --gpus-per-trial 0.25",
              f"{prog} --filter 'FractalNet-N2-*' --limit 10 --results new_lemur_small"]
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


_ESTIMATE = cli_util.option_group(
    "Estimate",
    cli_util.option("--plan", is_flag=True, help="print the sweep's FLOPs, time estimate and run order; train nothing"))
_COMMON = cli_util.option_group(
    "Common",
    cli_util.option("--models", type=cli_util.Path(file_okay=False, path_type=Path), show_default="<LEMUR root>/out/fractal",
           help="folder of generated models to evaluate"),
    cli_util.option("--results", type=cli_util.Path(file_okay=False, path_type=Path), old=("--out",),
           show_default="<LEMUR root>/new_lemur", help="results folder: LEMUR-format stat files and run records"),
    cli_util.option("--filter", "pattern", show_default="all models",
           help="only models whose name matches this glob, e.g. 'FractalNet-N2-*'"),
    cli_util.option("--limit", type=click.IntRange(min=1), show_default="all", help="evaluate at most this many models"),
    cli_util.option("--device", type=cli_util.Device(auto=True, several=True), default="auto",
           help="where trials train: auto (every visible GPU, else the CPU), cpu, cuda (every visible GPU), "
                "cuda:N or cuda:0,2 (the listed GPUs); each jail sees only its own GPU"),
    cli_util.option("--db", type=cli_util.Path(dir_okay=False, path_type=Path), show_default="<LEMUR root>/db/ab.nn.db",
           help="nn-dataset SQLite DB the results are registered in"),
    cli_util.option("--no-register", is_flag=True, help="write the results folder only, no DB rows"),
    cli_util.option("--fetch-lemur-db", is_flag=True, help="download the full LEMUR DB first when there is none (online)"),
    cli_util.option("--data-dir", type=cli_util.Path(file_okay=False), envvar=DATA_ENV, show_envvar=True,
           show_default="<LEMUR root>/data",
           help="a cifar-10-batches-py folder (or its parent), e.g. a shortened subset"),
    cli_util.option("--retry-failed", is_flag=True, help="evaluate again models whose result is not 'trained'"),
    cli_util.quiet_option())
_TRAINING = cli_util.option_group(
    "Training",
    cli_util.option("--epochs", type=click.IntRange(min=1), default=5, help="epochs per model (the last rung with halving)"),
    cli_util.option("--batch", type=click.IntRange(min=1), default=16, help="training batch size"),
    cli_util.option("--lr", type=cli_util.Finite(min=0, min_open=True), default=0.01, help="SGD learning rate"),
    cli_util.option("--momentum", type=cli_util.Finite(0, 1), default=0.9, help="SGD momentum"),
    cli_util.option("--prm-dropout", "dropout", type=cli_util.Finite(0, 1), default=0.2, old=("--dropout",),
           help="prm['dropout'] handed to models (generated FractalNets ignore it: their dropout is part of the "
                "spec, and the stat files record that one)"),
    cli_util.option("--transform", type=click.Choice(sorted(TRANSFORMS)), default="norm_flip",
           help="nn-dataset transform name"),
    cli_util.option("--seeds", type=click.IntRange(min=1), default=1, help="trials per model"),
    cli_util.option("--seed", type=cli_util.Seed(), default=0, help="first seed"),
    cli_util.option("--train-limit", type=click.IntRange(min=1), show_default="all 50000",
           help="train on the first N training images"),
    cli_util.option("--test-limit", type=click.IntRange(min=1), show_default="all 10000",
           help="evaluate on the first N test images"),
    cli_util.option("--save-best", is_flag=True, help="keep each trial's best weights in <results>/ckpt/"))
_SCHEDULE = cli_util.option_group(
    "Schedule",
    cli_util.option("--schedule", type=click.Choice(["full", "halving"]), default="full",
           help="full: every model trains --epochs; halving: successive halving, every model gets the first "
                "rung's epochs and the best 1/eta of each rung go on (resumable; records say where and why a "
                "model stopped; a later --schedule full leaves the stopped ones as they are)"),
    cli_util.option("--eta", type=click.IntRange(min=2), show_default="3", help="halving: the best 1/eta of a rung go on"),
    cli_util.option("--rungs", type=halving_sweep.RungsParam(), show_default="1, eta, eta^2, ... below --epochs",
           help="halving: the epoch budgets below --epochs, e.g. 1 or 1,2 (--epochs is added)"),
    cli_util.option("--min-keep", type=click.IntRange(min=1), show_default="1",
           help="halving: at least this many go on from each rung"),
    cli_util.option("--run-order", "order", type=click.Choice(["longest", "file"]), default="longest", old=("--order",),
           help="hand out models longest first (manifest FLOPs) or in file order"))
_CLUSTER = cli_util.option_group(
    "Workers and cluster",
    cli_util.option("--workers", type=cli_util.IntOrAuto(min=1), default="auto",
           help="local jailed training processes; auto: the workers x threads packing a short probe measured "
                "fastest here"),
    cli_util.option("--threads", type=cli_util.Threads(), show_default="CPUs / workers",
           help="torch threads per worker, at most the CPUs"),
    cli_util.option("--trials-per-gpu", type=cli_util.IntOrAuto(min=1, max=64), default="auto",
           help="trials sharing one GPU at once; auto: the count a short probe of the sweep's dominant shape class "
                "measured fastest in aggregate, within each trial's measured peak memory (cached per GPU model); "
                "with --executor ray it sets --gpus-per-trial to 1/K"),
    cli_util.option("--executor", type=click.Choice(["local", "ray"]), default="local",
           help="local: jailed processes on this machine; ray: jailed Ray tasks on a cluster"),
    cli_util.option("--address", show_default="start a local Ray", help="Ray cluster address, e.g. HEAD_IP:6379"),
    cli_util.option("--gpus-per-trial", type=cli_util.Finite(min=0), show_default="1 when the driver sees CUDA, else 0",
           help="Ray: GPU share per trial, e.g. 0.25 packs 4 trials on a GPU; 0: CPU trials"),
    cli_util.option("--cpus-per-trial", type=cli_util.Finite(min=0, min_open=True), show_default="1",
           help="Ray: CPUs per trial (also its torch threads unless --threads)"),
    cli_util.option("--memory-per-trial-gb", type=cli_util.Finite(min=0.1), show_default="1 GiB + twice the data set",
           help="Ray: memory reserved per trial, so a node takes no more trials than fit"))
_PERFORMANCE = cli_util.option_group(
    "Advanced performance",
    cli_util.mode_option("--amp", default="auto",
                         help="mixed precision (CPU bf16; CUDA bf16 or fp16); auto: whatever a short probe of the "
                              "model's shape class measured fastest on this machine (cached, see --tune-cache)"),
    cli_util.mode_option("--checkpointing", default="auto",
                         help="gradient checkpointing of fractal blocks; auto: on when the activations one training "
                              "step saves exceed half the memory free for the trial"),
    cli_util.mode_option("--channels-last", default="auto",
                         help="channels_last memory format; auto: as the probe measured for the model's shape class"),
    cli_util.mode_option("--compile", "compile_mode", default="auto",
                         help="torch.compile the model; auto: only when its expected training time pays back the "
                              "measured compile time many times over"),
    cli_util.option("--tune-cache", type=cli_util.Path(dir_okay=False, path_type=Path),
           show_default="$NN_GPT_FRACTAL_TUNE_CACHE or ~/.cache/nn-gpt-fractal/tune.json",
           help="per-machine tuning cache"))
_LIMITS = cli_util.option_group(
    "Limits",
    cli_util.option("--timeout", type=cli_util.Finite(min=1), default=3600, help="seconds per model and seed"),
    cli_util.option("--memory-gb", type=cli_util.Finite(min=0.5), default=16,
           help="address-space budget of a CPU training worker beyond its start (not applied on CUDA)"),
    cli_util.option("--unsafe-no-jail", is_flag=True, help="DEBUGGING ONLY, UNSAFE: train without the bubblewrap jail "
           "(model code can then read, write and run anything this user can)"))


@cli_util.command(epilog=examples("python -m ab.gpt.NNEval", plan=True))
@_ESTIMATE
@_COMMON
@_TRAINING
@_SCHEDULE
@_CLUSTER
@_PERFORMANCE
@_LIMITS
def main(models, results, pattern, limit, device, db, no_register, fetch_lemur_db, data_dir, retry_failed, quiet,
         epochs, batch, lr, momentum, dropout, transform, seeds, seed, train_limit, test_limit, save_best, schedule,
         eta, rungs, min_keep, order, workers, threads, trials_per_gpu, executor, address, gpus_per_trial, cpus_per_trial,
         memory_per_trial_gb, amp, checkpointing, channels_last, compile_mode, tune_cache, timeout, memory_gb,
         unsafe_no_jail, plan):
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
    say = (lambda m: None) if quiet and plan else (lambda m: click.echo(m, err=True))
    if plan:  # what the sweep would cost, calibrated on this device; nothing is trained or written
        p = tplan.plan_sweep(models or models_dir(), results or new_lemur_dir(), pattern, limit, retry_failed, epochs,
                             seeds, batch, train_limit, test_limit, data_dir, device, workers,
                             _mode(checkpointing), threads=threads, trials_per_gpu=trials_per_gpu,
                             cache_path=tune_cache, echo=say)
        tplan.render(p, echo=click.echo)
        if schedule == "halving":
            if seen := plan_halving.halving_records(results or new_lemur_dir()):
                click.echo(f"{len(seen)} model(s) in {results or new_lemur_dir()} have halving records: the estimate "
                           f"below is a fresh halving run of the models above, not the rest of that run", err=True)
            plan_halving.render(plan_halving.estimate(p, halving_rungs), echo=click.echo)
        return 0
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise click.UsageError("--executor ray needs Ray: pip install 'nn-gpt-fractal[ray]'") from None
    cfg = SweepConfig(models=models or models_dir(), out=results or new_lemur_dir(), filter=pattern, limit=limit,
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


# `nn-gpt-fractal eval` and `nn-gpt-fractal plan`: the same command as modes of their own
eval_cmd = cli_util.derive(main, "eval", drop=["plan"], epilog=examples("nn-gpt-fractal eval", plan=False))
PLANNED = {"models", "results", "pattern", "limit", "retry_failed", "device", "data_dir", "quiet", "epochs", "batch",
           "seeds", "train_limit", "test_limit", "schedule", "eta", "rungs", "min_keep", "workers", "threads",
           "checkpointing", "trials_per_gpu", "tune_cache"}  # what the plan reads; every other option keeps its default
plan_cmd = cli_util.derive(
    main, "plan", keep=PLANNED, fixed={"plan": True},
    help="Estimate a sweep before running it: FLOPs, time on this machine (calibrated by short probes), run "
         "order and, with --schedule halving, the rungs' budgets. Trains nothing and writes no results.",
    epilog="Examples:\n\n\b\n  nn-gpt-fractal plan\n  nn-gpt-fractal plan --epochs 5 --device cuda\n"
           "  nn-gpt-fractal plan --schedule halving --rungs 1,2 --eta 6")


def cli(args: list[str] | None = None) -> None:
    cli_util.run(main, args, errors=(DataError, ManifestError))


if __name__ == "__main__":
    cli()
