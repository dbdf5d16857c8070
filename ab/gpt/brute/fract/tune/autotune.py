"""`--amp auto`, `--channels-last auto` and `--workers auto`: decisions from probe figures, cached per machine.

The rules are pure functions of the measured figures, so the same cache always gives the same decisions
(and a trial's numbers stay reproducible for them):

- variant (dtype x memory format): the simplest variant within `MARGIN` of the fastest one measured, in the
  order fp32, fp32+cl, bf16, bf16+cl, fp16, fp16+cl (full precision and the default layout unless the
  others clearly pay);
- packing (CPU workers x threads): the fewest workers within `MARGIN` of the best total images/s.

`tune(shape, batch, device)` probes what the cache lacks, stores the figures, and returns a `Tuning`
whose `as_record()` a trial's stats keep (decision, reason, figures, cache key). A sweep passes a
`budget.ProbeBudget`: a probe runs only when the sweep is long enough to pay for it, and a class left
unprobed gets the default (`default_variant`, `default_packing`), the reason saying so (`source`: probe,
cache or default). A probe taken while other
work loads the machine is noisy (its rounds disagree: `probe.spread`): it is retried once at once, marked
`noisy` in the cache if still so (the decision's reason says it), and probed again on later runs until
`MAX_PROBES`, keeping the quietest.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from . import budget, probe
from .budget import ProbeBudget
from .cache import TuneCache
from .device import cache_key, cpu_has_bf16, cuda_bf16, device_model, device_type, torch_version, usable_cores
from .rules import CPU_AMP_MIN_CHANNELS
from .synthetic import ShapeClass

MARGIN = 0.05
QUIET = 0.8  # a probe is noisy when a variant's median round is under this share of its best round
RETRIES = 1  # one more probe at once when the first is noisy
MAX_PROBES = 3  # a noisy cached probe is measured again on later runs until this many probes in all
SIMPLICITY = ("fp32", "fp32+cl", "bf16", "bf16+cl", "fp16", "fp16+cl")
PROBE = {"rounds": 3, "min_s": 0.1}  # variant probe: interleaved rounds, seconds per variant and round
PACKING_PROBE = {"rounds": 3, "seconds": 0.3}  # packing probe: rounds, seconds per window


def simplest_within(measured: dict[str, float], order: list[str] | tuple[str, ...], margin: float = MARGIN) -> str:
    """The first name in `order` whose figure is within `margin` of the best figure."""
    if not measured:
        raise ValueError("no measured figures to decide from")
    best = max(measured.values())
    for name in order:
        if name in measured and measured[name] >= best / (1 + margin):
            return name
    raise ValueError(f"none of {sorted(measured)} is in the order {list(order)}")


def decide_variant(measured: dict[str, float], margin: float = MARGIN) -> dict:
    """{"variant", "amp", "amp_dtype", "channels_last", "reason"} from {variant: images/s}."""
    choice = simplest_within(measured, SIMPLICITY, margin)
    base = measured.get("fp32")
    fastest = max(measured, key=lambda v: (measured[v], v))
    figures = ", ".join(f"{v} {measured[v]:.0f}" for v in SIMPLICITY if v in measured)
    gain = f"{measured[choice] / base:.2f}x fp32" if base else "no fp32 figure"
    return _variant(choice, f"{choice}: {gain}; simplest within {margin:.0%} of the fastest ({fastest}); img/s {figures}")


def _variant(name: str, reason: str) -> dict:
    dtype, cl = probe.split_variant(name)
    return {"variant": name, "amp": dtype != "fp32", "amp_dtype": probe.AMP_DTYPE_NAMES.get(dtype),
            "channels_last": cl, "reason": reason}


def packing_name(workers: int, threads: int) -> str:
    return f"{workers}x{threads}"


def decide_packing(measured: dict[str, float], margin: float = MARGIN) -> dict:
    """{"workers", "threads", "reason"} from {"<workers>x<threads>": total images/s}."""
    order = sorted(measured, key=lambda k: (int(k.split("x")[0]), k))
    choice = simplest_within(measured, order, margin)
    w, t = (int(x) for x in choice.split("x"))
    figures = ", ".join(f"{k} {measured[k]:.0f}" for k in order)
    return {"workers": w, "threads": t,
            "reason": f"{w} workers x {t} threads: fewest workers within {margin:.0%} of the best total; img/s {figures}"}


@dataclass
class Tuning:
    shape: str
    device_model: str
    torch: str
    batch: int
    amp: bool
    amp_dtype: str | None
    channels_last: bool
    reason: str
    measured: dict
    workers: int | None = None
    threads: int | None = None
    packing_reason: str | None = None
    packing: dict = field(default_factory=dict)
    cached: bool = True
    probe_s: float = 0.0
    spread: float | None = None  # median/best round of the noisiest variant when probed (1.0: quiet machine)
    source: str = "probe"  # probe (measured now), cache, or default (not probed: the sweep is too short)

    def as_record(self) -> dict:
        """For a trial's stats: what was decided, why, and from which figures."""
        return {"tuning": asdict(self)}

    def trial_config(self) -> dict:
        """The runner's config keys this decides."""
        out = {"amp": self.amp, "channels_last": self.channels_last}
        if self.threads:
            out["threads"] = self.threads
        return out


def _rounds_entry(runs: dict[str, list[float]]) -> dict:
    return {"measured": {k: max(r) for k, r in runs.items()}, "rounds": runs, "spread": probe.spread(runs),
            "probed": time.strftime("%Y-%m-%dT%H:%M:%S")}


def noisy(entry: dict, quiet: float = QUIET) -> bool:
    """A probe whose rounds disagree (other load on the machine): its figures may rank variants wrongly."""
    return entry.get("spread") is not None and entry["spread"] < quiet


def quietest(measure, previous: dict | None, quiet: float = QUIET, retry=None) -> dict:
    """Probe (again), retrying once in this run while noisy (and `retry()`, when given, allows it); of this
    run's probes and the cached one, keep the quietest. `probes` counts them all and `spreads` lists their
    spreads, so a machine that stays busy stops being re-probed after `MAX_PROBES`."""
    spreads = list((previous or {}).get("spreads") or ([previous["spread"]] if previous and "spread" in previous
                                                         else []))
    best = previous
    for attempt in range(1 + RETRIES):
        if attempt and retry is not None and not retry():
            break
        entry = _rounds_entry(measure())
        spreads.append(entry["spread"])
        if best is None or entry["spread"] > best.get("spread", 0.0):
            best = entry
        if not noisy(entry, quiet):
            break
    return {**best, "spreads": spreads, "probes": len(spreads), "noisy": noisy(best, quiet)}


def _again(quiet: float):
    return lambda e: noisy(e, quiet) and int(e.get("probes") or 1) < MAX_PROBES


def _noise_note(entry: dict, quiet: float, refused: str = "") -> str:
    if not noisy(entry, quiet):
        return ""
    if refused:
        return (f"; noisy probe (spread {entry['spread']:.2f} after {entry.get('probes') or 1} probe(s): the machine "
                f"was busy; {refused.replace('not probed', 'not probed again')})")
    return (f"; noisy probe (spread {entry['spread']:.2f} after {entry.get('probes') or 1} probe(s): the machine "
            f"was busy" + ("; probed again on the next run)" if _again(quiet)(entry) else ")"))


def default_variant(shape: ShapeClass, device, native_bf16: bool | None = None) -> dict:
    """The variant of a class nobody probed (decide_variant's keys): on CUDA AMP (bf16, fp16 where the GPU
    lacks bf16) with channels_last; on a CPU with native bf16 (avx512_bf16 or AMX) bf16 with channels_last for
    classes whose narrowest block has `CPU_AMP_MIN_CHANNELS` channels or more (bench_policies on such a CPU:
    1.69-2.04x fp32 for 16-32-64 to 64-128-256), else fp32 in the default layout (what nn-dataset's trainer
    runs). `native_bf16`: whether this CPU has it (default: its flags)."""
    bf16 = cpu_has_bf16() if native_bf16 is None else native_bf16
    if device_type(device) == "cuda":
        name = ("bf16" if cuda_bf16() else "fp16") + "+cl"
        why = "AMP and channels_last on a GPU"
    elif bf16 and min(shape.widths) >= CPU_AMP_MIN_CHANNELS:
        name, why = "bf16+cl", f"a CPU with native bf16 and blocks of >= {CPU_AMP_MIN_CHANNELS} channels"
    else:
        name = "fp32"
        why = (f"blocks narrower than {CPU_AMP_MIN_CHANNELS} channels" if bf16
               else "a CPU without native bf16")
    return _variant(name, f"{name}: the unprobed default for {why}")


def default_packing(cores: int) -> dict:
    """The packing nobody probed (decide_packing's keys): a one-thread worker per core (narrow nets scale
    poorly over threads; the sweep gives the cores back to fewer trials)."""
    return {"workers": cores, "threads": 1,
            "reason": f"{cores} workers x 1 thread: the unprobed default (one single-thread trial per core)"}


def _step_s(shape: ShapeClass, batch: int, device) -> float:
    """One synthetic training step at the budget's optimistic rate (for a probe's cost estimate)."""
    return batch * probe.training_flops_per_image(shape) / budget.RATE[device_type(device)]


def _spending(measure, spent: ProbeBudget):
    def timed():
        t = time.perf_counter()
        try:
            return measure()
        finally:
            spent.spend(time.perf_counter() - t)
    return timed


def tune_variant(shape: ShapeClass, batch: int, device, cache: TuneCache | None = None,
                 probe_kw: dict | None = None, quiet: float = QUIET, spend: ProbeBudget | None = None,
                 share_s: float | None = None) -> Tuning:
    """The dtype and memory format for one shape class on this device: from the cache, else from a probe when
    `spend` (default: no limit) allows its estimated cost (at most `budget.FRACTION` of `share_s`, the wall
    time of the sweep's part it decides for), else the default (`default_variant`), the reason saying why.
    A noisy cached probe is measured again under the same rule, up to `MAX_PROBES` probes in all."""
    cache = cache or TuneCache()
    spend = spend or ProbeBudget.unlimited()
    kw = {**PROBE, **(probe_kw or {})}
    key = cache_key(device, shape.key, batch)
    started = time.perf_counter()
    again = _again(quiet)
    names = kw.get("names") or probe.variants(device)
    cost = budget.variant_probe_seconds(len(names), kw["rounds"], kw["min_s"], device_type(device),
                                        _step_s(shape, batch, device))
    hit = cache.get("variants", key)
    wanted = hit is None or again(hit)
    refused = "" if not wanted or spend.allows(cost, share_s) else spend.refusal(f"class {shape.key}", cost, share_s)
    if hit is None and refused:
        d = default_variant(shape, device)
        return Tuning(shape.key, device_model(device), torch_version(), batch, d["amp"], d["amp_dtype"],
                      d["channels_last"], f"{d['reason']}; {refused}", {}, cached=False, source="default")
    if wanted and not refused:
        def measure(previous: dict | None) -> dict:
            return quietest(_spending(lambda: probe.variant_rounds(shape, batch, device, **kw), spend), previous,
                            quiet, retry=lambda: spend.allows(cost, share_s))

        entry, cached = cache.get_or_measure("variants", key, measure, again)
    else:
        entry, cached = hit, True
    v = decide_variant(entry["measured"])
    tuning = Tuning(shape.key, device_model(device), torch_version(), batch, v["amp"], v["amp_dtype"],
                    v["channels_last"], v["reason"] + _noise_note(entry, quiet, refused), entry["measured"],
                    cached=cached, spread=entry.get("spread"), source="cache" if cached else "probe")
    tuning.probe_s = round(time.perf_counter() - started, 3)
    return tuning


def tune_packing(tuning: Tuning, shape: ShapeClass, cache: TuneCache | None = None, quiet: float = QUIET,
                 spend: ProbeBudget | None = None, probe_kw: dict | None = None) -> Tuning:
    """Adds the CPU packing (workers x threads) for the class in the tuning's variant: cached, else probed when
    `spend` allows its estimated cost, else the default (`default_packing`)."""
    cache = cache or TuneCache()
    spend = spend or ProbeBudget.unlimited()
    kw = {**PACKING_PROBE, **(probe_kw or {})}
    started = time.perf_counter()
    variant = variant_name(tuning)
    packs = probe.packings(usable_cores())
    key = f"{cache_key('cpu', shape.key, tuning.batch)} | {variant}"
    cost = budget.packing_probe_seconds(len(packs), kw["rounds"], kw["seconds"])
    again = _again(quiet)
    hit = cache.get("packing", key)
    wanted = hit is None or again(hit)
    refused = "" if not wanted or spend.allows(cost) else spend.refusal("the CPU packing", cost)
    if hit is None and refused:
        p = default_packing(usable_cores())
        tuning.workers, tuning.threads, tuning.packing_reason = p["workers"], p["threads"], f"{p['reason']}; {refused}"
        tuning.cached = False
        return tuning
    if wanted and not refused:
        def measure(previous: dict | None) -> dict:
            return quietest(_spending(lambda: probe.packing_rounds(shape, tuning.batch, variant, packs, **kw), spend),
                            previous, quiet, retry=lambda: spend.allows(cost))

        pentry, pcached = cache.get_or_measure("packing", key, measure, again)
    else:
        pentry, pcached = hit, True
    p = decide_packing(pentry["measured"])
    tuning.workers, tuning.threads = p["workers"], p["threads"]
    tuning.packing_reason = p["reason"] + _noise_note(pentry, quiet, refused)
    tuning.packing = pentry["measured"]
    tuning.cached = tuning.cached and pcached
    tuning.probe_s = round(tuning.probe_s + time.perf_counter() - started, 3)
    return tuning


def tune(shape: ShapeClass, batch: int, device, cache: TuneCache | None = None,
         packing: bool = True, probe_kw: dict | None = None, quiet: float = QUIET,
         spend: ProbeBudget | None = None) -> Tuning:
    """Decisions for one shape class on this device (`tune_variant`, and on a CPU `tune_packing`), probing
    what the cache lacks (or holds from a noisy probe) as far as `spend` allows (default: no limit)."""
    t = tune_variant(shape, batch, device, cache, probe_kw, quiet, spend)
    if packing and device_type(device) == "cpu":
        t = tune_packing(t, shape, cache, quiet, spend)
    return t


def matmul_peaks(device, cache: TuneCache | None = None) -> dict[str, float]:
    """{"fp32": FLOP/s, "bf16": FLOP/s (, "fp16")} of large matrix products here, cached per device."""
    cache = cache or TuneCache()
    names = ["fp32", "bf16"] + (["fp16"] if device_type(device) == "cuda" else [])
    entry, _ = cache.get_or_measure("matmul-peak", f"{device_model(device)} | torch {torch_version()}",
                                    lambda: {n: probe.matmul_peak(probe.dtype_of(n), device) for n in names})
    return entry


def worker_rate(tuning: Tuning, shape: ShapeClass, workers: int | None = None) -> float:
    """Achieved training FLOP/s of one worker for the class: from the packing figure of `workers` (default
    the chosen packing) when measured, else the single-process figure of the chosen variant shared out, else
    (nothing probed) the budget's optimistic rate."""
    workers = workers or tuning.workers or 1
    per_image = probe.training_flops_per_image(shape)
    hit = [v for k, v in tuning.packing.items() if int(k.split("x")[0]) == workers]
    if hit:
        return hit[0] / workers * per_image
    if not tuning.measured:  # not probed: the budget's optimistic rate (a short estimate, as for the budget)
        kind = "cuda" if tuning.device_model.startswith("cuda") else "cpu"
        return budget.RATE[kind] * (1 if kind == "cuda" else max(1, tuning.threads or usable_cores() // workers))
    return tuning.measured[variant_name(tuning)] / workers * per_image


def variant_name(tuning: Tuning) -> str:
    """'bf16+cl', 'fp32', ...: the tuning's variant."""
    dtype = {"bfloat16": "bf16", "float16": "fp16"}.get(tuning.amp_dtype or "", "fp32")
    return dtype + ("+cl" if tuning.channels_last else "")
