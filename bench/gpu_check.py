"""One command that measures everything GPU-related on a CUDA machine, prints a table and writes JSON.

    python bench/gpu_check.py [--out gpu_check.json] [--quick] [--data-dir DIR] [--gpu N]
    make gpu-check                      # the same, with the project's venv

Needs a CUDA GPU, this repository, bubblewrap and what pyproject.toml lists (torch, nn-dataset, ...). Without
CUDA it fails at once (exit 1, the JSON says why): nothing is skipped. Every section runs even when an
earlier one failed; a failed section is a FAILED row and the exit code is 1. Budget: about 6 minutes on one
H100/H200-class GPU (`--quick`: about 3), enforced per section (`--budget-s`, default 450 s in all).

Sections, all on one GPU (`--gpu`, default 0), on the CIFAR-10 data of `--data-dir`:
 1. GPU: name, memory, torch/CUDA versions; the measured matmul peak in fp32, bf16 and fp16 (8192^3 products):
    every model FLOP utilisation (MFU) below divides by the peak of the dtype the trial used.
 2. jail: a jail (bubblewrap) bound to this GPU alone starts; inside, CUDA sees exactly one device, /dev holds
    only this GPU's node, and a tiny model trains an epoch on cuda.
 3. models: a paper-size FractalNet (N5 C4, 64-128-256-512-512, conv3x3-bn-relu, mean join) and a narrow one
    (N3 C3, 16-32-64) trained by `python -m ab.gpt.NNEval --device cuda:N` (whole process, every default,
    2 epochs): training images/s of the second epoch, peak GPU memory, MFU, and the time one epoch of full
    CIFAR-10 (50,000 images) would take at that rate (goal for the paper-size model: <= 10 s). The paper's
    batch 16, and (not with --quick) batch 128.
 4. nn-dataset: its own trainer, `python -m ab.nn.train` on the same paper-size file, same epochs, batch and GPU,
    whole process against whole process (NNEval's second run, with a warm tuning cache): the ratio (goal >= 2x).
 5. packing: 1, 2, 4 and 8 narrow trials at once on the GPU, each in its own jail, 3 epochs: aggregate training
    images/s (the sum of each trial's median rate over epochs 2-3), the gain over one trial, and what `--trials-per-gpu auto` decides from
    its own short probe (goal: aggregate at the chosen K >= 3x one trial).
 6. boundary: `boundary map` at 1024x1024 (--quick: 256x256) on the GPU: time and GFLOP/s (matmul FLOPs of
    every network for every step over the wall time: an upper bound, diverged networks stop early).
 7. plan: `NNEval --plan` of the whole default space (2,016 models; --quick: 192) calibrated on this GPU, at the
    paper protocol (5 epochs of full CIFAR-10, batch 16): GPU-hours (goal < 24; the paper: ~500 for 1,200).

Data (no network is needed): `--data-dir` or $NN_GPT_FRACTAL_CIFAR, else `.gpu/cifar-10-batches-py` (what
`bench/gpu_carry.sh` puts there), else `../shared/data/cifar-10-subset`, else `<LEMUR root>/data`.

On a machine lent by this workplace's `device` tool (no network, only the repository travels): first run
`bash bench/gpu_carry.sh` here; it fills the ignored folder `.gpu/` with the CIFAR-10 subset, the wheels that
the GPU image lacks (nn-dataset, optuna, radon, ... for python 3.12, x86-64) and a bubblewrap binary. Then one
call, with carry [".gpu"]:

    bash bench/gpu_run.sh --out $OUT/gpu_check.json

which installs those wheels into the image's python3 (no dependencies resolved, nothing fetched), puts the
carried bwrap on PATH when the image has none, and runs this script (a timeout of 600 s leaves it room).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "bench", REPO / "tests"):
    sys.path.insert(0, str(_p))

from ab.gpt.brute.fract.boundary import engine  # noqa: E402
from ab.gpt.brute.fract.generation.manifest import Manifest  # noqa: E402
from ab.gpt.brute.fract.sweep import plan as tplan  # noqa: E402
from ab.gpt.brute.fract.sweep.evaluate import SweepConfig, trial_config  # noqa: E402
from ab.gpt.brute.fract.trial import Trial, TrialLimits, data  # noqa: E402
from ab.gpt.brute.fract.trial.executors import LocalExecutor  # noqa: E402
from ab.gpt.brute.fract.trial.gpus import slot_gpus, visible_gpus  # noqa: E402
from ab.gpt.brute.fract.trial.jail import JailConfig, require_bwrap  # noqa: E402
from ab.gpt.brute.fract.trial.protocol import TRAIN_HANDLER  # noqa: E402
from ab.gpt.brute.fract.trial.session import Jail  # noqa: E402
from ab.gpt.brute.fract.tune import gpu_packing, probe  # noqa: E402
from ab.gpt.brute.fract.tune.cache import TuneCache  # noqa: E402
from ab.gpt.brute.fract.tune.synthetic import shape_class_of_spec  # noqa: E402
from ab.gpt.brute.fract.util.atomic import write_text  # noqa: E402
from bench_train import figures, nn_dataset, ours, utilisation  # noqa: E402
from lemur.lemurkit import checkout  # noqa: E402

PAPER = ["--depth", "5", "--columns", "4", "--channels", "64,128,256,512,512"]
NARROW = ["--depth", "3", "--columns", "3", "--channels", "16,32,64"]
FULL_CIFAR = 50_000
PACKING = (1, 2, 4, 8)
SECTIONS = ("gpu", "jail", "models", "nn-dataset", "packing", "boundary", "plan")


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


class Report:
    """Sections with their figures (name, value, unit, note) and the goals checked."""

    def __init__(self, out: Path, only: set[str] | None, head: dict) -> None:
        self.sections: dict[str, dict] = {}
        self.goals: list[dict] = []
        self.out, self.only, self.head = out, only, head
        self.started = time.perf_counter()

    def save(self, done: bool = False) -> bool:
        """Write the JSON (after every section: a run cut short keeps what it measured); True if all ran."""
        ok = all(s["ok"] for s in self.sections.values())
        body = {"ok": ok and done, "finished": done, "seconds": round(time.perf_counter() - self.started, 1),
                **self.head, "sections": self.sections, "goals": self.goals}
        write_text(self.out, json.dumps(body, indent=2, default=str))
        return ok

    def run(self, name: str, fn, budget: Budget, need_s: float) -> None:
        if self.only is not None and name not in self.only:
            return
        sec = self.sections[name] = {"ok": False, "figures": [], "seconds": 0.0}
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            if budget.left() < need_s:
                raise TimeoutError(f"{budget.left():.0f} s of the budget left, the section needs ~{need_s:.0f} s")
            fn(sec)
            sec["ok"] = True
        except Exception as e:  # noqa: BLE001 - every section runs; a failure is a loud row
            sec["error"] = f"{type(e).__name__}: {e}".strip()[:2000]
            traceback.print_exc()
        sec["seconds"] = round(time.perf_counter() - started, 1)
        print(f"   ({sec['seconds']:.0f} s; {time.perf_counter() - self.started:.0f} s since start)", flush=True)
        self.save()

    def goal(self, what: str, value: float | None, target: float, above: bool, unit: str = "") -> None:
        met = value is not None and (value >= target if above else value <= target)
        self.goals.append({"goal": what, "value": value, "target": target, "unit": unit,
                           "direction": ">=" if above else "<=", "met": met})

    def print_table(self) -> None:
        rows = []
        for name, sec in self.sections.items():
            if not sec["ok"]:
                rows.append([name, "FAILED", sec.get("error", "")[:160], ""])
            for f in sec["figures"]:
                rows.append([name, f["name"], fmt(f["value"]) + (f" {f['unit']}" if f["unit"] else ""), f["note"]])
        goals = [[g["goal"], f"{fmt(g['value'])} {g['unit']}".strip(), f"{g['direction']} {fmt(g['target'])}",
                  "met" if g["met"] else "NOT met"] for g in self.goals]
        try:
            from rich.console import Console
            from rich.table import Table

            console = Console(width=170)
            for title, head, body in (("GPU check", ["section", "figure", "value", "note"], rows),
                                      ("goals", ["goal", "value", "target", "verdict"], goals)):
                table = Table(title=title)
                for h in head:
                    table.add_column(h, overflow="fold")
                for r in body:
                    table.add_row(*r)
                console.print(table)
        except ImportError:
            for r in rows + [[""] * 4] + goals:
                print("  ".join(str(c) for c in r))


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def figure(sec: dict, name: str, value, unit: str = "", note: str = "") -> None:
    sec["figures"].append({"name": name, "value": value, "unit": unit, "note": note})
    print(f"   {name}: {fmt(value)} {unit}  {note}".rstrip(), flush=True)


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def find_data(arg: str | None) -> Path:
    for cand in (arg, os.environ.get(data.DATA_ENV), REPO / ".gpu", REPO.parent / "shared/data/cifar-10-subset"):
        if cand and Path(cand).exists():
            return data.locate(cand)
    return data.locate(None, download=False)


def run_cmd(args: list[str], cwd: Path, timeout: float) -> None:
    """Run a command of this repository; on failure raise with the end of its output."""
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} exited {proc.returncode}: {(proc.stdout + proc.stderr)[-1500:]}")


def gen(space: list[str], out: Path, *extra: str, single: bool = True, timeout: float = 600) -> list[dict]:
    """Generate models with the real CLI (validated in jails); their manifest records. `single`: one model of
    `space` with conv3x3-bn-relu ops and mean joins."""

    base = ["--conv", "conv3x3", "--norm", "bn", "--act", "relu", "--order", "conv-norm-act", "--dropout", "0",
            "--join", "mean", "--limit", "1"] if single else []
    cores = str(min(16, os.cpu_count() or 1))
    run_cmd(["-m", "ab.gpt.brute.fract.AlterNNFN", *space, *base, *extra, "--workers", cores, "-q", "--models", str(out)],
            out.parent, timeout)
    return Manifest.load(out).valid()


# -- sections ----------------------------------------------------------------------------------------------
def s_gpu(sec, ctx) -> None:
    dev = ctx["device"]
    p = torch.cuda.get_device_properties(dev)
    figure(sec, "GPU", p.name, note=f"{p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, "
                                    f"torch {torch.__version__}, CUDA {torch.version.cuda}")
    figure(sec, "visible GPUs", torch.cuda.device_count())
    nodes = sorted(n for n in os.listdir("/dev") if n.startswith("nvidia"))
    modes = " ".join(f"{n}:{oct(os.stat(f'/dev/{n}').st_mode & 0o777)[2:]}" for n in nodes)
    figure(sec, "device nodes", len(nodes), note=modes[:160] + f"; {ctx['gpu'].label} is /dev/nvidia{ctx['gpu'].minor}"
           if ctx["gpu"].minor is not None else modes[:160] + "; minor unknown: jails bind every GPU node")
    figure(sec, "LD_LIBRARY_PATH", os.environ.get("LD_LIBRARY_PATH") or "-", note="passed into CUDA jails")
    peaks = {}
    for name in ("fp32", "bf16", "fp16"):
        peaks[name] = probe.matmul_peak(probe.dtype_of(name), dev, n=8192, min_s=1.0)
        figure(sec, f"matmul peak {name}", peaks[name] / 1e12, "TFLOP/s", "8192^3, best 0.1 s window")
    ctx["peaks"] = peaks


PROBE_MODEL = '''import os, torch, torch.nn as nn
def supported_hyperparameters():
    return {"lr", "momentum"}
class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        nodes = sorted(n for n in os.listdir("/dev") if n.startswith("nvidia"))
        raise RuntimeError("probe " + repr({"devices": torch.cuda.device_count(), "nodes": nodes,
                           "visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "name": torch.cuda.get_device_name(0)}))
'''


def s_jail(sec, ctx) -> None:
    gpu = ctx["gpu"]
    cfg = SweepConfig(models=ctx["tmp"], out=ctx["tmp"], epochs=1, train_limit=512, test_limit=256, amp=True,
                      checkpointing=False, channels_last=False, compile="off")
    conf = trial_config(cfg, 0, data.lemur_norm(), 2, "cuda")
    t = time.perf_counter()
    jail = Jail(JailConfig(scratch=ctx["tmp"] / "jail-check", data=ctx["jail_data"], threads=2,
                           gpu=gpu).serving(TRAIN_HANDLER))
    figure(sec, "jail start", time.perf_counter() - t, "s", f"bound to {gpu.label}, node "
                                                           f"{'/dev/nvidia%d' % gpu.minor if gpu.minor is not None else 'unknown: all nodes'}")
    try:
        res = jail.run(Trial("train", PROBE_MODEL, conf, 120, labels=ctx["data"]["test_y"]), TrialLimits(memory_gb=None))
        seen = ast.literal_eval(res.message.split("probe ", 1)[1]) if "probe " in res.message else None
        if seen is None:
            raise RuntimeError(f"the probe model did not report: {res.status}: {res.message}")
        figure(sec, "CUDA devices inside", seen["devices"], note=f"{seen['name']}; CUDA_VISIBLE_DEVICES={seen['visible']}")
        figure(sec, "nvidia nodes inside", len(seen["nodes"]), note=" ".join(seen["nodes"]))
        if seen["devices"] != 1:
            raise RuntimeError(f"the jail sees {seen['devices']} GPUs, not 1")
        t = time.perf_counter()
        tiny = (ctx["narrow"]["path"]).read_text()
        res = jail.run(Trial("train", tiny, conf, 300, labels=ctx["data"]["test_y"]), TrialLimits(memory_gb=None))
        if res.status != "trained" or res.value.get("device") != "cuda":
            raise RuntimeError(f"a narrow model did not train on cuda in the jail: {res.status}: {res.message}")
        figure(sec, "first trial on cuda", time.perf_counter() - t, "s", "512 images, 1 epoch, CUDA init included")
    finally:
        jail.close()


def limits(ctx) -> tuple[str, ...]:
    """NNEval options that shorten a rehearsal run (none in a real check)."""
    n = ctx.get("train_limit")
    return ("--train-limit", str(n), "--test-limit", str(n)) if n else ()


def nneval_model(sec, ctx, key: str, batch: int, epochs: int = 2, k: int = 0) -> tuple[float, dict]:
    rec = ctx[key]
    (ctx["tmp"] / f"{key}-b{batch}").mkdir(exist_ok=True)
    wall, stat = ours(rec["path"], ctx["batches"], ctx["tmp"] / f"{key}-b{batch}", k, epochs=epochs, batch=batch,
                      extra=("--device", ctx["device"], "--tune-cache", str(ctx["tune_cache"]), *limits(ctx)))
    o = figures(stat)
    achieved, peak, dtype = utilisation(stat, rec["flops"], rec["spec"], "cuda", ctx["peaks"])
    note = f"batch {batch}, epoch {epochs}, {dtype}, channels_last={o['channels_last']}, ckpt={o['checkpointing']}"
    figure(sec, f"{key} b{batch} train images/s", o["images_per_s"], "img/s", note)
    figure(sec, f"{key} b{batch} peak memory", o["peak_memory_mb"], "MB")
    figure(sec, f"{key} b{batch} MFU", 100 * achieved / peak, "%", f"{achieved / 1e12:.1f} TFLOP/s of {dtype} peak")
    figure(sec, f"{key} b{batch} full CIFAR-10 epoch", FULL_CIFAR / o["images_per_s"], "s", "50,000 images at this rate")
    figure(sec, f"{key} b{batch} NNEval process", wall, "s", f"{epochs} epochs of {ctx['n_train']} images, whole process")
    return wall, stat


def s_models(sec, ctx) -> None:
    walls = {}
    for key in ("paper", "narrow"):
        walls[key], stat = nneval_model(sec, ctx, key, 16)
        if key == "paper":
            ctx["paper_b16"] = figures(stat)["images_per_s"]
    if not ctx["quick"]:
        _, stat = nneval_model(sec, ctx, "paper", 128, k=1)
        ctx["paper_b128"] = figures(stat)["images_per_s"]


def s_nn_dataset(sec, ctx) -> None:
    rec = ctx["paper"]
    opts = ("--device", ctx["device"], "--tune-cache", str(ctx["tune_cache"]), *limits(ctx))
    root = ctx["tmp"] / "nn-ratio"
    root.mkdir()
    wall_ours, _ = ours(rec["path"], ctx["batches"], root, 0, epochs=2, batch=16, extra=opts)  # registers: the DB
    lemur = checkout(root / "nn-dataset", ctx["batches"])
    (lemur / "db").mkdir(exist_ok=True)
    shutil.copy(root / "ours0" / "ab.nn.db", lemur / "db" / "ab.nn.db")
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ctx["gpu"].visible_devices  # nn-dataset takes cuda:0: the same GPU
    try:
        wall_nn = nn_dataset(rec["path"].stem, lemur, epochs=2, batch=16)
    finally:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES")
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before
    figure(sec, "nn-dataset python -m ab.nn.train", wall_nn, "s", "paper-size, 2 epochs, batch 16, whole process")
    figure(sec, "NNEval (warm tuning cache)", wall_ours, "s", "same file, epochs, batch, GPU")
    figure(sec, "ratio nn-dataset / NNEval", wall_nn / wall_ours, "x")
    ctx["nn_ratio"] = wall_nn / wall_ours


def s_packing(sec, ctx) -> None:
    rec = ctx["narrow"]
    cfg = SweepConfig(models=ctx["tmp"], out=ctx["tmp"], epochs=3, amp=True, checkpointing=False, channels_last=False,
                      compile="off", train_limit=ctx.get("train_limit") or (2048 if ctx["quick"] else None))
    cores = os.cpu_count() or 1
    code = rec["path"].read_text()
    agg = {}
    with LocalExecutor(0, TrialLimits(memory_gb=None), data=ctx["jail_data"], threads=max(1, cores // max(PACKING)),
                       gpus=slot_gpus([ctx["gpu"]], max(PACKING))) as ex:
        for k in PACKING:
            conf = {**trial_config(cfg, 0, data.lemur_norm(), max(1, cores // k), ctx["trial_device"]), "gpu_share": 1 / k}
            futs = [ex.submit(Trial("train", code, conf, 600, labels=ctx["data"]["test_y"])) for _ in range(k)]
            results = [f.result() for f in futs]
            bad = [r for r in results if r.status != "trained"]
            if bad:
                raise RuntimeError(f"{len(bad)} of {k} packed trials failed: {bad[0].status}: {bad[0].message}")
            # each trial's steady rate: the median epoch after the first (jail and CUDA start-up overlap there)
            agg[k] = sum(statistics.median(e["images_per_s"] for e in r.epochs[1:]) for r in results)
            peak = max(e["peak_memory_mb"] or 0 for r in results for e in r.epochs)
            figure(sec, f"{k} narrow trial(s) at once", agg[k], "img/s",
                   f"aggregate, {agg[k] / agg[1]:.2f}x one trial; peak {peak:.0f} MB per trial")
    shape = shape_class_of_spec(rec["spec"])

    variant = "bf16" if torch.cuda.is_bf16_supported() else "fp16"  # what an AMP trial runs in on this GPU
    entry, _ = gpu_packing.measure(shape, 16, variant, ctx["device"], TuneCache(ctx["tune_cache"]), counts=PACKING)
    d = gpu_packing.decide(gpu_packing.figures(entry), int(entry["peak_bytes"]), ctx["gpu"].memory)
    k = d["trials_per_gpu"]
    figure(sec, "--trials-per-gpu auto decides", k, note=d["reason"][:150])
    figure(sec, "packing probe time", entry.get("probe_s"), "s", f"synthetic class {shape.key}")
    ctx["pack_gain"] = agg[k] / agg[1] if k in agg else None


def s_boundary(sec, ctx) -> None:
    res = ctx.get("map_res") or (256 if ctx["quick"] else 1024)
    width, steps = 16, 500
    samples = width * width + width  # data ratio 1: samples = parameters
    out = ctx["tmp"] / "map"
    t = time.perf_counter()
    run_cmd(["-m", "ab.gpt.brute.fract.boundary", "map", "--res", str(res), "--device", ctx["device"], "--tile", "256",
             "--chunk", "16384", "--maps", str(out)], ctx["tmp"], max(30, ctx["budget"].left() - 60))
    wall = time.perf_counter() - t
    flops = res * res * steps * engine.matmul_flops_per_step(width, samples)
    figure(sec, f"boundary map {res}x{res}", wall, "s", f"width {width}, {steps} steps, whole command")
    figure(sec, "boundary GFLOP/s (upper bound)", flops / wall / 1e9, "GFLOP/s",
           f"{100 * flops / wall / ctx['peaks']['fp32']:.1f}% of the fp32 matmul peak")


def s_plan(sec, ctx) -> None:
    models = ctx["tmp"] / "space"
    extra = ("--generator", "stratified", "--limit", "192") if ctx["quick"] else ()
    t = time.perf_counter()
    recs = gen(ctx.get("plan_space", []), models, *extra, single=False, timeout=max(60, ctx["budget"].left() - 120))
    figure(sec, "default space generated", len(recs), "models", f"{time.perf_counter() - t:.0f} s, validated in jails")
    t = time.perf_counter()
    p = tplan.plan_sweep(models, ctx["tmp"] / "plan-out", epochs=5, batch=16, data_dir=str(ctx["batches"]),
                         device=ctx["device"], workers=1, checkpointing="auto", cache_path=ctx["tune_cache"],
                         echo=lambda m: print("   plan:", m, flush=True))
    figure(sec, "plan calibration", time.perf_counter() - t, "s", f"{len(p.rates)} calibration groups")
    # the paper protocol: the same rates, for 5 epochs of full CIFAR-10 (the subset only calibrates)
    entries = tplan.entries_from_manifest(models, [r.name for r in p.rows])
    full = tplan.make_plan(entries, 5, 1, tplan.CIFAR_TRAIN, tplan.CIFAR_TEST, lambda e: p.rates.get(e.group),
                           p.workers, p.overhead_s)
    full.gpus = p.gpus
    figure(sec, "plan: trials at once", full.workers, note=f"on {full.gpus} GPU(s)")
    figure(sec, "plan: compute", full.compute_s / 3600, "h", "sum of the trials' estimates")
    figure(sec, "plan: GPU-hours", full.gpu_hours, "GPU-h",
           f"{len(entries)} models x 5 epochs of full CIFAR-10" + (" (--quick: a stratified 192)" if ctx["quick"] else "")
           + (f"; {len(full.unknown)} without an estimate" if full.unknown else ""))
    if full.gpu_hours is None:
        raise RuntimeError(f"the plan counted no GPU for --device {ctx['device']}")
    ctx["gpu_hours"] = full.gpu_hours * (2016 / max(1, len(entries)) if ctx["quick"] else 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="JSON file of every figure [gpu_check.json]")
    ap.add_argument("--quick", action="store_true", help="smaller runs (about 3 minutes): no batch 128, a 256x256 "
                    "map, packed trials on 2,048 images, the plan of a stratified 192 models scaled to the space")
    ap.add_argument("--data-dir", help="cifar-10-batches-py folder [$NN_GPT_FRACTAL_CIFAR, .gpu/, ../shared subset]")
    ap.add_argument("--gpu", type=int, default=0, help="the GPU to measure (driver numbering) [0]")
    ap.add_argument("--budget-s", type=float, default=450, help="time for all sections; one that cannot finish "
                    "in what is left fails [450]")
    ap.add_argument("--only", help=f"comma-separated sections to run, of {','.join(SECTIONS)} [all]")
    args = ap.parse_args()
    started = time.perf_counter()
    only = set(args.only.split(",")) if args.only else None
    if only and not only <= set(SECTIONS):
        ap.error(f"--only {args.only}: unknown section(s) {', '.join(sorted(only - set(SECTIONS)))}; "
                 f"use some of {','.join(SECTIONS)}")

    report = Report(args.out, only, {"quick": args.quick})
    if not torch.cuda.is_available():
        msg = "torch sees no CUDA device: this check measures a GPU and runs only on one (nothing was skipped)"
        print(f"gpu_check: FAILED: {msg}", file=sys.stderr)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"ok": False, "error": msg}, indent=2))
        return 1

    require_bwrap()
    gpus = {g.index: g for g in visible_gpus()}
    if args.gpu not in gpus:
        print(f"gpu_check: FAILED: no GPU {args.gpu} (this machine shows {len(gpus)})", file=sys.stderr)
        return 2
    budget = Budget(args.budget_s)
    report.head["gpu"] = gpus[args.gpu].name
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        tmp = Path(tmp)
        (tmp / "ab").mkdir()
        (tmp / "README.md").write_text("gpu check LEMUR root\n")
        batches = find_data(args.data_dir)
        prepared = data.prepare(batches, tmp / "cache").to_dict()
        ctx = {"tmp": tmp, "quick": args.quick, "gpu": gpus[args.gpu], "device": f"cuda:{args.gpu}", "trial_device": "cuda",
               "batches": batches, "data": prepared, "budget": budget, "tune_cache": tmp / "tune.json",
               "jail_data": {k: prepared[k] for k in ("train_x", "train_y", "test_x")},
               "n_train": tplan.count_images(batches)[0]}
        os.environ["NN_GPT_FRACTAL_TUNE_CACHE"] = str(ctx["tune_cache"])
        print(f"data {batches} ({ctx['n_train']} training images); budget {args.budget_s:.0f} s", flush=True)
        for key, space in (("paper", PAPER), ("narrow", NARROW)):
            (rec,) = gen(space, tmp / key)
            ctx[key] = {**rec, "path": tmp / key / rec["file"]}
        report.run("gpu", lambda s: s_gpu(s, ctx), budget, 5)
        ctx.setdefault("peaks", {"fp32": float("nan"), "bf16": float("nan"), "fp16": float("nan")})
        report.run("jail", lambda s: s_jail(s, ctx), budget, 10)
        report.run("models", lambda s: s_models(s, ctx), budget, 40)
        report.run("nn-dataset", lambda s: s_nn_dataset(s, ctx), budget, 40)
        report.run("packing", lambda s: s_packing(s, ctx), budget, 40)
        report.run("boundary", lambda s: s_boundary(s, ctx), budget, 20)
        report.run("plan", lambda s: s_plan(s, ctx), budget, 60)
        report.goal("paper-size: one epoch of full CIFAR-10 at batch 16", FULL_CIFAR / ctx["paper_b16"]
                    if ctx.get("paper_b16") else None, 10, above=False, unit="s")
        if ctx.get("paper_b128"):
            report.goal("paper-size: one epoch of full CIFAR-10 at batch 128", FULL_CIFAR / ctx["paper_b128"], 10,
                        above=False, unit="s")
        report.goal("paper-size: nn-dataset's trainer / NNEval (whole process)", ctx.get("nn_ratio"), 2, above=True,
                    unit="x")
        report.goal("narrow packed at the chosen K / one trial", ctx.get("pack_gain"), 3, above=True, unit="x")
        report.goal("plan of the default space, paper protocol", ctx.get("gpu_hours"), 24, above=False, unit="GPU-h")
    report.print_table()
    ok = report.save(done=True)
    total = time.perf_counter() - started
    print(f"gpu_check: {'all sections ran' if ok else 'FAILED sections: ' + ', '.join(n for n, s in report.sections.items() if not s['ok'])}"
          f"; {total:.0f} s; JSON: {args.out}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
