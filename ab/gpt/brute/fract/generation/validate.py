"""Validation of one model file, run inside a jail (trial/), never in the main process.

`check_model_file` imports the file in isolation, checks the LEMUR contract, instantiates `Net` for
CIFAR-10 shapes, runs an eval forward (recording the architecture signature and FLOPs) and a training
forward and backward. Mode "meta" does this on the meta device (shapes only, no memory, milliseconds);
mode "real" runs on the CPU with real tensors and also calls `train_setup` and two `learn` steps.
"""
from __future__ import annotations

import hashlib
import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from ..trial.model_file import ContractError, import_isolated

DEFAULT_PRM = {"lr": 0.01, "momentum": 0.9, "dropout": 0.2}
KNOWN_HYPERPARAMETERS = {"lr", "momentum", "dropout"}


# argument types that are neither tensors nor containers, tested by exact type before any isinstance
_LEAVES = frozenset({int, str, type(None), torch.dtype, torch.device, torch.layout, torch.memory_format})
_TYPED_LEAVES = frozenset({float, bool, complex})  # equal across types (1 == 1.0 == True): keyed with their type


def _tensors(x, found: list) -> list:
    """The tensors among x's leaves (lists, tuples and dicts are walked): torch's pytree, without its
    generic node registry (which costs more than most meta kernels)."""
    t = type(x)
    if t in _LEAVES or t in _TYPED_LEAVES:
        return found
    if t is list or t is tuple:
        for v in x:
            _tensors(v, found)
    elif isinstance(x, torch.Tensor):
        found.append(x)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _tensors(v, found)
    elif isinstance(x, dict):
        for v in x.values():
            _tensors(v, found)
    return found


class _Uncacheable(Exception):
    pass


_MISSING = object()
FUNCTIONAL, UPDATE = "functional", "update"


class MetaShapeCache(TorchDispatchMode):
    """Memoises meta-device kernels: many of torch's meta kernels are Python reference code
    (batch norm, gelu, ...) costing milliseconds, and a space's models repeat the same op on the same
    shapes. The output metadata of a functional op is a pure function of its inputs' metadata and its
    other arguments, so a hit returns fresh empty tensors of the recorded shape, stride and dtype
    (and None where the op returned None, e.g. the bias gradient of a convolution without bias).
    An in-place update whose only tensor is the meta tensor it updates (uniform_, fill_, zero_, ...: parameter
    initialisation, whose meta kernels are Python reference code too) changes nothing on the meta device but
    may raise; once it succeeded for the same metadata and arguments it returns that tensor at once.
    Views, in-place metadata changes (resize_, t_, ...) and other mutating ops always run for real."""

    def __init__(self) -> None:
        super().__init__()
        self.cache: dict = {}
        self.updates_ok: set = set()  # keys of in-place updates that succeeded
        self.hits = self.misses = 0
        self._kinds: dict = {}

    @staticmethod
    def _key(x, meta: list):
        """A hashable key of x's metadata; meta[0] counts x's tensors on the meta device, meta[1] the others."""
        t = type(x)
        if t in _LEAVES:
            return x
        if t is list or t is tuple:
            key = MetaShapeCache._key
            return (t.__name__, *[key(v, meta) for v in x])
        if t in _TYPED_LEAVES:
            return (t, x)
        if isinstance(x, torch.Tensor):
            meta[not x.is_meta] += 1
            return ("T", tuple(x.shape), x.stride(), x.dtype, x.storage_offset())
        if isinstance(x, (list, tuple)):  # torch.Size, named tuples
            return (t.__name__, *[MetaShapeCache._key(v, meta) for v in x])
        if isinstance(x, dict):
            return ("D",) + tuple((k, MetaShapeCache._key(v, meta)) for k, v in sorted(x.items()))
        return x

    @staticmethod
    def _recipe(out):
        if isinstance(out, torch.Tensor):
            return ("T", tuple(out.shape), out.stride(), out.dtype)
        if out is None:
            return None
        if type(out) in (list, tuple):
            return (type(out).__name__,) + tuple(MetaShapeCache._recipe(v) for v in out)
        raise _Uncacheable

    @staticmethod
    def _build(recipe):
        if recipe is None:
            return None
        if recipe[0] == "T":
            return torch.empty_strided(recipe[1], recipe[2], dtype=recipe[3], device="meta")
        items = [MetaShapeCache._build(r) for r in recipe[1:]]
        return items if recipe[0] == "list" else tuple(items)

    def _kind(self, func) -> str | None:
        """FUNCTIONAL (memoised output metadata), UPDATE (memoised success of an in-place update of the first
        argument, returned as its result) or None (always run)."""
        kind = self._kinds.get(func, _MISSING)
        if kind is _MISSING:
            schema, kind = func._schema, None
            if not schema.is_mutable and all(r.alias_info is None for r in schema.returns):
                kind = FUNCTIONAL
            elif torch.Tag.inplace_view not in func.tags and len(schema.returns) == 1 and schema.arguments:
                ret, first = schema.returns[0].alias_info, schema.arguments[0].alias_info
                written = [a for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write]
                if (ret is not None and ret.is_write and first is not None and first.is_write
                        and ret.before_set == first.before_set and written == [schema.arguments[0]]):
                    kind = UPDATE
            self._kinds[func] = kind
        return kind

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = self._kind(func)
        if kind is None:
            return func(*args, **kwargs)
        meta = [0, 0]
        key = (func, self._key(args, meta), self._key(kwargs, meta))
        if kind is UPDATE:
            return self._update(func, args, kwargs, key, meta)
        if meta[1] or not meta[0]:
            return func(*args, **kwargs)
        try:
            recipe = self.cache.get(key, _MISSING)
        except TypeError:  # an unhashable argument
            return func(*args, **kwargs)
        if recipe is _MISSING:
            self.misses += 1
            out = func(*args, **kwargs)
            try:
                self.cache[key] = self._recipe(out)
            except _Uncacheable:
                pass
            return out
        self.hits += 1
        return self._build(recipe)

    def _update(self, func, args, kwargs, key, meta):
        # only the updated tensor itself, on the meta device: no other tensor whose memory could overlap it
        if meta != [1, 0] or not args or not isinstance(args[0], torch.Tensor):
            return func(*args, **kwargs)
        try:
            if key in self.updates_ok:
                self.hits += 1
                return args[0]
        except TypeError:  # an unhashable argument
            return func(*args, **kwargs)
        self.misses += 1
        out = func(*args, **kwargs)
        self.updates_ok.add(key)
        return out


_META_CACHE = MetaShapeCache()


_FLOPS: dict = {}  # (op, argument metadata) -> FLOPs, for meta-device arguments


def _flops(func, formula, args, kwargs, out) -> int:
    """torch's FLOP formula for one op (a function of shapes and arguments only, so memoised on meta
    tensors like MetaShapeCache: the formulas walk their arguments with torch's costly pytree)."""
    meta = [0, 0]
    key = (func, MetaShapeCache._key(args, meta), MetaShapeCache._key(kwargs, meta))
    if meta[1] or not meta[0]:
        return int(formula(*args, **kwargs, out_val=out))
    try:
        n = _FLOPS.get(key)
    except TypeError:  # an unhashable argument
        return int(formula(*args, **kwargs, out_val=out))
    if n is None:
        n = _FLOPS[key] = int(formula(*args, **kwargs, out_val=out))
    return n


class _DataflowTrace(TorchDispatchMode):
    """Records each aten op with its output shapes and which earlier op outputs it consumed, and counts
    FLOPs with torch's own per-op formulas (the ones FlopCounterMode uses, without its module hooks)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0
        self.lines: list[str] = []
        self._produced: dict[int, int] = {}
        self._keep: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += _flops(func, formula, args, kwargs, out)
        srcs = [self._produced.get(id(t), -1) for t in _tensors((args, kwargs), [])]
        outs = _tensors(out, [])
        idx = len(self.lines)
        for t in outs:
            self._produced[id(t)] = idx
        self._keep.append(out)
        shapes = [tuple(t.shape) for t in outs]
        self.lines.append(f"{func}:{srcs}->{shapes}")
        return out


def module_tree(model: torch.nn.Module) -> str:
    return "\n".join(f"{n}:{type(m).__name__}({m.extra_repr()})" for n, m in model.named_modules())


def architecture_signature(model: torch.nn.Module, x: torch.Tensor) -> tuple[str, int]:
    """(signature, flops): a hash of the module tree and the eval-mode dataflow graph, and its FLOPs."""
    was_training = model.training
    model.eval()
    # a model that decides AMP / checkpointing by itself on its first call (the template's auto_policies
    # runs a meta copy of itself) would add that copy's ops to its graph and FLOPs: decide them off here
    unset = [a for a in ("amp", "grad_checkpoint") if hasattr(model, a) and getattr(model, a) is None]
    for a in unset:
        setattr(model, a, False)
    trace = _DataflowTrace()
    try:
        with torch.no_grad(), trace:
            model(x)
    finally:
        for a in unset:
            setattr(model, a, None)
    model.train(was_training)
    text = module_tree(model) + "\n--\n" + "\n".join(trace.lines)
    return hashlib.sha256(text.encode()).hexdigest()[:20], trace.flops


def check_model_file(path: str, mode: str = "meta", in_shape=(1, 3, 32, 32), out_shape=(10,),
                     batch: int = 2, seed: int = 0) -> dict:
    """Validate one model file; returns signature, parameter count and FLOPs, or raises."""
    if mode not in ("meta", "real"):
        raise ValueError(f"mode must be meta or real, not {mode!r}")
    module = import_isolated(path)
    for attr in ("supported_hyperparameters", "Net"):
        if not hasattr(module, attr):
            raise ContractError(f"missing {attr}")
    hps = module.supported_hyperparameters()
    if not isinstance(hps, (set, frozenset)) or not all(isinstance(h, str) for h in hps):
        raise ContractError("supported_hyperparameters() must return a set of names")
    if not hps <= KNOWN_HYPERPARAMETERS:
        raise ContractError(f"unknown hyperparameters {sorted(hps - KNOWN_HYPERPARAMETERS)}")
    net_cls = module.Net
    if not (isinstance(net_cls, type) and issubclass(net_cls, torch.nn.Module)):
        raise ContractError("Net must be a torch.nn.Module subclass")
    for m in ("train_setup", "learn", "forward"):
        if not callable(getattr(net_cls, m, None)):
            raise ContractError(f"Net lacks {m}()")

    with _META_CACHE:  # acts on meta tensors only
        return _exercise(net_cls, mode, tuple(in_shape), tuple(out_shape), batch, seed)


def _exercise(net_cls, mode: str, in_shape: tuple, out_shape: tuple, batch: int, seed: int) -> dict:
    torch.manual_seed(seed)
    prm = dict(DEFAULT_PRM)
    meta = torch.device("meta")
    with meta:  # the signature always comes from a meta instance, so it is the same in both modes
        model = net_cls(tuple(in_shape), tuple(out_shape), prm, meta)
    params = sum(p.numel() for p in model.parameters())
    signature, flops = architecture_signature(model, torch.zeros(in_shape, device=meta))
    device = meta
    if mode == "real":
        device = torch.device("cpu")
        model = net_cls(tuple(in_shape), tuple(out_shape), prm, device)

    model.train()
    x = torch.randn((batch,) + tuple(in_shape[1:]), device=device)
    out = model(x)
    if tuple(out.shape) != (batch, out_shape[0]):
        raise ContractError(f"forward returned shape {tuple(out.shape)}, expected {(batch, out_shape[0])}")
    out.float().sum().backward()
    if not any(p.grad is not None for p in model.parameters()):
        raise ContractError("backward reached no parameter")
    model.train_setup(prm)
    result = {"signature": signature, "params": params, "flops": flops, "mode": mode}
    if mode == "real":
        labels = torch.randint(out_shape[0], (batch,))
        acc, loss = model.learn([(x, labels), (x, labels)])
        if not (0.0 <= float(acc) <= 1.0) or not math.isfinite(float(loss)):
            raise ContractError(f"learn() returned ({acc}, {loss}), expected (accuracy in [0,1], finite loss)")
        result.update(learn_accuracy=float(acc), learn_loss=float(loss))
    return result


def validate_trial(path: str, config: dict) -> dict:
    """The jailed worker's handler of a validate trial: `check_model_file` with the trial's config."""
    return check_model_file(path, **config)

