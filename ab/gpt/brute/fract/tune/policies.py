"""The sweep's `auto` policies, resolved by the driver (trusted code) before a trial starts.

- `--amp auto` / `--channels-last auto`: the autotuner's decision for the model's shape class (a short probe
  of trusted synthetic stacks on this device, cached per machine: `autotune.tune_variant`); classes that share
  a decision bucket (`synthetic.decision_bucket`) share one probe. Probing only runs as far as the sweep
  pays for it (`budget.py`: at most 5 % of its estimated wall time, each bucket's probe at most 5 % of its
  part); a bucket left unprobed gets the default variant and its reason says why. A model file without a
  generator spec has no shape class: AMP then falls back to the runner's static rule and channels_last stays
  off, and the record says so.
- `--workers auto`: the autotuner's CPU packing (workers x threads) for the shape class that carries most of
  the sweep's FLOPs, under the same budget (else one single-thread worker per core); on CUDA one worker.
- `--compile auto`: on only when the model's expected training time (manifest FLOPs over the tuned rate)
  pays back the measured compile cost many times (`compile.decide`); the compile probe itself runs only
  for trials expected to train at least `PROBE_MIN_TRAIN_S`, so short sweeps never pay for it.
- `--checkpointing auto` is decided inside the trial, where the model is (`runner.checkpointing_auto`); the
  driver passes the memory budget (`memory_budget`) and words the reason from the figures the trial reports.

Every decision comes with a record that the trial's stats keep (`nn_gpt_fractal.policies`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import budget
from . import compile as tcompile
from .autotune import Tuning, tune_packing, tune_variant, worker_rate
from .autotune import variant_name as variant_of
from .budget import ProbeBudget
from .cache import TuneCache
from .cost import TRAIN_FACTOR, drop_path_factor
from .device import cuda_bf16, free_bytes, usable_cores
from .probe import split_variant
from .rules import decide
from .synthetic import ShapeClass, decision_bucket, dominant_shape, shape_class_of_spec

PROBE_MIN_TRAIN_S = 600.0  # a compile probe costs about a compile (tens of seconds): only for long trials


@dataclass
class SweepPolicies:
    amp: bool | str  # True, False or "auto"
    channels_last: bool | str
    compile: str  # auto, on, off
    checkpointing: bool | str
    device: str  # cpu or cuda
    batch: int
    epochs: int
    train_images: int
    cache_path: Path | None = None
    say: Callable[[str], None] = print
    workers: int = 1  # trials at once on this machine (they share its memory)
    trials_per_gpu: int = 1  # CUDA: trials sharing one GPU (they share its memory)
    seeds: int = 1
    # (epochs, training images, seeds) of the sweep the probes must pay off on, when not this one (--plan's
    # calibration runs a few steps for a sweep it plans)
    budget_of: tuple[int, int, int] | None = None
    budget: ProbeBudget = field(default_factory=ProbeBudget.unlimited)  # set by `prepare`
    _tunings: dict[str, Tuning] = field(default_factory=dict)  # by decision bucket
    _shares: dict[str, float] = field(default_factory=dict)  # a bucket's part of the sweep's wall time

    @property
    def cache(self) -> TuneCache:
        return TuneCache(self.cache_path)

    def _tuning(self, shape: ShapeClass) -> Tuning:
        bucket = decision_bucket(shape)
        t = self._tunings.get(bucket.key)
        if t is None:
            t = self._tunings[bucket.key] = tune_variant(bucket, self.batch, self.device, self.cache,
                                                         spend=self.budget, share_s=self._shares.get(bucket.key))
            done = {"cache": " (cached)", "default": "", "probe": f" (probed in {t.probe_s:.1f} s)"}[t.source]
            self.say(f"tune {bucket.key}: {t.reason}{done}")
        return t

    def variant_for(self, shape: ShapeClass) -> str:
        """The variant (dtype, memory format) trials of this class run in: the tuner's when `auto`, else the
        fixed options' (AMP's dtype on CUDA: bf16 where supported, else fp16)."""
        if "auto" in (self.amp, self.channels_last):
            t = self._tuning(shape)
            amp, cl = (t.amp if self.amp == "auto" else bool(self.amp),
                       t.channels_last if self.channels_last == "auto" else bool(self.channels_last))
            dtype = split_variant(variant_of(t))[0] if amp and t.amp else None
        else:
            amp, cl, dtype = bool(self.amp), bool(self.channels_last), None
        if amp and dtype is None:
            dtype = "bf16" if self.device != "cuda" or cuda_bf16() else "fp16"
        return (dtype if amp else "fp32") + ("+cl" if cl else "")

    def parallel(self) -> int:
        """Trials the sweep could run at once, at most: every core (CPU) or GPU busy."""
        if self.device == "cuda":
            import torch  # heavy: only on a GPU

            return max(1, torch.cuda.device_count())
        return usable_cores()

    def estimate(self, specs_flops: list[tuple[dict | None, int | None]]) -> tuple[float, dict[str, float]]:
        """(the sweep's optimistic wall time, {decision bucket: its part of it}) in seconds (`budget.py`)."""
        epochs, images, seeds = self.budget_of or (self.epochs, self.train_images, self.seeds)
        parallel = self.parallel()
        trials: list[float] = []
        shares: dict[str, float] = {}
        for spec, flops in specs_flops:
            s = budget.trial_seconds(flops, spec, images, epochs, self.batch, self.device)
            trials += [s] * seeds
            if spec:
                key = decision_bucket(shape_class_of_spec(spec)).key
                shares[key] = shares.get(key, 0.0) + s * seeds / parallel
        return budget.sweep_seconds(trials, parallel), shares

    def prepare(self, specs_flops: list[tuple[dict | None, int | None]]) -> None:
        """Set the sweep's probe budget and decide (probe, read from the cache, or default) every decision
        bucket the sweep needs, the largest part first, before any trial starts: a probe in the middle of a
        sweep would stall handing out trials and compete with them for the device."""
        sweep_s, self._shares = self.estimate(specs_flops)
        self.budget = ProbeBudget.for_sweep(sweep_s)
        if "auto" in (self.amp, self.channels_last):
            self.say(f"tune: probing may take {self.budget.total_s:.1f} s ({budget.FRACTION:.0%} of the sweep's "
                     f"~{sweep_s:.0f} s estimated at optimistic rates)")
            for key in sorted(self._shares, key=lambda k: (-self._shares[k], k)):
                self._tuning(ShapeClass.parse(key))

    def packing(self, specs_flops: list[tuple[dict | None, int | None]], cores: int) -> tuple[int, int, dict]:
        """(workers, threads, record) for `--workers auto`, from the shape class with most of the FLOPs."""
        if self.device == "cuda":
            return 1, max(1, cores), {"workers": 1, "reason": "CUDA: one trial per GPU"}
        shape = dominant_shape(specs_flops)
        t = tune_packing(self._tuning(shape), decision_bucket(shape), self.cache, spend=self.budget)
        self.say(f"workers auto: {t.packing_reason} (class {t.shape}" + (", cached)" if t.cached else ")"))
        return t.workers or 1, t.threads or max(1, cores), {"workers": t.workers, "threads": t.threads,
                                                              "reason": t.packing_reason, "shape": t.shape}

    def for_trial(self, spec: dict | None, flops: int | None) -> tuple[dict, dict]:
        """(config overrides, record) for one model."""
        conf: dict = {}
        rec: dict = {}
        shape = shape_class_of_spec(spec) if spec else None
        t = self._tuning(shape) if shape and "auto" in (self.amp, self.channels_last) else None
        if self.amp == "auto":
            if t is not None:
                conf["amp"], rec["amp_reason"] = t.amp, f"auto ({shape.key}): {t.reason}"
            else:
                conf["amp"], rec["amp_reason"] = "auto", "auto without a generator spec: the runner's static width rule"
        else:
            conf["amp"], rec["amp_reason"] = bool(self.amp), f"--amp {'on' if self.amp else 'off'}"
        if self.channels_last == "auto":
            cl = bool(t.channels_last) if t is not None else False
            conf["channels_last"] = cl
            rec["channels_last_reason"] = (f"auto ({shape.key}): {t.reason}" if t is not None
                                           else "auto without a generator spec: off")
        else:
            conf["channels_last"] = bool(self.channels_last)
            rec["channels_last_reason"] = f"--channels-last {'on' if self.channels_last else 'off'}"
        if t is not None:
            rec["tuning"] = {k: v for k, v in t.as_record()["tuning"].items() if k not in ("packing", "probe_s")}
            rec["tuning"]["class"] = shape.key  # `shape` is the decision bucket probed for it
        conf["compile"], rec["compile_reason"] = self._compile(shape, flops, spec, t)
        if self.checkpointing == "auto":
            conf["memory_budget"] = self.memory_budget()
            if self.device == "cuda" and self.trials_per_gpu > 1:  # the GPU's free memory, shared
                conf["gpu_share"] = round(1 / self.trials_per_gpu, 4)
        return conf, rec

    def _compile(self, shape: ShapeClass | None, flops: int | None, spec: dict | None,
                 t: Tuning | None) -> tuple[bool, str]:
        if self.compile != "auto":
            return tcompile.decide(self.compile, None, None)
        if shape is None or flops is None:
            return False, "auto off: no generator spec or FLOPs to estimate the training time from"
        t = t or self._tuning(shape)
        work = TRAIN_FACTOR * flops * self.train_images * self.epochs * drop_path_factor(spec)
        expected = work / worker_rate(t, decision_bucket(shape))
        if expected < PROBE_MIN_TRAIN_S:
            return False, f"auto off: expected training ~{expected:.0f} s < {PROBE_MIN_TRAIN_S:.0f} s (no compile probe)"
        cost, _ = tcompile.measured_cost(shape, self.batch, self.device, variant_of(t), self.cache)
        return tcompile.decide("auto", expected, cost)

    def memory_budget(self) -> int | None:
        """Bytes one trial's activations may count on: CPU: available RAM shared by the workers; CUDA: None
        (the trial reads the free device memory itself)."""
        if self.device == "cuda":
            return None
        return free_bytes("cpu") // max(1, self.workers)


def checkpointing_record(mode: bool | str, info: dict) -> dict:
    """The checkpointing decision and its reason, from the figures the trial reported."""
    on = bool(info.get("checkpointing", False))
    if mode != "auto":
        return {"checkpointing": on, "checkpointing_reason": f"--checkpointing {'on' if mode else 'off'}"}
    saved, budget = info.get("saved_bytes"), info.get("memory_budget")
    if saved is None or not budget:
        return {"checkpointing": on, "checkpointing_reason": "auto: the model has no checkpointing switch"}
    _, reason = decide(int(saved), int(budget))
    return {"checkpointing": on, "checkpointing_reason": f"auto: {reason}",
            "saved_tensors_mb": round(saved / 2**20, 1), "memory_budget_mb": round(budget / 2**20, 1)}
