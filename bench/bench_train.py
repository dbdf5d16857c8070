"""Training throughput and checkpointing memory, side by side in one run.

    .venv/bin/python bench/bench_train.py [--images 1536] [--threads 2] [--repeats 2]

A. Throughput, same model file, batch 16, same images (the first --images of the CIFAR-10 training set):
   (a) nn-dataset's path: its CIFAR-10 loader with its `norm_flip` transform (PIL per sample), its
       `train_loader_f` DataLoader (shuffle, its default 2 loader workers), the model's own `learn()`, fp32
       and no checkpointing (nn-dataset's `Train` cannot be built here: the wheel ships no `acc` metric);
       timed from the first batch to the end of `learn()` (loader start-up excluded: favours (a)).
   (b) our runner with its defaults (`trial/runner.py` in a bubblewrap jail, as NNEval runs it: uint8
       tensors, flip + normalisation per batch as tensor ops, bf16 autocast, gradient checkpointing);
       its images/s covers the same `learn()` epoch.
   Each runs in its own process with the same torch thread count; they alternate --repeats times and the
   median is reported.
B. Checkpointing, on a large variant (N=3, C=4, 64-128-256 channels, bf16 autocast as in the runner):
   step time (full `learn()` steps) and peak activation memory (all columns, drop-path off: the largest
   step) with and without it. Each case runs in a
   fresh process: with the gradients already allocated, the peak resident memory (VmHWM) over 3 forward +
   backward passes minus the resident memory just before them is the activation peak (saved activations,
   recomputed ones, autocast weight copies and backward temporaries). glibc's mmap threshold is fixed at
   64 KiB there, so freed tensors leave resident memory at once and RSS follows live memory.

Generated model code runs in child processes only (it is statically checked first); (a) is not jailed
(nn-dataset's path, measured as it is).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MID = ["--depth", "3", "--columns", "3", "--channels", "32,64,128"]
LARGE = ["--depth", "3", "--columns", "4", "--channels", "64,128,256"]
LAYERS = ["--conv", "conv3x3", "--norm", "bn", "--act", "relu", "--order", "conv-norm-act", "--dropout", "0",
          "--join", "mean", "--limit", "1", "--workers", "1", "-q"]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def generate(space: list[str], out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "ab.gpt.brute.fract.AlterNNFN", *space, *LAYERS, "--out", str(out)],
                   check=True, env=env(), cwd=out.parent)
    (path,) = sorted(out.glob("*.py"))
    from ab.gpt.brute.fract.space import codecheck

    code = path.read_text()
    assert not codecheck.check_source(code) and not codecheck.check_contract(code)
    return path


def child(mode: str, **kw) -> dict:
    # a fixed mmap threshold makes glibc return freed large blocks at once, so resident memory follows the
    # live tensors (by default it keeps them, and RSS overstates what checkpointing leaves alive)
    extra = {"MALLOC_MMAP_THRESHOLD_": "65536"} if mode == "ckpt" else {}
    out = subprocess.run([sys.executable, __file__, "--child", mode, json.dumps(kw)], env={**env(), **extra}, text=True,
                         capture_output=True, cwd=kw.get("cwd"))
    if out.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- children --------------------------------------------------------------------------------------------
def load_model(path: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def child_lemur(path: str, data_dir: str, images: int, threads: int, **_) -> dict:
    """(a): nn-dataset's loader, transform and DataLoader feeding the model's learn(), fp32."""
    import importlib

    import torch
    import torchvision

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    loader_mod = importlib.import_module("ab.nn.loader.cifar-10")
    transform_fn = importlib.import_module("ab.nn.transform.norm_flip").transform
    from ab.nn.util.Const import default_num_workers
    from ab.nn.util.Util import train_loader_f

    # a shortened subset fails torchvision's md5 check: read the files in place without it
    torchvision.datasets.CIFAR10._check_integrity = lambda self: True
    torchvision.datasets.CIFAR10._load_meta = lambda self: None
    loader_mod.data_dir = Path(data_dir).parent
    _, _, train_set, _ = loader_mod.loader(transform_fn, "img-classification")
    subset = torch.utils.data.Subset(train_set, range(min(images, len(train_set))))
    dl = train_loader_f(subset, 16, default_num_workers)
    net = load_model(path).Net((1, 3, 32, 32), (10,), {"lr": 0.01, "momentum": 0.9}, "cpu")
    net.amp, net.grad_checkpoint = False, False  # fp32, as nn-dataset's path trains
    net.train_setup({"lr": 0.01, "momentum": 0.9})
    clock = {}

    def timed(batches):
        n = 0
        for x, y in batches:
            clock.setdefault("start", time.perf_counter())
            n += len(y)
            yield x, y
        clock["n"] = n

    net.learn(timed(dl))
    dt = time.perf_counter() - clock["start"]
    return {"images_per_s": clock["n"] / dt, "loader_workers": default_num_workers}


def child_ckpt(path: str, checkpointing: bool, threads: int, steps: int = 3, **_) -> dict:
    """B: peak resident memory of forward+backward above the level just before, and training step time."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = load_model(path).Net((1, 3, 32, 32), (10,), {"lr": 0.01, "momentum": 0.9}, "cpu")
    net.amp, net.grad_checkpoint = True, checkpointing
    net.train_setup({"lr": 0.01, "momentum": 0.9})
    x, y = torch.randn(16, 3, 32, 32), torch.randint(10, (16,))
    for p in net.parameters():  # gradients exist beforehand; backward accumulates into them in place
        p.grad = torch.zeros_like(p)
    net.train()
    drop = net.global_drop, [b.local_drop for b in net.blocks]
    net.global_drop = 0.0  # memory of the full graph (all columns, no drop-path): the worst step
    for b in net.blocks:
        b.local_drop = 0.0
    base = rss_kb()
    for _ in range(steps):  # the model's own forward (autocast, drop-path, checkpointing) and backward
        net.criteria[0](net(x), y).backward()
    peak_mb = (hwm_kb() - base) / 1024
    net.global_drop = drop[0]
    for b, d in zip(net.blocks, drop[1]):
        b.local_drop = d
    net.learn([(x, y)])  # warm-up of the optimizer path
    t = time.perf_counter()
    net.learn([(x, y)] * steps)
    return {"peak_activation_mb": peak_mb, "step_s": (time.perf_counter() - t) / steps}


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def rss_kb() -> int:
    return _status_kb("VmRSS:")


def hwm_kb() -> int:
    return _status_kb("VmHWM:")


# -- (b) through the real runner --------------------------------------------------------------------------
def ours(path: Path, prepared: dict, images: int, threads: int, box, **over) -> dict:
    from ab.gpt.brute.fract import data
    from ab.gpt.brute.fract.trial import Trial
    from ab.gpt.brute.fract.trial.runner import DEFAULTS, config_hash

    conf = {**DEFAULTS, "epochs": 1, "batch": 16, "norm": [list(v) for v in data.lemur_norm()],
            "train_limit": images, "test_limit": 16, "threads": threads, "device": "cpu", **over}
    conf["config_hash"] = config_hash(conf)
    res = box.submit(Trial("train", path.read_text(), conf, 1800, labels=prepared["test_y"])).result()
    assert res.status == "trained", res
    e = res.epochs[0]
    return {"images_per_s": e["images_per_s"], "amp": res.value["amp"], "checkpointing": res.value["checkpointing"],
            "channels_last": conf["channels_last"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1536)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", choices=["throughput", "checkpointing"], help="run one part")
    ap.add_argument("--data-dir", help="cifar-10-batches-py folder [$NN_GPT_FRACTAL_CIFAR, the shared subset]")
    ap.add_argument("--child")
    ap.add_argument("payload", nargs="?")
    args = ap.parse_args()
    if args.child:
        fn = {"lemur": child_lemur, "ckpt": child_ckpt}[args.child]
        print(json.dumps(fn(**json.loads(args.payload))))
        return

    from ab.gpt.brute.fract import data

    subset = REPO.parent / "shared" / "data" / "cifar-10-subset"
    batches = data.locate(args.data_dir or os.environ.get(data.DATA_ENV) or (subset if subset.is_dir() else None))
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        (tmp / "ab").mkdir()
        (tmp / "README.md").write_text("bench LEMUR root\n")
        prepared = data.prepare(batches, tmp / "cache").to_dict()
        mid = generate(MID, tmp / "mid")
        large = generate(LARGE, tmp / "large")
        print(f"data: {batches}; {args.images} images, batch 16, {args.threads} torch threads, "
              f"cpu cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
        if args.only != "checkpointing":
            throughput(args, mid, batches, prepared, tmp)
        if args.only != "throughput":
            checkpointing(args, large, tmp)


def throughput(args, mid: Path, batches: Path, prepared: dict, tmp: Path) -> None:
    from ab.gpt.brute.fract.trial import TrialLimits
    from ab.gpt.brute.fract.trial.executors import LocalExecutor

    print(f"A. throughput, model {mid.stem}")
    a_runs, b_runs, c_runs = [], [], []
    jail_data = {k: prepared[k] for k in ("train_x", "train_y", "test_x")}
    with LocalExecutor(1, TrialLimits(cpu_s=36000), data=jail_data, threads=args.threads) as box:
        for _ in range(args.repeats):
            a_runs.append(child("lemur", path=str(mid), data_dir=str(batches), images=args.images,
                                threads=args.threads, cwd=str(tmp))["images_per_s"])
            b = ours(mid, prepared, args.images, args.threads, box)
            b_runs.append(b["images_per_s"])
            c_runs.append(ours(mid, prepared, args.images, args.threads, box, checkpointing=False)["images_per_s"])
    a, b_med = statistics.median(a_runs), statistics.median(b_runs)
    print(f"  (a) nn-dataset path (fp32, DataLoader + PIL transforms): {a:8.1f} images/s  runs {fmt(a_runs)}")
    print(f"  (b) our runner (amp={b['amp']}, checkpointing={b['checkpointing']}, "
          f"channels_last={b['channels_last']}): {b_med:8.1f} images/s  runs {fmt(b_runs)}")
    print(f"  ratio (b)/(a): {b_med / a:.2f}x")
    c_med = statistics.median(c_runs)
    print(f"  (c) our runner, checkpointing off (not the default; shows its cost): {c_med:8.1f} images/s  "
          f"runs {fmt(c_runs)}; ratio (c)/(a): {c_med / a:.2f}x")


def checkpointing(args, large: Path, tmp: Path) -> None:
    print(f"B. checkpointing, model {large.stem}, batch 16, bf16 autocast")
    res = {ck: child("ckpt", path=str(large), checkpointing=ck, threads=args.threads, cwd=str(tmp))
           for ck in (False, True)}
    for ck, r in res.items():
        print(f"  checkpointing {'on ' if ck else 'off'}: peak activation {r['peak_activation_mb']:7.1f} MB, "
              f"step {r['step_s']:.3f} s")
    print(f"  memory cut {res[False]['peak_activation_mb'] / max(res[True]['peak_activation_mb'], 1e-9):.2f}x, "
          f"step time x{res[True]['step_s'] / res[False]['step_s']:.2f}")


def fmt(xs: list[float]) -> str:
    return ", ".join(f"{x:.0f}" for x in xs)


if __name__ == "__main__":
    main()
