"""The driver's side of one jail: start it, run trials on it one at a time, judge what comes back.

A `Jail` is one bwrap process whose zygote (worker.py) serves trials. `Jail.run(trial)` hands it the
trial (code text + config + optional resume state in) on a fresh per-trial channel and turns the stream
of events (progress / info / epoch(logits, self-reported figures, state) / result or error) into a
`TrialResult`. Test accuracy and loss are computed here, from the logits and the labels only this
side holds. Anything malformed fails the trial as a protocol error and kills the jail (the next trial
gets a fresh one); so do a timeout and a jail that stops answering. The driver keeps only a bounded tail
of the jail's stderr.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..lemur.system import train_stat_system
from . import protocol
from .cgroup import Budget
from .jail import NOT_HARDENED, JailConfig, JailError, command, environment, hardening, seccomp_fd
from .protocol import FrameReader, ProtocolError, write_frame

STATE, HISTORY, BEST = "state.safetensors", "history.json", "best.safetensors"
INCOMING = ".incoming.safetensors"  # an epoch's state while it arrives
_IGNORED = object()
STDERR_TAIL = 8192
EXIT_GRACE = 5.0  # seconds past a trial's deadline for the zygote's clean-up report
SELF_REPORTED = ["train_loss", "train_accuracy", "gradient_norm", "images_per_s", "epoch_time_s",
                 "train_time_s", "peak_memory_mb", "first_step_s", "step_s", "mean_step_s"]


@dataclass(frozen=True)
class TrialLimits:
    cpu_s: int = 3600  # CPU seconds of the model process
    memory_gb: float | None = 8.0  # the trial's cgroup memory (and address space beyond the zygote's; None: no limit)
    file_mb: int = 1024
    nproc: int = 256  # processes and threads of the model (its cgroup, and its uid)
    max_state: int = 1 << 30
    disk_mb: int = 1024  # the jail's scratch tmpfs
    max_files: int = 10_000  # files and folders a model may leave in its scratch folder


@dataclass
class Trial:
    """One unit of work: `task` is train, validate or pixels. Train trials also carry the host path of
    the test labels (never sent into the jail) and may carry a resume state and earlier epochs."""

    task: str
    code: str
    config: dict
    timeout: float
    labels: str | None = None
    resume: bytes | None = None
    history: list[dict] = field(default_factory=list)
    state_dir: str | None = None  # where this side keeps state/history after each epoch
    train_images: int | None = None  # training images per epoch, as the driver configured them
    handler: str = ""  # "module:function" the jailed worker runs (default for train: trial/runner.py's train)

    def handler_name(self) -> str:
        if self.handler:
            return self.handler
        if self.task == "train":
            return protocol.TRAIN_HANDLER
        raise ValueError(f"a {self.task} trial names no handler (Trial(..., handler='module:function'))")


@dataclass
class TrialResult:
    status: str  # ok (validate/pixels), trained, diverged, error, out-of-memory, timed-out, killed
    message: str = ""
    value: dict = field(default_factory=dict)  # the result of validate/pixels; info of a training
    epochs: list[dict] = field(default_factory=list)
    budget: dict = field(default_factory=dict)  # the limits it ran under and what the kernel counted

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "trained")


class _Tail:
    """Reads a stream to its end, keeping only the last `limit` bytes."""

    def __init__(self, fd, limit: int = STDERR_TAIL) -> None:
        self.buf: collections.deque = collections.deque()
        self.size, self.limit = 0, limit
        self.thread = threading.Thread(target=self._pump, args=(fd,), daemon=True)
        self.thread.start()

    def _pump(self, f) -> None:
        for chunk in iter(lambda: f.read1(4096), b""):
            self.buf.append(chunk)
            self.size += len(chunk)
            while self.size - len(self.buf[0]) >= self.limit:
                self.size -= len(self.buf.popleft())

    def text(self) -> str:
        return b"".join(self.buf)[-self.limit:].decode(errors="replace")

    def last_line(self) -> str:
        lines = [ln for ln in self.text().strip().splitlines() if ln.strip()]
        return lines[-1][:300] if lines else ""


def save_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Jail:
    def __init__(self, cfg: JailConfig, startup_timeout: float = 300.0) -> None:
        self.cfg = cfg
        shutil.rmtree(cfg.scratch, ignore_errors=True)  # what a killed predecessor left
        cfg.scratch.mkdir(parents=True)
        os.chmod(cfg.scratch, 0o711)  # the model uid may pass through to its own folder, not list it
        for f in cfg.data.values():  # decoded-data cache files: the model uid reads them (read-only bind)
            mode = os.stat(f).st_mode
            if mode & 0o444 != 0o444:
                os.chmod(f, mode | 0o444)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = ours
        self.hardening = hardening() if cfg.harden else NOT_HARDENED
        filt = seccomp_fd(cfg)
        fds = [theirs.fileno()] + ([filt] if filt is not None else [])
        try:
            self.proc = subprocess.Popen(command(cfg, theirs.fileno(), filt), pass_fds=fds,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, env=_host_env(cfg), start_new_session=True)
        finally:
            theirs.close()
            if filt is not None:
                os.close(filt)
        self.trials = 0
        self.tail = _Tail(self.proc.stderr)
        self.reader = FrameReader(self.sock.fileno(), 1 << 16)
        try:
            frame = self.reader.read(time.monotonic() + startup_timeout)
        except (ProtocolError, TimeoutError, OSError) as e:
            frame = None
            why = str(e)
        else:
            why = "it exited"
        if frame is None or frame[0].get("type") != "ready":
            self.kill()
            self.tail.thread.join(timeout=5)
            raise JailError(f"the jail did not start ({why}): {self.tail.last_line() or 'no output'}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)  # bwrap; its PID namespace dies with it
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.sock.close()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def run(self, trial: Trial, limits: TrialLimits, on_event: Callable[[str, dict], None] | None = None,
            judge=None) -> TrialResult:
        """`judge` (default: a `_Judge` here) takes each frame and builds the result; a Ray node passes a relay
        that forwards the frames to the driver's judge instead (ray_node.py)."""
        deadline = time.monotonic() + trial.timeout
        judge = judge if judge is not None else _Judge(trial, limits, on_event)
        handler = trial.handler_name()
        self.trials += 1
        budget = self._budget(limits)
        try:
            return self._run(trial, limits, judge, deadline, budget, handler)
        finally:
            if budget is not None:
                budget.close()

    def _accounts(self, limits: TrialLimits, budget: Budget | None) -> dict:
        """The budgets of a trial and what the kernel counted (read before the groups are removed)."""
        return {**self.hardening.record(), "scratch_limit_mb": limits.disk_mb,
                "scratch_files_limit": limits.max_files,
                **(budget.figures() if budget is not None else {})}

    def _budget(self, limits: TrialLimits) -> Budget | None:
        groups = self.hardening.cgroups
        if groups is None:
            return None
        memory = None if limits.memory_gb is None else int(float(limits.memory_gb) * (1 << 30))
        return groups.budget(f"{os.getpid()}-{self.cfg.uid}-{self.trials}", memory, limits.nproc)

    def _run(self, trial: Trial, limits: TrialLimits, judge, deadline: float, budget: Budget | None,
             handler: str) -> TrialResult:
        r, w = os.pipe()
        try:
            config = dict(trial.config)
            if trial.task in ("train", "pixels"):
                config["data"] = self.cfg.data_paths()
            if trial.task == "train":
                config["start_epoch"] = len(trial.history)
            try:
                socket.send_fds(self.sock, [b"R"], [w] + (budget.fds if budget is not None else []))
                write_frame(self.sock.fileno(), {"type": "run", "task": trial.task, "handler": handler,
                                                 "config": config, "limits": limits.__dict__},
                            [trial.code.encode(), trial.resume or b""])
            except OSError as e:
                self.kill()
                return TrialResult("error", f"jail gone before the trial started ({e}): {self.tail.last_line()}")
            finally:
                os.close(w)
                if budget is not None:
                    budget.close_fds()
            reader = FrameReader(r, limits.max_state + (64 << 20))
            failure: TrialResult | None = None
            try:
                while True:
                    bound = getattr(judge, "payload_bound", None)  # set once the model said what it holds
                    if bound is not None:
                        reader.max_payload = bound()
                    if (frame := reader.read(deadline, getattr(judge, "spill", None))) is None:
                        break
                    judge.take(*frame)
            except TimeoutError:
                failure = TrialResult("timed-out", f"timed out after {trial.timeout:g} s")
            except ProtocolError as e:
                failure = TrialResult("error", f"protocol error: {e}")
            if failure is not None:
                self.kill()
                failure.epochs = judge.epochs
                failure.budget = self._accounts(limits, budget)
                return failure
            try:
                exit_frame = self.reader.read(deadline + EXIT_GRACE)
            except TimeoutError:  # the channel is closed but the model (or what it left) still runs
                self.kill()
                return TrialResult("timed-out", f"timed out after {trial.timeout:g} s (the model closed its channel "
                                   "and kept running)", judge.info, judge.epochs, self._accounts(limits, budget))
            except (ProtocolError, OSError):
                exit_frame = None
            if exit_frame is None or exit_frame[0].get("type") != "exit":
                self.kill()
                self.tail.thread.join(timeout=2)
                res = judge.finish(None, f"the jail exited: {self.tail.last_line() or 'no output'}")
                res.budget = self._accounts(limits, budget)
                return res
            left = {k: exit_frame[0][k] for k in ("scratch_bytes", "scratch_files", "ipc_removed")
                    if isinstance(exit_frame[0].get(k), int)}
            return judge.finish({**exit_frame[0], "budget": {**self._accounts(limits, budget), **left}},
                                self.tail.last_line())
        finally:
            os.close(r)


def _host_env(cfg: JailConfig) -> dict[str, str]:
    """bwrap itself gets no driver variables either (its /proc/1/environ would show them)."""
    return environment(cfg)


def account(res: TrialResult, figures: dict) -> TrialResult:
    """A trial that went past a budget ends with which one and the figure, even when its model still
    finished (cgroup v1 kills only the largest process of the group); every trial carries its budget record."""
    res.budget = dict(figures)
    said = f": {res.message}" if res.message else ""
    files, max_files = figures.get("scratch_files", 0), figures.get("scratch_files_limit")
    if figures.get("oom_kills"):
        res.status = "out-of-memory"
        res.message = (f"memory budget of {figures['memory_limit_mb']} MB exceeded (peak {figures['memory_peak_mb']} "
                       f"MB; the kernel killed {figures['oom_kills']} process(es) of the model){said}")
    elif figures.get("forks_refused") and res.status != "timed-out":
        res.status = "limit"
        res.message = (f"process budget of {figures['pids_limit']} reached ({figures['forks_refused']} forks "
                       f"refused){said}")
    elif figures.get("scratch_bytes", 0) >= (figures.get("scratch_limit_mb", 1 << 40) << 20) * 0.98 \
            or (not res.ok and "No space left" in res.message):
        res.status = "disk-full"
        res.message = f"scratch of {figures['scratch_limit_mb']} MB full ({files} files left){said}"
    elif max_files is not None and files > max_files:
        res.status = "limit"
        res.message = f"file budget of {max_files} exceeded ({files} files left in the scratch){said}"
    return res


class _Judge:
    """Checks the event stream of one trial and builds its result (trusted side)."""

    def __init__(self, trial: Trial, limits: TrialLimits, on_event) -> None:
        self.trial, self.limits, self.on_event = trial, limits, on_event or (lambda kind, data: None)
        self.epochs: list[dict] = list(trial.history)
        self.info: dict = {}
        self.final: dict | None = None
        self.diverged = ""
        self.frames = 0
        self.labels = np.load(trial.labels, allow_pickle=False) if trial.task == "train" else None
        if self.labels is not None and trial.config.get("test_limit"):
            self.labels = self.labels[:int(trial.config["test_limit"])]
        self.best = max([e["accuracy"] for e in self.epochs if e.get("accuracy") is not None], default=-1.0)
        self.shapes: dict | None = None  # the state's tensors (name -> dtype, shape), fixed by the first one
        self.started = self.mark = time.monotonic()  # the driver's clock: epoch wall times and durations
        self.base_ns = self.epochs[-1]["duration_ns"] if self.epochs else 0

    def state_limit(self) -> int:
        """A state may hold the model's declared parameters and buffers, optimizer buffers and some slack."""
        declared = self.info.get("state_bytes")
        return self.limits.max_state if declared is None else protocol.state_bound(declared, self.limits.max_state)

    def payload_bound(self) -> int:
        n_test = 0 if self.labels is None else len(self.labels)
        return self.state_limit() + n_test * protocol.NUM_CLASSES * 4 + (64 << 10)

    def take(self, header: dict, payloads: list[bytes]) -> None:
        self.frames += 1
        if self.frames > protocol.Limits().max_frames:
            raise ProtocolError("too many messages")
        header = protocol.check(header, payloads)
        kind = header["type"]
        if self.final is not None:
            raise ProtocolError(f"a {kind} message after the final one")
        if self.trial.task != "train" and kind not in ("result", "error"):
            raise ProtocolError(f"a {kind} message in a {self.trial.task} trial")
        if kind == "progress":
            self.on_event("progress", header)
        elif kind == "info":
            self.info = {k: header[k] for k in protocol.SCHEMA["info"] if k in header}
        elif kind == "epoch":
            self._epoch(header, payloads)
        else:
            self.final = header

    def _epoch(self, h: dict, payloads: list[bytes]) -> None:
        want = len(self.epochs) + 1
        if h["epoch"] != want or want > int(self.trial.config.get("epochs", 0)):
            raise ProtocolError(f"epoch {h['epoch']} where epoch {want} of {self.trial.config.get('epochs')} was due")
        logits, state = payloads
        try:
            acc, val_loss = self._judge_epoch(h, logits, state)
        except BaseException:
            if isinstance(state, Path):
                state.unlink(missing_ok=True)
            raise
        if acc is _IGNORED:
            if isinstance(state, Path):
                state.unlink(missing_ok=True)
            return
        now = time.monotonic()
        wall, self.mark = now - self.mark, now
        rec = {"epoch": h["epoch"], "accuracy": acc, "train_loss": h["train_loss"], "val_loss": val_loss,
               "train_accuracy": h["train_accuracy"], "epoch_time_s": h["epoch_time_s"],
               "images_per_s": round(h["images"] / max(h["train_time_s"], 1e-9), 1),
               "peak_memory_mb": h["peak_memory_mb"], "train_time_s": h["train_time_s"],
               "gradient_norm": h["gradient_norm"],
               # the driver's wall clock: from the run request (or the previous epoch) to this epoch's arrival
               "wall_s": round(wall, 4), "duration_ns": self.base_ns + int((now - self.started) * 1e9),
               "samples_per_second": round(self.trial.train_images / max(wall, 1e-9), 2)
               if self.trial.train_images else None,
               "first_step_s": h.get("first_step_s"), "step_s": h.get("step_s"),
               "mean_step_s": h.get("mean_step_s"),
               "self_reported": SELF_REPORTED,
               # nn-dataset's train_stat machine fields, measured here, outside the jail
               "system": train_stat_system(str(self.trial.config.get("device", "cpu")))}
        self.epochs.append(rec)
        if h["train_loss"] is None or val_loss is None:
            which = "training" if h["train_loss"] is None else "validation"
            self.diverged = f"non-finite {which} loss in epoch {h['epoch']}"
        self._store(state, acc)
        self.on_event("epoch", rec)

    def spill(self, header: dict, index: int) -> Path | None:
        """An epoch's state goes straight to a file beside the kept state, not into memory."""
        if header.get("type") == "epoch" and index == 1 and self.trial.state_dir is not None:
            return Path(self.trial.state_dir) / INCOMING
        return None

    def _judge_epoch(self, h: dict, logits: bytes, state: bytes | Path) -> tuple:
        if self.diverged:  # the driver already stopped believing in this trial; later epochs are ignored
            return _IGNORED, None
        if h["diverged"]:
            if logits or state:
                raise ProtocolError("a diverged epoch carries logits or state")
            return None, None
        acc, val_loss = protocol.score(logits, self.labels)
        self._check_shapes(protocol.check_safetensors(state, self.state_limit()))
        return acc, val_loss

    def _check_shapes(self, head: dict) -> None:
        """The state holds exactly the model's declared bytes, in the same tensors every epoch."""
        declared = self.info.get("state_bytes")
        if declared is not None and protocol.model_bytes(head) != declared:
            raise ProtocolError(f"state holds {protocol.model_bytes(head)} bytes of model tensors, the model "
                                f"declared {declared}")
        shapes = protocol.tensor_shapes(head)
        if self.shapes is not None and shapes != self.shapes:
            changed = sorted(set(shapes.items()) ^ set(self.shapes.items()))[:3]
            raise ProtocolError(f"state tensors changed between epochs: {changed}")
        self.shapes = shapes

    def _store(self, state: bytes | Path, acc: float | None) -> None:
        if self.trial.state_dir is None:
            return
        d = Path(self.trial.state_dir)
        if isinstance(state, Path):  # streamed here and checked: copied for the best, then moved into place
            if self.trial.config.get("save_best") and acc is not None and acc > self.best:
                shutil.copyfile(state, d / f".{BEST}.tmp")
                os.replace(d / f".{BEST}.tmp", d / BEST)
            os.replace(state, d / STATE)
        elif state:
            save_atomic(d / STATE, state)
            if self.trial.config.get("save_best") and acc is not None and acc > self.best:
                save_atomic(d / BEST, state)
        if acc is not None:
            self.best = max(self.best, acc)
        save_atomic(d / HISTORY, json.dumps({"config_hash": self.trial.config.get("config_hash"),
                                             "history": self.epochs}).encode())

    def finish(self, exit_info: dict | None, tail: str) -> TrialResult:
        res = self._verdict(exit_info, tail)
        budget = exit_info.get("budget") if exit_info else None
        return account(res, budget) if isinstance(budget, dict) else res

    def _verdict(self, exit_info: dict | None, tail: str) -> TrialResult:
        final = self.final
        if final is not None and final["type"] == "error":
            status = "out-of-memory" if final["oom"] else "error"
            return TrialResult(status, final["message"], self.info, self.epochs)
        if final is not None:
            if self.diverged:
                return TrialResult("diverged", self.diverged, self.info, self.epochs)
            if self.trial.task == "train":
                done = len(self.epochs) == int(self.trial.config.get("epochs", 0))
                if not done:
                    return TrialResult("error", f"protocol error: the trial ended after {len(self.epochs)} epochs",
                                       self.info, self.epochs)
                return TrialResult("trained", "", self.info, self.epochs)
            return TrialResult("ok", "", final["value"], self.epochs)
        if exit_info is None:
            return TrialResult("error", tail, self.info, self.epochs)
        sig = exit_info.get("signal")
        if sig == "SIGXCPU":
            return TrialResult("error", "CPU time limit (SIGXCPU)", self.info, self.epochs)
        if sig:
            return TrialResult("killed", f"killed by {sig}", self.info, self.epochs)
        return TrialResult("error", f"exited with code {exit_info.get('code')} without a result"
                           + (f": {tail}" if tail else ""), self.info, self.epochs)
