"""The training runner (the paper's `NNAlterFractalNet`), as it runs inside a jail: one model, one seed.

`train(path, config, resume, channel)` imports the model file, switches the Net's AMP / gradient
checkpointing / channels_last / torch.compile as configured (the driver resolves `auto` for AMP,
channels_last and compile from the per-machine tuner; `checkpointing: auto` is decided here, from the bytes
one training forward of the model saves, against the memory budget the driver passes), calls
`train_setup(prm)` and then, per epoch, the model's own `learn()` on an
iterable of ready batches (the LEMUR contract), followed by a forward pass over the test IMAGES (no_grad,
eval mode). The jail has no test labels: after each epoch it sends (protocol.py) the test logits as
float32 [n_test, 10], its self-reported training figures and the trial state (model, optimizer, scaler)
as safetensors bytes; the driver computes test accuracy and loss and keeps the state. `resume` is such a
state: training continues after `config["start_epoch"]` finished epochs. Each epoch reseeds torch from
(seed, epoch), so a resumed run computes the same numbers as an uninterrupted one on the same device.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import time

import numpy as np
import torch

from .batches import TensorCifar
from .data import TRANSFORMS
from ..util.meter import PeakMemory
from .protocol import write_frame
from ..tune import memory
from ..tune.device import free_bytes
from ..tune.rules import CPU_AMP_MIN_CHANNELS, decide
from .model_file import import_isolated

STATE_FORMAT = "fractal-trial-state/1"
DEFAULTS = {"epochs": 5, "batch": 16, "lr": 0.01, "momentum": 0.9, "dropout": 0.2, "transform": "norm_flip",
            "seed": 0, "amp": "auto", "checkpointing": "auto", "channels_last": False, "compile": False,
            "device": "auto", "memory_budget": None, "threads": None, "train_limit": None, "test_limit": None,
            "eval_batch": 256, "save_best": False, "eval_column": None, "gpu_share": 1.0}


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


def finite(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def auto_amp(model, device: torch.device) -> bool:
    """`amp: auto`: autocast where it pays: always on CUDA; on CPU once every conv is wide enough for bf16
    kernels to beat fp32. A function of the model alone, so a seed's numbers stay reproducible."""
    if device.type == "cuda":
        return True
    widths = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    return bool(widths) and min(widths) >= CPU_AMP_MIN_CHANNELS


@contextlib.contextmanager
def preserved_rng():
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def checkpointing_auto(model, batch: int, device: torch.device, budget: int | None,
                       share: float = 1.0) -> tuple[bool, int, int]:
    """`checkpointing: auto`: (on, saved bytes, budget): on when the tensors one training forward saves
    without checkpointing exceed DEFAULT_SHARE of the budget (the driver's memory budget for this trial, or
    `share` of the device's free memory: on CUDA, torch.cuda.mem_get_info, split among the trials that
    share the GPU)."""
    dtype = model.amp_dtype() if getattr(model, "amp", False) and hasattr(model, "amp_dtype") else torch.float32
    saved = memory.saved_tensor_bytes(model, batch, dtype=dtype)
    budget = int(budget) if budget else int(free_bytes(device) * float(share))
    return decide(saved, budget)[0], saved, budget


def build(module, config: dict, device: torch.device, prm: dict):
    """Instantiate Net seeded, apply the runner's switches, call train_setup. Returns (model, info) with
    what `auto` decided here."""
    seed_all(config["seed"])
    model = module.Net((1, 3, 32, 32), (10,), prm, device)
    info: dict = {}
    if hasattr(model, "amp"):
        model.amp = auto_amp(model, device) if config["amp"] == "auto" else bool(config["amp"])
    if hasattr(model, "grad_checkpoint"):
        if config["checkpointing"] == "auto":
            with preserved_rng():  # the estimate leaves the random streams as they were
                on, info["saved_bytes"], info["memory_budget"] = checkpointing_auto(
                    model, int(config["batch"]), device, config.get("memory_budget"), config.get("gpu_share") or 1.0)
        else:
            on = bool(config["checkpointing"])
        model.grad_checkpoint = on
    if config["channels_last"] is True:
        model = model.to(memory_format=torch.channels_last)
    model.train_setup(prm)
    if config.get("compile"):
        import os

        # in a jail: no compile worker pool, a uid without a passwd entry (inductor asks for a user name)
        os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
        os.environ.setdefault("USER", "trial")
        model.forward = torch.compile(model.forward)
        info["compile"] = True
    return model, info


def gradient_norm(model) -> float | None:
    norms = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
    return finite(torch.stack(norms).norm().item()) if norms else None


# --- trial state as safetensors ----------------------------------------------------------------------

def pack_state(model) -> bytes:
    """Model, optimizer and scaler state: tensors by name, everything else as JSON metadata."""
    from safetensors.torch import save

    tensors = {f"model/{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    opt = model.optimizer.state_dict()
    opt_meta: dict = {"param_groups": opt["param_groups"], "state": {}}
    for idx, st in opt["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"opt/{idx}/{key}"] = val.detach().cpu().contiguous().clone()
            else:
                opt_meta["state"].setdefault(str(idx), {})[key] = val
    scaler = getattr(model, "scaler", None)
    scaler_state = scaler.state_dict() if scaler is not None else {}
    meta = {"format": STATE_FORMAT, "optimizer": json.dumps(opt_meta), "scaler": json.dumps(scaler_state)}
    return save(tensors, metadata=meta)


def load_state(model, blob: bytes, device: torch.device) -> None:
    from safetensors.torch import load

    tensors = load(blob)
    meta = _metadata(blob)
    if meta.get("format") != STATE_FORMAT:
        raise ValueError("resume state has an unknown format")
    model.load_state_dict({k[6:]: v.to(device) for k, v in tensors.items() if k.startswith("model/")})
    opt_meta = json.loads(meta["optimizer"])
    state: dict = {int(i): dict(v) for i, v in opt_meta["state"].items()}
    for k, v in tensors.items():
        if k.startswith("opt/"):
            _, idx, key = k.split("/", 2)
            state.setdefault(int(idx), {})[key] = v.to(device)
    model.optimizer.load_state_dict({"state": state, "param_groups": opt_meta["param_groups"]})
    scaler_state = json.loads(meta["scaler"])
    if scaler_state and getattr(model, "scaler", None) is not None:
        model.scaler.load_state_dict(scaler_state)


def _metadata(blob: bytes) -> dict:
    import struct

    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]).get("__metadata__") or {}


# --- the training loop ------------------------------------------------------------------------------

def load_images(path: str, limit: int | None) -> torch.Tensor:
    x = np.load(path, mmap_mode="r", allow_pickle=False)
    n = len(x) if not limit else min(limit, len(x))
    return torch.from_numpy(np.array(x[:n]))


class Progress:
    """Sends a progress message at most every `every_s` seconds; counts batches and images fed to learn()."""

    def __init__(self, channel: int, batches: int, every_s: float = 0.5) -> None:
        self.channel, self.batches, self.every_s = channel, batches, every_s
        self.epoch = self.batch = self.images = 0
        self.steps: list[float] = []
        self._last = 0.0

    def send(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.every_s:
            self._last = now
            write_frame(self.channel, {"type": "progress", "epoch": self.epoch, "batch": self.batch,
                                       "batches": self.batches})

    def feed(self, batches):
        """Yields the batches; times each step (from one batch handed over to the next request)."""
        self.steps = []
        for x, y in batches:
            started = time.perf_counter()
            yield x, y
            self.steps.append(time.perf_counter() - started)
            self.batch += 1
            self.images += len(y)
            self.send()

    def step_times(self) -> dict:
        s = sorted(self.steps)
        settled = self.steps[len(self.steps) // 4:]  # the first quarter carries warm-up
        return {"first_step_s": round(self.steps[0], 4) if self.steps else None,
                "step_s": round(s[len(s) // 2], 4) if s else None,
                "mean_step_s": round(sum(settled) / len(settled), 5) if settled else None}


def test_logits(model, images: TensorCifar, batch: int, generator: torch.Generator) -> bytes:
    """float32 [n_test, 10] logits over the test images in order, eval mode, no gradients."""
    model.eval()
    outs = []
    with torch.no_grad():
        for x, _ in images.batches(batch, generator, shuffle=False):
            outs.append(torch.Tensor.as_subclass(model(x), torch.Tensor).detach().float().cpu())
    z = torch.cat(outs) if outs else torch.zeros(0, 10)
    return np.ascontiguousarray(z.numpy(), dtype="<f4").tobytes()


def train(path: str, config: dict, resume: bytes | None, channel: int) -> None:
    config = {**DEFAULTS, **config}
    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    device = resolve_device(config["device"])
    if config["transform"] not in TRANSFORMS:
        raise ValueError(f"transform {config['transform']!r} has no tensor fast path; use one of {', '.join(TRANSFORMS)}")
    prm = {"lr": config["lr"], "momentum": config["momentum"], "dropout": config["dropout"],
           "batch": config["batch"], "epoch": config["epochs"], "transform": config["transform"]}
    module = import_isolated(path)
    model, decided = build(module, config, device, prm)
    if config["eval_column"] == "deepest" and hasattr(model, "eval_column"):  # test logits of column C-1 alone
        model.eval_column = int(getattr(module, "COLUMNS", 1)) - 1
    write_frame(channel, {"type": "info", "params": sum(p.numel() for p in model.parameters()),
                          "amp": bool(getattr(model, "amp", False)),
                          "checkpointing": bool(getattr(model, "grad_checkpoint", False)),
                          "threads": torch.get_num_threads(), "device": device.type,
                          "state_bytes": sum(t.numel() * t.element_size() for t in model.state_dict().values()
                                             if isinstance(t, torch.Tensor)), **decided})
    mean, std = config["norm"]
    flip = TRANSFORMS[config["transform"]]
    data = config["data"]
    train_x = load_images(data["train_x"], config["train_limit"])
    train_y = torch.from_numpy(np.array(np.load(data["train_y"], mmap_mode="r", allow_pickle=False)[:len(train_x)]))
    test_x = load_images(data["test_x"], config["test_limit"])
    cl = config["channels_last"] is True
    train_set = TensorCifar(train_x, train_y, mean, std, flip, device, cl)
    test_set = TensorCifar(test_x, torch.zeros(len(test_x), dtype=torch.int64), mean, std, flip, device, cl)
    start = int(config.get("start_epoch") or 0)
    if resume:
        load_state(model, resume, device)
    epochs, batch, seed = int(config["epochs"]), int(config["batch"]), int(config["seed"])
    progress = Progress(channel, train_set.num_batches(batch))
    for epoch in range(start + 1, epochs + 1):
        progress.epoch, progress.batch, progress.images = epoch, 0, 0
        progress.send(force=True)
        seed_all(derive_seed(seed, epoch, "model"))  # drop-path, dropout: same stream after a resume
        data_gen = torch.Generator().manual_seed(derive_seed(seed, epoch, "data"))
        eval_gen = torch.Generator().manual_seed(derive_seed(seed, epoch, "eval"))
        started = time.perf_counter()
        with PeakMemory(device) as mem:
            model.train()
            out = model.learn(progress.feed(train_set.batches(batch, data_gen, shuffle=True)))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_time = time.perf_counter() - started
            train_acc, train_loss = (out[0], out[1]) if isinstance(out, (tuple, list)) else (None, out)
            train_loss = finite(train_loss)
            diverged = train_loss is None and out is not None
            grad_norm = gradient_norm(model)
            logits = b"" if diverged else test_logits(model, test_set, max(batch, int(config["eval_batch"])),
                                                       eval_gen)
        state = b"" if diverged else pack_state(model)
        write_frame(channel, {"type": "epoch", "epoch": epoch, "train_loss": train_loss,
                              "train_accuracy": finite(train_acc), "images": progress.images,
                              "train_time_s": round(train_time, 4),
                              "epoch_time_s": round(time.perf_counter() - started, 4),
                              "peak_memory_mb": finite(mem.peak_mb), "gradient_norm": grad_norm,
                              "diverged": diverged, **progress.step_times()}, [logits, state])
        if diverged:
            break
    write_frame(channel, {"type": "result", "value": {}})
