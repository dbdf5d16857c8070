"""The training runner (the paper's `NNAlterFractalNet`): train one model file for one seed on CIFAR-10.

`train_model_file(path, config)` is what a sandbox worker calls (never the main process): it imports the
model file, switches the Net's AMP / gradient checkpointing as configured, calls `train_setup(prm)` and
then, per epoch, the model's own `learn()` on an iterable of ready device batches (the LEMUR contract),
followed by its own evaluation pass (no_grad, eval mode, the model's autocast). It returns a JSON result:

    {"name", "seed", "status": trained|diverged|out-of-memory|error, "message", "params", "device", "amp",
     "checkpointing", "channels_last", "threads", "resumed_epochs",
     "epochs": [{"epoch", "accuracy", "train_loss", "val_loss", "train_accuracy", "epoch_time_s",
                 "images_per_s", "peak_memory_mb", "train_time_s", "gradient_norm", "duration_ns",
                 "system" {nn-dataset's train_stat machine fields, lemur/system.py}}]}

(timed-out is decided by the caller, which owns the clock). Non-finite numbers become None.

Everything it writes goes to `config["work_dir"]` (inside the sandbox's run directory): `progress.json`
(for progress bars), `state.pt` after each epoch (model, optimizer, scaler, history: a rerun resumes
after the last finished epoch), `best.pt` (best weights, with `save_best`), `result.json` (the final
result, returned again if asked twice). Each epoch reseeds torch from (seed, epoch), so a resumed run
computes the same numbers as an uninterrupted one on the same device.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import random
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import TRANSFORMS, TensorCifar, load_split
from .lemur.system import train_stat_system
from .meter import PeakMemory

STATE, RESULT, PROGRESS, BEST, MODEL_FILE = "state.pt", "result.json", "progress.json", "best.pt", "model.py"
# config keys that change the numbers; a saved state made under other values is not resumed. The epoch
# count is not one of them (no schedule depends on it): a finished shorter run can be extended.
RESULT_KEYS = ("batch", "lr", "momentum", "dropout", "transform", "seed", "amp", "checkpointing",
               "channels_last", "device", "train_limit", "test_limit", "eval_batch", "norm")
DEFAULTS = {"epochs": 5, "batch": 16, "lr": 0.01, "momentum": 0.9, "dropout": 0.2, "transform": "norm_flip",
            "seed": 0, "amp": "auto", "checkpointing": True, "channels_last": False, "device": "auto",
            "threads": None, "train_limit": None, "test_limit": None, "eval_batch": 256, "save_best": False}


class DriverGone(RuntimeError):
    """The process that asked for this training has died; stop instead of training for nobody."""


def derive_seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:7], "big")


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda requested but torch sees no CUDA device")
    return torch.device(name)


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps({k: config.get(k) for k in RESULT_KEYS}, sort_keys=True).encode()).hexdigest()[:16]


def finite(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def is_oom(e: BaseException) -> bool:
    if isinstance(e, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(e).lower()
    return "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@contextmanager
def trial_lock(work_dir: Path, wait_s: float = 120.0):
    """Only one process trains a trial at a time (an orphan of a killed run may still be finishing)."""
    with open(work_dir / ".lock", "a") as f:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"another process is training {work_dir.name}") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class Progress:
    """Writes progress.json at most every `every_s` seconds; counts batches and images fed to learn()."""

    def __init__(self, path: Path, epochs: int, batches: int, every_s: float = 0.5) -> None:
        self.path, self.epochs, self.batches, self.every_s = path, epochs, batches, every_s
        self.epoch, self.batch, self.images = 0, 0, 0
        self._last = 0.0
        self._ppid = os.getppid()

    def write(self, force: bool = False, **extra) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.every_s:
            self._last = now
            _atomic_json(self.path, {"epoch": self.epoch, "epochs": self.epochs, "batch": self.batch,
                                     "batches": self.batches, **extra})

    def feed(self, batches):
        """Wraps the batch iterator handed to learn(): counts, reports, and stops if the driver died."""
        for x, y in batches:
            if os.getppid() != self._ppid:
                raise DriverGone("the driver process has exited")
            yield x, y
            self.batch += 1
            self.images += len(y)
            self.write()


def evaluate(model, data: TensorCifar, batch: int, generator: torch.Generator) -> tuple[float | None, float | None]:
    """(accuracy, mean cross-entropy) over the split, in eval mode without gradients."""
    model.eval()
    correct = torch.zeros((), device=data.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=data.device)
    with torch.no_grad():
        for x, y in data.batches(batch, generator, shuffle=False):
            out = model(x).float()
            loss_sum += F.cross_entropy(out, y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
    n = max(len(data), 1)
    return finite(correct.item() / n), finite(loss_sum.item() / n)


def gradient_norm(model) -> float | None:
    norms = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
    return finite(torch.stack(norms).norm().item()) if norms else None


# Measured on this project's 2-core CPU (bf16 autocast vs fp32, batch 16, fractal nets): bf16 is 17% slower
# when the narrowest conv has 8 channels and 1.35-1.7x faster from 16 channels up.
CPU_AMP_MIN_CHANNELS = 16


def auto_amp(model, device: torch.device) -> bool:
    """`amp: auto`: autocast where it pays: always on CUDA; on CPU once every conv is wide enough for bf16
    kernels to beat fp32. A function of the model alone, so a seed's numbers stay reproducible."""
    if device.type == "cuda":
        return True
    widths = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    return bool(widths) and min(widths) >= CPU_AMP_MIN_CHANNELS


def build(module, config: dict, device: torch.device, prm: dict):
    """Instantiate Net seeded, apply the runner's switches, call train_setup."""
    seed_all(config["seed"])
    model = module.Net((1, 3, 32, 32), (10,), prm, device)
    if hasattr(model, "amp"):
        model.amp = auto_amp(model, device) if config["amp"] == "auto" else bool(config["amp"])
    if hasattr(model, "grad_checkpoint"):
        model.grad_checkpoint = bool(config["checkpointing"])
    if config["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    model.train_setup(prm)
    return model


def train_model_file(path: str, config: dict) -> dict:
    """Sandbox entry point: train the model file at `path` as `config` says; see the module docstring."""
    config = {**DEFAULTS, **config}
    work = Path(config["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    with trial_lock(work):
        done = work / RESULT
        if done.exists():
            result = json.loads(done.read_text())
            if result.get("config_hash") == config_hash(config) and result.get("epochs_requested") == config["epochs"]:
                return result
        result = _train(path, config, work)
        result["config_hash"], result["epochs_requested"] = config_hash(config), config["epochs"]
        _atomic_json(done, result)
        return result


def _train(path: str, config: dict, work: Path) -> dict:
    from .validate import import_isolated

    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    device = resolve_device(config["device"])
    result = {"name": config.get("name") or Path(path).stem, "seed": config["seed"], "status": "error",
              "message": "", "params": None, "device": device.type, "amp": False, "checkpointing": False,
              "channels_last": bool(config["channels_last"]), "threads": torch.get_num_threads(),
              "resumed_epochs": 0, "epochs": []}
    prm = {"lr": config["lr"], "momentum": config["momentum"], "dropout": config["dropout"],
           "batch": config["batch"], "epoch": config["epochs"], "transform": config["transform"]}
    try:
        if config["transform"] not in TRANSFORMS:
            raise ValueError(f"transform {config['transform']!r} has no tensor fast path; use one of "
                             f"{', '.join(TRANSFORMS)}")
        module = import_isolated(path)
        model = build(module, config, device, prm)
        result.update(params=sum(p.numel() for p in model.parameters()),
                      amp=bool(getattr(model, "amp", False)),
                      checkpointing=bool(getattr(model, "grad_checkpoint", False)))
        mean, std = config["norm"]
        flip = TRANSFORMS[config["transform"]]
        train = TensorCifar(*load_split(config["data"], "train", config["train_limit"]), mean, std, flip,
                            device, config["channels_last"])
        test = TensorCifar(*load_split(config["data"], "test", config["test_limit"]), mean, std, flip,
                           device, config["channels_last"])
        _epochs(model, config, work, device, train, test, result)
    except DriverGone:
        raise
    except BaseException as e:  # noqa: BLE001 - every failure is a result
        if isinstance(e, KeyboardInterrupt):
            raise
        result["status"] = "out-of-memory" if is_oom(e) else "error"
        result["message"] = (f"{type(e).__name__}: {e}".splitlines() or [type(e).__name__])[0][:500]
    return result


def _epochs(model, config: dict, work: Path, device: torch.device, train: TensorCifar, test: TensorCifar,
            result: dict) -> None:
    epochs, batch, seed = int(config["epochs"]), int(config["batch"]), int(config["seed"])
    chash = config_hash(config)
    state_path = work / STATE
    history: list[dict] = []
    best, elapsed_ns = -1.0, 0
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=True)
        if state.get("config_hash") == chash and len(state["history"]) <= epochs:
            model.load_state_dict(state["model"])
            model.optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler") and getattr(model, "scaler", None) is not None:
                model.scaler.load_state_dict(state["scaler"])
            history, best, elapsed_ns = list(state["history"]), float(state["best"]), int(state["elapsed_ns"])
            result["resumed_epochs"] = len(history)
    result["epochs"] = history
    progress = Progress(work / PROGRESS, epochs, train.num_batches(batch))
    result["status"] = "trained"
    for epoch in range(len(history) + 1, epochs + 1):
        progress.epoch, progress.batch, progress.images = epoch, 0, 0
        progress.write(force=True)
        seed_all(derive_seed(seed, epoch, "model"))  # drop-path, dropout: same stream after a resume
        data_gen = torch.Generator().manual_seed(derive_seed(seed, epoch, "data"))
        eval_gen = torch.Generator().manual_seed(derive_seed(seed, epoch, "eval"))
        started = time.perf_counter()
        with PeakMemory(device) as mem:
            model.train()
            out = model.learn(progress.feed(train.batches(batch, data_gen, shuffle=True)))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_time = time.perf_counter() - started
            train_acc, train_loss = (out[0], out[1]) if isinstance(out, (tuple, list)) else (None, out)
            train_loss = finite(train_loss)
            diverged = train_loss is None and out is not None
            grad_norm = gradient_norm(model)
            acc = val_loss = None
            if not diverged:
                acc, val_loss = evaluate(model, test, max(batch, int(config["eval_batch"])), eval_gen)
                diverged = val_loss is None
        epoch_time = time.perf_counter() - started
        elapsed_ns += int(epoch_time * 1e9)
        history.append({"epoch": epoch, "accuracy": acc, "train_loss": train_loss, "val_loss": val_loss,
                        "train_accuracy": finite(train_acc), "epoch_time_s": round(epoch_time, 3),
                        "images_per_s": round(progress.images / max(train_time, 1e-9), 1),
                        "peak_memory_mb": mem.peak_mb, "train_time_s": round(train_time, 3),
                        "gradient_norm": grad_norm, "duration_ns": elapsed_ns,
                        "system": train_stat_system(device)})  # nn-dataset's train_stat machine fields
        if diverged:
            result["status"] = "diverged"
            result["message"] = f"non-finite {'training' if train_loss is None else 'validation'} loss in epoch {epoch}"
            break
        if config["save_best"] and acc is not None and acc > best:
            _atomic_save(model.state_dict(), work / BEST)
        best = max(best, acc if acc is not None else best)
        _atomic_save({"config_hash": chash, "model": model.state_dict(), "optimizer": model.optimizer.state_dict(),
                      "scaler": model.scaler.state_dict() if getattr(model, "scaler", None) is not None else {},
                      "history": history, "best": best, "elapsed_ns": elapsed_ns}, work / STATE)
    progress.write(force=True, finished=True)
