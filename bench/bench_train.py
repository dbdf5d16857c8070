"""Training throughput and checkpointing memory, side by side in one run.

    .venv/bin/python bench/bench_train.py [--threads 2] [--repeats 3] [--only throughput|checkpointing]

A. Throughput, whole process against whole process, same model file (N3 C3, 32-64-128), batch 16, one epoch
   of the training images, evaluation on the test images:
   (a) nn-dataset's own trainer, `python -m ab.nn.train -c img-classification_cifar-10_acc_<Model> -e 1
       -p '{"lr": 0.01, "momentum": 0.9, "batch": 16}' -f norm_flip`, in a source-checkout LEMUR root whose DB
       holds the model (it rebuilds the file from the DB, as a LEMUR user gets it), offline through
       `lemur site-dir`. It runs the file with the file's own defaults (`Net.auto_policies`: AMP and
       checkpointing decided as our runner does) and its DataLoader with PIL transforms.
   (b) `python -m ab.gpt.NNEval --models <the file> --epochs 1 --batch 16` with every default (jail, auto
       policies from this machine's tuning cache, registration into a fresh DB).
   Wall time of each process, alternating --repeats times, medians; also our training images/s and model
   FLOP utilisation: achieved training FLOP/s (3 x forward FLOPs x the drop-path share x images / training
   time) over the measured matmul peak of the dtype used.
B. Checkpointing, on a large variant (N=3, C=4, 64-128-256 channels, bf16 autocast as in the runner):
   step time (full `learn()` steps) and peak activation memory (all columns, drop-path off: the largest
   step) with and without it. Each case runs in a
   fresh process: with the gradients already allocated, the peak resident memory (VmHWM) over 3 forward +
   backward passes minus the resident memory just before them is the activation peak (saved activations,
   recomputed ones, autocast weight copies and backward temporaries). glibc's mmap threshold is fixed at
   64 KiB there, so freed tensors leave resident memory at once and RSS follows live memory.

Generated model code runs in child processes only (it is statically checked first); (a) is not jailed
(nn-dataset's trainer, measured as it is).
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
    subprocess.run([sys.executable, "-m", "ab.gpt.brute.fract.AlterNNFN", *space, *LAYERS, "--models", str(out)],
                   check=True, env=env(), cwd=out.parent)
    (path,) = sorted(out.glob("*.py"))
    from ab.gpt.brute.fract.generation import codecheck

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


# -- A: whole processes ---------------------------------------------------------------------------------
def timed_run(args: list[str], cwd: Path, extra_env: dict | None = None) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env={**env(), **(extra_env or {})}, text=True,
                          capture_output=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return wall


def ours(mid: Path, batches: Path, root: Path, k: int, epochs: int = 1, batch: int = 16,
         extra: tuple[str, ...] = ()) -> tuple[float, dict]:
    """NNEval with its defaults (plus `extra` options) on the one model, into a fresh results folder and DB;
    (wall s, stat record of the last epoch)."""
    out, db = root / f"ours{k}", root / f"ours{k}" / "ab.nn.db"
    wall = timed_run(["-m", "ab.gpt.NNEval", "--models", str(mid.parent), "--epochs", str(epochs), "--batch",
                      str(batch), "--data-dir", str(batches), "--results", str(out), "--db", str(db), "-q", *extra], cwd=root)
    (stat,) = out.glob(f"stat/train/*/{epochs}.json")
    return wall, json.loads(stat.read_text())[0]


def nn_dataset(name: str, root: Path, epochs: int = 1, batch: int = 16) -> float:
    from ab.gpt.brute.fract.lemur.names import config_name
    from ab.gpt.brute.fract.lemur.subset import site_dir

    prm = json.dumps({"lr": 0.01, "momentum": 0.9, "batch": batch})
    return timed_run(["-m", "ab.nn.train", "-c", config_name(name), "-e", str(epochs), "-p", prm, "-f", "norm_flip"],
                     cwd=root, extra_env={"PYTHONPATH": f"{site_dir()}{os.pathsep}{root}"})


def figures(stat: dict) -> dict:
    """One stat record with our block's figures, the trial's own claims (images/s, peak memory) among them."""
    from ab.gpt.brute.fract.lemur.stats import trial_figures

    return trial_figures(stat)


def utilisation(stat: dict, flops: int, spec: dict, device: str = "cpu",
                peaks: dict | None = None) -> tuple[float, float, str]:
    """(achieved training FLOP/s, matmul peak FLOP/s of the dtype used, dtype); `peaks` as
    `autotune.matmul_peaks` gives them (measured here when not given)."""
    import torch

    from ab.gpt.brute.fract.tune.autotune import matmul_peaks
    from ab.gpt.brute.fract.tune.cost import TRAIN_FACTOR, drop_path_factor

    ours_ = figures(stat)
    images = ours_["images_per_s"] * ours_["train_time_s"]
    achieved = TRAIN_FACTOR * flops * drop_path_factor(spec) * images / ours_["train_time_s"]
    low = "fp16" if torch.device(device).type == "cuda" and not torch.cuda.is_bf16_supported() else "bf16"
    dtype = low if ours_["amp"] else "fp32"
    return achieved, (peaks or matmul_peaks(torch.device(device)))[dtype], dtype


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=["throughput", "checkpointing"], help="run one part")
    ap.add_argument("--data-dir", help="cifar-10-batches-py folder [$NN_GPT_FRACTAL_CIFAR, the shared subset]")
    ap.add_argument("--child")
    ap.add_argument("payload", nargs="?")
    args = ap.parse_args()
    if args.child:
        fn = {"ckpt": child_ckpt}[args.child]
        print(json.dumps(fn(**json.loads(args.payload))))
        return

    from ab.gpt.brute.fract.trial import data

    subset = REPO.parent / "shared" / "data" / "cifar-10-subset"
    batches = data.locate(args.data_dir or os.environ.get(data.DATA_ENV) or (subset if subset.is_dir() else None))
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        (tmp / "ab").mkdir()
        (tmp / "README.md").write_text("bench LEMUR root\n")
        mid = generate(MID, tmp / "mid")
        large = generate(LARGE, tmp / "large")
        print(f"data: {batches}; batch 16, {args.threads} torch threads (part B), "
              f"cpu cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
        if args.only != "checkpointing":
            throughput(args, mid, batches, tmp)
        if args.only != "throughput":
            checkpointing(args, large, tmp)


def throughput(args, mid: Path, batches: Path, tmp: Path) -> None:
    from ab.gpt.brute.fract.generation.manifest import Manifest

    sys.path.insert(0, str(REPO / "tests"))
    from lemur.lemurkit import checkout  # nn-dataset's source layout, as the round-trip tests build it

    (rec,) = Manifest.load(mid.parent).valid()
    print(f"A. throughput, whole process, model {mid.stem} ({rec['flops'] / 1e6:.0f} MFLOP forward)")
    lemur_root = checkout(tmp / "nn-dataset", batches)
    walls_a, walls_b, stats = [], [], []
    for k in range(args.repeats):
        wall, stat = ours(mid, batches, tmp, k)
        walls_b.append(wall)
        stats.append(stat)
        if k == 0:  # the LEMUR user's DB: the model as we registered it
            (lemur_root / "db").mkdir(exist_ok=True)
            import shutil

            shutil.copy(tmp / "ours0" / "ab.nn.db", lemur_root / "db" / "ab.nn.db")
        walls_a.append(nn_dataset(mid.stem, lemur_root))
    a, b = statistics.median(walls_a), statistics.median(walls_b)
    pol = stats[0]["nn_gpt_fractal"]
    print(f"  (a) python -m ab.nn.train (nn-dataset's trainer):  {a:7.1f} s  runs {fmt(walls_a, '.1f')}")
    print(f"  (b) python -m ab.gpt.NNEval, defaults:              {b:7.1f} s  runs {fmt(walls_b, '.1f')}  "
          f"(amp={pol['amp']}, channels_last={pol['channels_last']}, checkpointing={pol['checkpointing']}, "
          f"compile={pol['policies']['compile']})")
    print(f"  ratio (a)/(b): {a / b:.2f}x  (goal >= 2x)")
    ips = statistics.median(figures(s)["images_per_s"] for s in stats)
    achieved, peak, dtype = utilisation(stats[0], rec["flops"], rec["spec"])
    print(f"  ours: {ips:.0f} training images/s; model FLOP utilisation {achieved / 1e9:.1f} GFLOP/s of the "
          f"{dtype} matmul peak {peak / 1e9:.0f} GFLOP/s = {100 * achieved / peak:.1f}%")


def checkpointing(args, large: Path, tmp: Path) -> None:
    print(f"B. checkpointing, model {large.stem}, batch 16, bf16 autocast")
    res = {ck: child("ckpt", path=str(large), checkpointing=ck, threads=args.threads, cwd=str(tmp))
           for ck in (False, True)}
    for ck, r in res.items():
        print(f"  checkpointing {'on ' if ck else 'off'}: peak activation {r['peak_activation_mb']:7.1f} MB, "
              f"step {r['step_s']:.3f} s")
    print(f"  memory cut {res[False]['peak_activation_mb'] / max(res[True]['peak_activation_mb'], 1e-9):.2f}x, "
          f"step time x{res[True]['step_s'] / res[False]['step_s']:.2f}")


def fmt(xs: list[float], spec: str = ".0f") -> str:
    return ", ".join(format(x, spec) for x in xs)


if __name__ == "__main__":
    main()
