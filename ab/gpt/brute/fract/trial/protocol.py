"""Framed messages between the driver and a jailed trial process.

A frame is a 4-byte big-endian header length, a JSON header (an object with "type" and "sizes", the
byte lengths of the raw payloads that follow) and the payloads. The driver trusts nothing it reads
from a jail: every header is checked against a fixed schema (unknown types or keys, wrong types,
NaN/inf, sizes over the limits are a `ProtocolError`), logits must be float32 of exactly [n_test, 10],
and model state must be a well-formed safetensors blob. Nothing is ever unpickled.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import select
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

MAX_HEADER = 64 << 10
# config keys that change the numbers; a saved state made under other values is not resumed. The epoch
# count is not one of them (no schedule depends on it): a finished shorter run can be extended.
RESULT_KEYS = ("batch", "lr", "momentum", "dropout", "transform", "seed", "amp", "checkpointing",
               "channels_last", "compile", "device", "train_limit", "test_limit", "eval_batch", "norm", "eval_column")
HANDLER_ROOT = "ab.gpt.brute.fract."
TRAIN_HANDLER = HANDLER_ROOT + "trial.runner:train"  # the default handler of a train trial
NUM_CLASSES = 10


class ProtocolError(ValueError):
    """A peer sent something that is not a well-formed, expected message."""


@dataclass(frozen=True)
class Limits:
    max_state: int = 1 << 30  # bytes of one safetensors state
    max_frames: int = 1_000_000  # frames per trial (progress included)


def handler_module(handler: str) -> str:
    """The module of a trial's handler, named by the driver as "package.module:function" under this project."""
    module, sep, func = handler.partition(":")
    if not (sep and func.isidentifier() and module.startswith(HANDLER_ROOT)):
        raise ValueError(f"bad trial handler {handler!r}: expected '{HANDLER_ROOT}<module>:<function>'")
    return module


def _reject_constant(name: str):
    raise ProtocolError(f"non-finite number {name} in a header")


def encode(header: dict, payloads: tuple[bytes, ...] | list[bytes] = ()) -> bytes:
    head = json.dumps({**header, "sizes": [len(p) for p in payloads]}, allow_nan=False).encode()
    if len(head) > MAX_HEADER:
        raise ProtocolError(f"header of {len(head)} bytes is over the {MAX_HEADER} byte limit")
    return b"".join([struct.pack(">I", len(head)), head, *payloads])


def write_frame(fd: int, header: dict, payloads=()) -> None:
    view = memoryview(encode(header, payloads))
    while view:
        view = view[os.write(fd, view):]


class FrameReader:
    """Reads frames from a file descriptor with a deadline; `max_payload` bounds each payload."""

    def __init__(self, fd: int, max_payload: int) -> None:
        self.fd, self.max_payload = fd, max_payload

    def _exact(self, n: int, deadline: float | None, eof_ok: bool = False) -> bytes | None:
        chunks, got = [], 0
        while got < n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    raise TimeoutError("no message before the deadline")
            chunk = os.read(self.fd, min(n - got, 1 << 20))
            if not chunk:
                if eof_ok and got == 0:
                    return None
                raise ProtocolError(f"stream ended inside a frame ({got} of {n} bytes)")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _to_file(self, n: int, deadline: float | None, path: Path) -> Path:
        try:
            with open(path, "wb") as f:
                left = n
                while left:
                    chunk = self._exact(min(left, 1 << 20), deadline)
                    f.write(chunk)
                    left -= len(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def read(self, deadline: float | None = None, spill: Callable[[dict, int], Path | None] | None = None
             ) -> tuple[dict, list] | None:
        """(header, payloads), or None at a clean end of stream. `spill(header, i)` may name a file that payload
        i is streamed to instead of memory (the payload is then that Path)."""
        raw = self._exact(4, deadline, eof_ok=True)
        if raw is None:
            return None
        (n,) = struct.unpack(">I", raw)
        if n > MAX_HEADER:
            raise ProtocolError(f"header of {n} bytes is over the {MAX_HEADER} byte limit")
        header = parse_header(self._exact(n, deadline))
        sizes = header["sizes"]
        if sum(sizes) > self.max_payload:
            raise ProtocolError(f"payloads of {sum(sizes)} bytes are over the {self.max_payload} byte limit")
        out: list = []
        for i, size in enumerate(sizes):
            target = spill(header, i) if spill is not None and size else None
            out.append(self._to_file(size, deadline, target) if target is not None
                       else self._exact(size, deadline) if size else b"")
        return header, out


def parse_header(raw: bytes) -> dict:
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"header is not JSON ({e})") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise ProtocolError("header is not an object with a type")
    sizes = header.get("sizes")
    if not isinstance(sizes, list) or len(sizes) > 4 or \
            not all(type(s) is int and s >= 0 for s in sizes):
        raise ProtocolError("header sizes must be a list of at most 4 non-negative integers")
    return header


# --- what a jailed trial may send ------------------------------------------------------------------

_NUM = (int, float)
# type -> {key: (allowed types, required)}; "sizes" and "type" are always there
SCHEMA = {
    "progress": {"epoch": ((int,), True), "batch": ((int,), True), "batches": ((int,), True)},
    "info": {"params": ((int,), True), "amp": ((bool,), True), "checkpointing": ((bool,), True),
             "threads": ((int,), True), "device": ((str,), True),
             # --checkpointing auto: the bytes one training forward saves and the budget they were held to
             "saved_bytes": ((int, type(None)), False), "memory_budget": ((int, type(None)), False),
             "compile": ((bool,), False),
             # bytes of the model's parameters and buffers: what bounds each epoch's state
             "state_bytes": ((int,), False)},
    "epoch": {"epoch": ((int,), True), "train_loss": (_NUM + (type(None),), True),
              "train_accuracy": (_NUM + (type(None),), True), "images": ((int,), True),
              "train_time_s": (_NUM, True), "epoch_time_s": (_NUM, True),
              "peak_memory_mb": (_NUM + (type(None),), True), "gradient_norm": (_NUM + (type(None),), True),
              "diverged": ((bool,), True),
              # first training step and the median one (what torch.compile added shows in the difference), and
              # the mean step after the first quarter (the plan's calibration)
              "first_step_s": (_NUM + (type(None),), False), "step_s": (_NUM + (type(None),), False),
              "mean_step_s": (_NUM + (type(None),), False)},
    "result": {"value": ((dict,), True)},
    "error": {"message": ((str,), True), "oom": ((bool,), True)},
}
PAYLOADS = {"progress": 0, "info": 0, "epoch": 2, "result": 0, "error": 0}


def check(header: dict, payloads: list[bytes]) -> dict:
    """The header of a message from a jail, checked against SCHEMA; raises ProtocolError."""
    kind = header["type"]
    schema = SCHEMA.get(kind)
    if schema is None:
        raise ProtocolError(f"unexpected message type {kind[:40]!r}")
    extra = set(header) - set(schema) - {"type", "sizes"}
    if extra:
        raise ProtocolError(f"unexpected keys {sorted(extra)[:5]} in a {kind} message")
    for key, (types, required) in schema.items():
        if key not in header:
            if required:
                raise ProtocolError(f"{kind} message lacks {key}")
            continue
        v = header[key]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            raise ProtocolError(f"{kind}.{key} has the wrong type ({type(v).__name__})")
        if isinstance(v, float) and not math.isfinite(v):
            raise ProtocolError(f"{kind}.{key} is not finite")
        if isinstance(v, int) and not isinstance(v, bool) and v < 0:
            raise ProtocolError(f"{kind}.{key} is negative")
        if isinstance(v, str) and len(v) > 2000:
            raise ProtocolError(f"{kind}.{key} is too long")
    if len(payloads) != PAYLOADS[kind]:
        raise ProtocolError(f"a {kind} message carries {len(payloads)} payloads, not {PAYLOADS[kind]}")
    return header


def logits(raw: bytes, n_test: int) -> np.ndarray:
    """Test logits: exactly n_test x 10 little-endian float32 values, as a plain (trusted) array."""
    want = n_test * NUM_CLASSES * 4
    if len(raw) != want:
        raise ProtocolError(f"logits of {len(raw)} bytes, expected float32 [{n_test}, {NUM_CLASSES}] "
                            f"({want} bytes)")
    return np.frombuffer(raw, dtype="<f4").reshape(n_test, NUM_CLASSES).astype(np.float64)


OPTIMIZER_FACTOR = 3  # the model's tensors, and up to two optimizer buffers per parameter (Adam's moments)
STATE_SLACK = 1 << 20  # the safetensors header, optimizer metadata, a scaler


def state_bound(state_bytes: int, limit: int) -> int:
    """The largest state a model with `state_bytes` of parameters and buffers can legitimately send."""
    return min(limit, OPTIMIZER_FACTOR * state_bytes + STATE_SLACK)


def tensor_shapes(head: dict) -> dict[str, tuple]:
    """name -> (dtype, shape) of a checked safetensors header's tensors."""
    return {k: (v.get("dtype"), tuple(v.get("shape") or ())) for k, v in head.items() if k != "__metadata__"}


def model_bytes(head: dict) -> int:
    """Bytes of the model's own tensors (names under model/) of a checked safetensors header."""
    return sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in head.items() if k.startswith("model/"))


def _prefix(source: bytes | Path, n: int) -> bytes:
    if isinstance(source, Path):
        with open(source, "rb") as f:
            return f.read(n)
    return source[:n]


def check_safetensors(source: bytes | Path, limit: int) -> dict:
    """A safetensors blob (bytes, or a file it was streamed to): size within `limit`, an 8-byte header length,
    a JSON header that fits, and every tensor's byte range inside the data section. Returns the header."""
    size = source.stat().st_size if isinstance(source, Path) else len(source)
    if size > limit:
        raise ProtocolError(f"state of {size} bytes is over the {limit} byte limit")
    if size < 8:
        raise ProtocolError("state is not safetensors (too short)")
    (n,) = struct.unpack("<Q", _prefix(source, 8))
    if n > size - 8 or n > 100 << 20:
        raise ProtocolError("state is not safetensors (bad header length)")
    try:
        head = json.loads(_prefix(source, 8 + n)[8:].decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolError("state is not safetensors (header is not JSON)") from None
    if not isinstance(head, dict):
        raise ProtocolError("state is not safetensors (header is not an object)")
    data = size - 8 - n
    for key, info in head.items():
        if key == "__metadata__":
            continue
        offs = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int for o in offs)
                and 0 <= offs[0] <= offs[1] <= data):
            raise ProtocolError(f"state tensor {key[:60]!r} has bad offsets")
        shape = info.get("shape")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise ProtocolError(f"state tensor {key[:60]!r} has a bad shape")
    return head


def score(raw_logits: bytes, labels: np.ndarray) -> tuple[float | None, float | None]:
    """(accuracy, mean cross-entropy) of the jail's test logits against the driver's labels; (None, None)
    when the logits are not finite (a diverged model)."""
    z = logits(raw_logits, len(labels))
    if not np.isfinite(z).all():
        return None, None
    y = np.asarray(labels, dtype=np.int64)
    top = z.max(axis=1)
    lse = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
    loss = float((lse - z[np.arange(len(y)), y]).mean()) if len(y) else None
    acc = float((z.argmax(axis=1) == y).mean()) if len(y) else None
    return acc, loss


def config_hash(config: dict) -> str:
    """What a saved state was made under (`RESULT_KEYS`): a state is resumed only under the same hash."""
    return hashlib.sha256(json.dumps({k: config.get(k) for k in RESULT_KEYS}, sort_keys=True).encode()).hexdigest()[:16]
