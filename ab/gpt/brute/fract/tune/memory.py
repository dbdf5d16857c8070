"""Memory of one training step, estimated on the meta device, and the `--checkpointing auto` decision.

`estimate_step(model, batch, ...)` runs one forward and backward of a meta-device copy of the model (no real
memory, no real compute) under a dispatch mode that follows every tensor the step allocates until it is
freed, and reports the peak of the live bytes: saved activations, recomputed ones (with checkpointing),
gradients of activations and of the parameters (allocated afresh each step, as `zero_grad(set_to_none=True)`
leaves them). AMP is modelled by running the copy in the low-precision dtype, plus the autocast copies of
the weights. Parameters and the optimizer's momentum are counted apart (`param_bytes`). Drop-path is
switched off for the estimate: all columns run, the largest step a model can take. Not seen: kernel
workspaces (e.g. im2col buffers of narrow fp32 convs on CPU) and the runtime's own memory.

`saved_tensor_bytes(model, batch)` counts what autograd saves in one training forward (saved-tensor hooks
on a meta copy): within a few percent of the peak for these models, and the figure a generated model file
computes by itself (`Net.saved_bytes` in the template) for its own default.

`checkpointing_decision(model, batch, device, share)` turns checkpointing on when the saved bytes without
it exceed `share` of the device's free memory (CUDA: free device memory; CPU: available RAM), and says why.
"""
from __future__ import annotations

import copy
import weakref
from dataclasses import asdict, dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .device import free_bytes
from .rules import DEFAULT_SHARE, decide


class _LiveBytes(TorchDispatchMode):
    """Follows the storages that ops allocate while any tensor using them lives; `peak` is the most bytes
    alive at once. Outputs that alias an input (views, detach, in-place results) share its storage."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._owner: dict[int, int] = {}  # id(tensor) -> storage key, while the tensor lives
        self._refs: dict[int, list[int]] = {}  # storage key -> [bytes, tensors using it]
        self._next = 0

    def _release(self, tid: int, key: int) -> None:
        self._owner.pop(tid, None)
        ref = self._refs[key]
        ref[1] -= 1
        if ref[1] == 0:
            self.live -= ref[0]
            del self._refs[key]

    def _track(self, t: torch.Tensor, key: int | None) -> None:
        if key is None:
            self._next += 1
            key = self._next
            n = t.untyped_storage().nbytes()
            self._refs[key] = [n, 0]
            self.live += n
        self._refs[key][1] += 1
        self._owner[id(t)] = key
        weakref.finalize(t, self._release, id(t), key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        schema = func._schema
        aliased = {}  # alias set -> the input tensor carrying it
        for arg, val in zip(schema.arguments, list(args) + [kwargs.get(a.name) for a in schema.arguments[len(args):]]):
            if arg.alias_info is not None and isinstance(val, torch.Tensor):
                for name in arg.alias_info.before_set:
                    aliased.setdefault(name, val)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        for ret, t in zip(schema.returns, outs):
            if not isinstance(t, torch.Tensor) or id(t) in self._owner:
                continue
            base = None
            if ret.alias_info is not None:
                base = next((aliased[n] for n in ret.alias_info.before_set if n in aliased), None)
            if base is not None:
                if id(base) in self._owner:
                    self._track(t, self._owner[id(base)])
                continue  # an alias of a tensor made outside the step (parameters, input): not counted
            self._track(t, None)
        self.peak = max(self.peak, self.live)
        return out


@dataclass(frozen=True)
class StepMemory:
    """Bytes of one training step; `activation_bytes` is the peak of everything the step allocates."""

    batch: int
    dtype: str
    checkpointing: bool
    activation_bytes: int  # peak live bytes of forward + backward (saved, recomputed, all gradients)
    saved_bytes: int  # live after forward: what the graph keeps for backward (plus the output)
    param_bytes: int  # fp32 parameters + SGD momentum

    @property
    def total_bytes(self) -> int:
        return self.activation_bytes + self.param_bytes

    def as_dict(self) -> dict:
        return {**asdict(self), "total_bytes": self.total_bytes}


def meta_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose parameters and buffers live on the meta device (the model itself is untouched)."""
    if all(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()]):
        return copy.deepcopy(model)
    memo: dict = {id(p): torch.nn.Parameter(p.detach().to("meta"), requires_grad=p.requires_grad)
                  for p in model.parameters()}
    memo.update({id(b): b.detach().to("meta") for b in model.buffers()})
    return copy.deepcopy(model, memo)


def _worst_case(model: torch.nn.Module) -> None:
    """Drop-path off (every column runs) and the model's own AMP off (the dtype is applied directly)."""
    for m in model.modules():
        for attr in ("local_drop", "global_drop"):
            if isinstance(getattr(m, attr, None), float):
                setattr(m, attr, 0.0)
    if hasattr(model, "amp"):
        model.amp = False


def estimate_step(model: torch.nn.Module, batch: int, in_shape=(3, 32, 32), dtype: torch.dtype = torch.float32,
                  checkpointing: bool = False) -> StepMemory:
    """Peak memory of one training step of `model` at `batch`, in `dtype` (bf16/fp16 stands for AMP)."""
    net = meta_copy(model)
    _worst_case(net)
    if hasattr(net, "grad_checkpoint"):
        net.grad_checkpoint = checkpointing
    params = sum(p.numel() for p in net.parameters())
    if dtype != torch.float32:
        net = net.to(dtype)
    net.train()
    x = torch.zeros((batch, *in_shape), device="meta", dtype=dtype)
    y = torch.zeros((batch,), device="meta", dtype=torch.long)
    mode = _LiveBytes()
    with mode:
        out = net(x)
        saved = mode.live
        loss = torch.nn.functional.cross_entropy(out.float(), y)
        loss.backward()
        del out, loss
    for p in net.parameters():
        p.grad = None
    peak = mode.peak
    if dtype != torch.float32:  # AMP keeps low-precision copies of the weights for the whole step
        peak += params * (torch.finfo(dtype).bits // 8)
    # fp32 parameters and SGD momentum (gradients are allocated by backward: they are in the step's peak)
    return StepMemory(batch, str(dtype).replace("torch.", ""), checkpointing, peak, saved, params * 8)


def saved_tensor_bytes(model: torch.nn.Module, batch: int, in_shape=(3, 32, 32),
                       dtype: torch.dtype = torch.float32) -> int:
    """Bytes of the tensors autograd saves in one training forward of a meta copy (all columns, no
    checkpointing; distinct tensors, parameters and buffers excluded), plus AMP's weight copies when `dtype`
    is not fp32. The generated model file computes the same figure (`Net.saved_bytes`) for its own default."""
    net = meta_copy(model)
    _worst_case(net)
    if hasattr(net, "grad_checkpoint"):
        net.grad_checkpoint = False
    net = net.to(dtype).train()
    own = {id(t) for t in [*net.parameters(), *net.buffers()]}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in own:
            seen[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = net(torch.zeros((batch, *in_shape), device="meta", dtype=dtype))
    weights = sum(p.numel() for p in net.parameters()) * (dtype.itemsize if dtype != torch.float32 else 0)
    del out
    return sum(seen.values()) + weights


@dataclass(frozen=True)
class Decision:
    on: bool
    reason: str
    estimate: dict
    free_bytes: int
    share: float

    def as_record(self) -> dict:
        """What a trial's stats keep: the decision, why, and the figures behind it."""
        return {"checkpointing": self.on, "checkpointing_reason": self.reason,
                "saved_tensors_mb": round(self.estimate["saved_tensor_bytes"] / 2**20, 1),
                "step_peak_estimate_mb": round(self.estimate["activation_bytes"] / 2**20, 1),
                "free_memory_mb": round(self.free_bytes / 2**20, 1), "checkpointing_share": self.share}


def checkpointing_decision(model: torch.nn.Module, batch: int, device: torch.device | str,
                           share: float = DEFAULT_SHARE, dtype: torch.dtype = torch.float32,
                           in_shape=(3, 32, 32), free: int | None = None) -> Decision:
    """`--checkpointing auto` for one model: on when the tensors one training forward saves without
    checkpointing (`saved_tensor_bytes`, the figure the model file's own default uses) exceed `share` of the
    free memory. The record also keeps the step's estimated peak (`estimate_step`)."""
    if not 0 < share <= 1:
        raise ValueError(f"share={share} must be in (0, 1]")
    saved = saved_tensor_bytes(model, batch, in_shape, dtype)
    est = estimate_step(model, batch, in_shape, dtype, checkpointing=False)
    free = free_bytes(device) if free is None else int(free)
    on, reason = decide(saved, free, share)
    return Decision(on, reason, {**est.as_dict(), "saved_tensor_bytes": saved}, free, share)
