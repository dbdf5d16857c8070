"""Trainability map of a LEMUR model file: the jailed side (runs in a jail, see trial/, never in the driver).

`train_pixels(path, config)` imports the model file in isolation, builds `Net` once with a fixed seed,
keeps that initial state, and then trains every pixel of the job from it:

    for each pixel (lr, momentum[, lr_late]):
        restore the initial weights and buffers; model.train_setup(prm)  (a fresh optimizer)
        reseed torch's global generator (drop-path, dropout) and the data generator from the same seed
        `steps` times: loss = model.learn([one batch])   (the model's own training step: its loss,
                       optimizer, AMP and checkpointing switches), recorded per step

So every pixel shares the initialisation, the batch order and the stochastic-depth draws, and differs only
in its hyperparameters (the published experiment shares init and data across pixels). Calling the model's
`learn` one batch at a time keeps the LEMUR contract instead of re-implementing its step; the cost is one
`.item()` per step. Once the loss is not finite the pixel stops and the rest of its trajectory is inf.

Two-group learning rates (`lr_late` given): after `train_setup` the optimizer is rebuilt as the same class
with the same defaults over two parameter groups, the first half of `model.blocks` (at least one block)
at `lr` and everything else (later blocks, head) at `lr_late`; a model without `blocks` is split into
the first and second half of its optimizer's parameters, in registration order.

`config`: pixels [[lr, momentum, lr_late or None], ...], steps, batch, seed, data (data.Prepared dict),
norm [mean, std], transform, train_limit, amp, checkpointing, threads. Returns
{"losses": [[per-step loss or None], ...] per pixel, "params": int}.
"""
from __future__ import annotations

import os

import torch

from ..trial.batches import TensorCifar, load_split
from ..trial.data import TRANSFORMS
from ..trial.model_file import import_isolated
from ..trial.runner import build, derive_seed, finite, resolve_device, seed_all


def two_groups(model) -> tuple[list, list]:
    """(early, late) parameters of the model's optimizer; see the module docstring for the split."""
    params = [p for g in model.optimizer.param_groups for p in g["params"]]
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, torch.nn.ModuleList) and len(blocks) > 0:
        first = {id(p) for b in list(blocks)[:max(1, len(blocks) // 2)] for p in b.parameters()}
        early = [p for p in params if id(p) in first]
    else:
        early = params[:max(1, len(params) // 2)]
    ids = {id(p) for p in early}
    return early, [p for p in params if id(p) not in ids]


def regroup(model, lr: float, lr_late: float, momentum: float) -> None:
    """Replace model.optimizer by the same optimizer class with per-group learning rates."""
    opt = model.optimizer
    early, late = two_groups(model)
    groups = [{"params": early, "lr": lr}] + ([{"params": late, "lr": lr_late}] if late else [])
    defaults = {**opt.defaults, "lr": lr}
    if "momentum" in defaults:
        defaults["momentum"] = momentum
    model.optimizer = type(opt)(groups, **defaults)


def batch_stream(train: TensorCifar, batch: int, seed: int):
    """Endless fixed sequence of training batches: one seeded permutation per pass over the data."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "boundary", "data"))
    while True:
        yield from train.batches(batch, gen, shuffle=True)


def train_one(model, init_state: dict, prm: dict, lr_late, train: TensorCifar, steps: int, batch: int,
              seed: int) -> list:
    """Per-step training losses of one pixel (None once the loss is not finite)."""
    model.load_state_dict(init_state)
    model.train_setup(prm)
    if lr_late is not None:
        regroup(model, prm["lr"], lr_late, prm["momentum"])
    seed_all(derive_seed(seed, "boundary", "model"))
    losses: list = []
    batches = batch_stream(train, batch, seed)
    for _ in range(steps):
        out = model.learn([next(batches)])
        loss = finite(out[1] if isinstance(out, (tuple, list)) else out)
        if loss is None:
            break
        losses.append(loss)
    return losses + [None] * (steps - len(losses))


def train_pixels(path: str, config: dict) -> dict:
    """Jail entry point: per-pixel loss trajectories of the model file at `path`."""
    torch.set_num_threads(int(config.get("threads") or 1))  # fixed: results do not depend on the host
    device = resolve_device(config.get("device", "cpu"))
    seed, steps, batch = int(config["seed"]), int(config["steps"]), int(config["batch"])
    run = {"seed": seed, "amp": bool(config.get("amp", False)),
           "checkpointing": bool(config.get("checkpointing", False)), "channels_last": False}
    module = import_isolated(path)
    prm = {"lr": 0.0, "momentum": 0.0, "dropout": float(config.get("dropout", 0.0)), "batch": batch,
           "epoch": 1, "transform": config["transform"]}
    model, _ = build(module, run, device, prm)  # seeded: the same initial weights for every pixel
    init_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    mean, std = config["norm"]
    train = TensorCifar(*load_split(config["data"], "train", config.get("train_limit")), mean, std,
                        TRANSFORMS[config["transform"]], device)
    parent = os.getppid()
    losses = []
    for lr, momentum, lr_late in config["pixels"]:
        if os.getppid() != parent:  # the driver is gone: stop instead of training for nobody
            raise RuntimeError("the driver process has exited")
        losses.append(train_one(model, init_state, {**prm, "lr": float(lr), "momentum": float(momentum)},
                                None if lr_late is None else float(lr_late), train, steps, batch, seed))
    return {"losses": losses, "params": sum(p.numel() for p in model.parameters())}


TRIAL_HANDLER = f"{__name__}:train_pixels"
