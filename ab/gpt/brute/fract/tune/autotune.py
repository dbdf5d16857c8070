"""`--amp auto`, `--channels-last auto` and `--workers auto`: decisions from probe figures, cached per machine.

The rules are pure functions of the measured figures, so the same cache always gives the same decisions
(and a trial's numbers stay reproducible for them):

- variant (dtype x memory format): the simplest variant within `MARGIN` of the fastest one measured, in the
  order fp32, fp32+cl, bf16, bf16+cl, fp16, fp16+cl (full precision and the default layout unless the
  others clearly pay);
- packing (CPU workers x threads): the fewest workers within `MARGIN` of the best total images/s.

`tune(shape, batch, device)` probes what the cache lacks, stores the figures, and returns a `Tuning`
whose `as_record()` a trial's stats keep (decision, reason, figures, cache key). A probe taken while other
work loads the machine is noisy (its rounds disagree: `probe.spread`): it is retried once at once, marked
`noisy` in the cache if still so (the decision's reason says it), and probed again on later runs until
`MAX_PROBES`, keeping the quietest.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from . import probe
from .cache import TuneCache
from .device import cache_key, device_model, usable_cores
from .synthetic import ShapeClass

MARGIN = 0.05
QUIET = 0.8  # a probe is noisy when a variant's median round is under this share of its best round
RETRIES = 1  # one more probe at once when the first is noisy
MAX_PROBES = 3  # a noisy cached probe is measured again on later runs until this many probes in all
SIMPLICITY = ("fp32", "fp32+cl", "bf16", "bf16+cl", "fp16", "fp16+cl")


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
    dtype, cl = probe.parse_variant(choice)
    base = measured.get("fp32")
    fastest = max(measured, key=lambda v: (measured[v], v))
    figures = ", ".join(f"{v} {measured[v]:.0f}" for v in SIMPLICITY if v in measured)
    gain = f"{measured[choice] / base:.2f}x fp32" if base else "no fp32 figure"
    reason = (f"{choice}: {gain}; simplest within {margin:.0%} of the fastest ({fastest}); img/s {figures}")
    return {"variant": choice, "amp": dtype != torch.float32,
            "amp_dtype": None if dtype == torch.float32 else str(dtype).replace("torch.", ""),
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


def quietest(measure, previous: dict | None, quiet: float = QUIET) -> dict:
    """Probe (again), retrying once in this run while noisy; of this run's probes and the cached one, keep
    the quietest. `probes` counts them all and `spreads` lists their spreads, so a machine that stays busy
    stops being re-probed after `MAX_PROBES`."""
    spreads = list((previous or {}).get("spreads") or ([previous["spread"]] if previous and "spread" in previous
                                                         else []))
    best = previous
    for _ in range(1 + RETRIES):
        entry = _rounds_entry(measure())
        spreads.append(entry["spread"])
        if best is None or entry["spread"] > best.get("spread", 0.0):
            best = entry
        if not noisy(entry, quiet):
            break
    return {**best, "spreads": spreads, "probes": len(spreads), "noisy": noisy(best, quiet)}


def _again(quiet: float):
    return lambda e: noisy(e, quiet) and int(e.get("probes") or 1) < MAX_PROBES


def _noise_note(entry: dict, quiet: float) -> str:
    if not noisy(entry, quiet):
        return ""
    return (f"; noisy probe (spread {entry['spread']:.2f} after {entry.get('probes') or 1} probe(s): the machine "
            f"was busy" + ("; probed again on the next run)" if _again(quiet)(entry) else ")"))


def tune(shape: ShapeClass, batch: int, device: torch.device | str, cache: TuneCache | None = None,
         packing: bool = True, probe_kw: dict | None = None, quiet: float = QUIET) -> Tuning:
    """Decisions for one shape class on this device, probing only what the cache lacks (or holds from a
    noisy probe, up to `MAX_PROBES` probes in all)."""
    device = torch.device(device)
    cache = cache or TuneCache()
    key = cache_key(device, shape.key, batch)
    started = time.perf_counter()
    again = _again(quiet)

    def measure_variants(previous: dict | None) -> dict:
        return quietest(lambda: probe.variant_rounds(shape, batch, device, **(probe_kw or {})), previous, quiet)

    entry, cached = cache.get_or_measure("variants", key, measure_variants, again)
    v = decide_variant(entry["measured"])
    tuning = Tuning(shape.key, device_model(device), torch.__version__, batch, v["amp"], v["amp_dtype"],
                    v["channels_last"], v["reason"] + _noise_note(entry, quiet), entry["measured"], cached=cached,
                    spread=entry.get("spread"))
    if packing and device.type == "cpu":
        def measure_packing(previous: dict | None) -> dict:
            return quietest(lambda: probe.packing_rounds(shape, batch, v["variant"], probe.packings(usable_cores())),
                            previous, quiet)

        pentry, pcached = cache.get_or_measure("packing", f"{key} | {v['variant']}", measure_packing, again)
        p = decide_packing(pentry["measured"])
        tuning.workers, tuning.threads = p["workers"], p["threads"]
        tuning.packing_reason = p["reason"] + _noise_note(pentry, quiet)
        tuning.packing = pentry["measured"]
        tuning.cached = cached and pcached
    tuning.probe_s = round(time.perf_counter() - started, 3)
    return tuning


def matmul_peaks(device: torch.device | str, cache: TuneCache | None = None) -> dict[str, float]:
    """{"fp32": FLOP/s, "bf16": FLOP/s (, "fp16")} of large matrix products here, cached per device."""
    device = torch.device(device)
    cache = cache or TuneCache()
    names = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    entry, _ = cache.get_or_measure("matmul-peak", f"{device_model(device)} | torch {torch.__version__}",
                                    lambda: {n: probe.matmul_peak(probe.DTYPES[n], device) for n in names})
    return entry


def worker_rate(tuning: Tuning, shape: ShapeClass, workers: int | None = None) -> float:
    """Achieved training FLOP/s of one worker for the class: from the packing figure of `workers` (default
    the chosen packing) when measured, else the single-process figure of the chosen variant shared out."""
    workers = workers or tuning.workers or 1
    per_image = probe.training_flops_per_image(shape)
    hit = [v for k, v in tuning.packing.items() if int(k.split("x")[0]) == workers]
    if hit:
        return hit[0] / workers * per_image
    variant = ("bf16" if tuning.amp_dtype == "bfloat16" else "fp16" if tuning.amp_dtype == "float16" else "fp32") \
        + ("+cl" if tuning.channels_last else "")
    return tuning.measured[variant] / workers * per_image
