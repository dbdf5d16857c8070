"""Trainability map of a LEMUR model file on CIFAR-10: the driver (trusted side).

Lays the grid out as tiles (`tiles.run_tiles`: finished tiles stay on disk, a rerun resumes), splits
each tile's pixels into jobs for an executor (local jails or Ray tasks, as NNEval uses), and
turns each pixel's losses into scores with `readout`.

Readout input. Per-step minibatch losses are dominated by how hard each batch is, which at small
learning rates decides "converged or not" by chance. Every pixel sees the same batches in the same
order, so the first job also trains one reference pixel at lr 0 (same code path, weights never move); the
driver divides each pixel's loss at step t by the reference loss at step t: the trajectory is "loss on this
batch relative to the untrained network on the same batch". Step 0 is 1 exactly; a pixel converged
when the mean of its last `window` ratios is below 1. The reference is kept in <out>/baseline.json.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import time
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..generation import codecheck
from ..util.atomic import write_json, write_text
from ..trial import Trial, TrialLimits
from ..trial.executors import LocalExecutor, RayExecutor
from . import cnn, readout, render, tiles
from .config import Axis

GRIDS = ("lr-momentum", "lr-groups")
LABELS = {
    "lr-momentum": ("learning rate", "momentum"),
    "lr-groups": ("learning rate, first half of the blocks", "learning rate, later blocks + head"),
}


@dataclass
class CnnMapConfig:
    """Everything that fixes a map's numbers, plus how to run it (tile, jobs, executor)."""

    model: str  # the checked copy of the model file that workers import
    code_sha: str
    model_name: str = ""  # the original file's stem, for titles (not in the fingerprint)
    grid: str = "lr-momentum"  # x = lr (log); y = momentum (linear) or the later blocks' lr (log)
    x: Axis = dataclasses.field(default_factory=lambda: Axis("lr", 1e-3, 10.0, 8, True))
    y: Axis = dataclasses.field(default_factory=lambda: Axis("momentum", 0.0, 0.99, 8, False))
    momentum: float = 0.0  # fixed momentum of the lr-groups grid
    steps: int = 200
    batch: int = 16
    seed: int = 0
    train_limit: int | None = None  # first images of the training split (None: all)
    transform: str = "norm_flip"
    dropout: float = 0.2  # prm['dropout'] for models that take it (NNEval's default)
    amp: bool = False
    checkpointing: bool = False
    device: str = "cpu"
    readout: str = "sum"
    window: int = 20
    clip: float = 1e6
    tile: int = 8
    data_id: str = ""  # the prepared CIFAR-10 cache folder (named by a hash of the source files)
    # execution only: not in the fingerprint
    pixels_per_job: int = 0  # 0: auto
    timeout_per_pixel: float = 300.0

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.y.n), int(self.x.n))

    def validate(self) -> "CnnMapConfig":
        if self.grid not in GRIDS:
            raise ValueError(f"unknown grid {self.grid!r} (choose from {', '.join(GRIDS)})")
        for name, a in (("x", self.x), ("y", self.y)):
            label = {"lr": "--lr-range", "momentum": "--momentum-range", "lr_late": "--lr-late-range"}[a.knob]
            if int(a.n) != a.n or a.n < 1:
                raise ValueError(f"resolution must be a positive integer, got {a.n}")
            if not a.lo < a.hi:
                raise ValueError(f"{label}: need LO < HI, got {a.lo:g} {a.hi:g}")
            if a.log and not a.lo > 0:
                raise ValueError(f"{label}: learning rates are log-spaced and must be > 0, got {a.lo:g}")
            if a.knob == "momentum" and a.lo < 0:
                raise ValueError(f"{label}: momentum must be >= 0, got {a.lo:g}")
            if not all(math.isfinite(v) for v in (a.lo, a.hi)):
                raise ValueError(f"{label}: bounds must be finite")
        if not 0 <= self.momentum:
            raise ValueError(f"--momentum must be >= 0, got {self.momentum}")
        if self.steps < 1 or self.batch < 1 or self.tile < 1:
            raise ValueError("--steps, --batch and --tile must be >= 1")
        if self.readout not in readout.KINDS:
            raise ValueError(f"unknown readout {self.readout!r} (choose from {', '.join(readout.KINDS)})")
        if self.window < 1:
            raise ValueError(f"--window must be >= 1, got {self.window}")
        if self.train_limit is not None and self.train_limit < self.batch:
            raise ValueError(f"--train-limit must be at least --batch ({self.batch}), got {self.train_limit}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Hash of what changes the numbers; the model enters by its code hash, not its path. The readout
        kind is left out (tiles keep every readout)."""
        d = self.to_dict()
        for k in ("model", "model_name", "readout", "pixels_per_job", "timeout_per_pixel"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def axes_meta(self) -> dict:
        return {n: {"label": lab, "lo": float(a.lo), "hi": float(a.hi), "log": bool(a.log)}
                for n, a, lab in zip(("x", "y"), (self.x, self.y), LABELS[self.grid])}

    def pixels(self, r0: int, r1: int, c0: int, c1: int) -> list[list]:
        """[lr, momentum, lr_late or None] of rows r0:r1, cols c0:c1, row-major (row 0 = lowest y)."""
        xs, ys = self.x.values(), self.y.values()
        if self.grid == "lr-momentum":
            return [[float(xs[c]), float(ys[r]), None] for r in range(r0, r1) for c in range(c0, c1)]
        return [[float(xs[c]), self.momentum, float(ys[r])] for r in range(r0, r1) for c in range(c0, c1)]


def check_model(path: str | Path) -> str:
    """The model's code if it exists and passes the static checks; else ValueError with one line."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"no model file at {p}")
    try:
        code = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{p} cannot be read as Python source: {e}") from None
    findings = codecheck.check_source(code, str(p)) + codecheck.check_contract(code)
    if findings:
        raise ValueError(f"{p.name} fails the static check: {'; '.join(map(str, findings[:3]))}")
    return code


def stage_model(code: str, out_dir: Path) -> tuple[str, str]:
    """(path, sha) of the checked code copied under out_dir; later edits of the original do not leak in."""
    sha = hashlib.sha256(code.encode()).hexdigest()
    path = out_dir / f"model_{sha[:12]}.py"
    if not path.exists() or path.read_text() != code:
        write_text(path, code)
    return str(path), sha


def make_executor(kind: str, workers: int, run_dir: Path, data: dict, cuda: bool = False, address: str | None = None,
                  memory_gb: float = 8.0, unsafe_no_jail: bool = False):
    """NNEval's executors (jails), running the pixel trainer; the jails see the training split only."""
    # long CPU limit: a job's own timeout (per pixel) is what bounds it
    limits = TrialLimits(cpu_s=10**7, memory_gb=None if cuda else memory_gb)
    jail_data = {k: data[k] for k in ("train_x", "train_y")}
    if kind == "ray":
        return RayExecutor(limits, data=jail_data, address=address, gpus=cuda)
    return LocalExecutor(workers, limits, scratch=run_dir, data=jail_data, cuda=cuda, unsafe_no_jail=unsafe_no_jail)


class JobError(RuntimeError):
    """A job's jailed run failed (the model crashed, timed out or ran out of memory)."""


# --- the map ---------------------------------------------------------------------------------------

@dataclass
class CnnMapResult:
    config: CnnMapConfig
    arrays: dict  # 'sum', 'final', 'probe', 'converged', 'final_ratio', 'finite_steps'; (ny, nx)
    stats: dict
    seconds: float
    baseline: dict

    @property
    def scores(self) -> np.ndarray:
        return self.arrays[self.config.readout]


def _job_config(cfg: CnnMapConfig, data: dict, norm) -> dict:
    return {"steps": cfg.steps, "batch": cfg.batch, "seed": cfg.seed, "data": data, "norm": [list(v) for v in norm],
            "transform": cfg.transform, "train_limit": cfg.train_limit, "amp": cfg.amp,
            "checkpointing": cfg.checkpointing, "dropout": cfg.dropout, "device": cfg.device, "threads": 1}


def _losses(rows: list) -> np.ndarray:
    return np.array([[np.inf if v is None else v for v in row] for row in rows], dtype=np.float64)


class _Runner:
    """Runs jobs on a lazily started executor (a fully resumed map starts none)."""

    def __init__(self, cfg: CnnMapConfig, data: dict, norm, start_executor, on_pixels) -> None:
        self.cfg, self.base = cfg, _job_config(cfg, data, norm)
        self.start_executor, self.on_pixels = start_executor, on_pixels
        self.executor = None

    def per_job(self) -> int:
        if self.executor is None:
            self.executor = self.start_executor()
        return auto_per_job(self.cfg, self.executor.workers, isinstance(self.executor, RayExecutor))

    def run(self, chunks: list[list], counted: list[int]) -> list[dict]:
        """Train every chunk of pixels as one job, all concurrently; results in order. counted[k]: pixels of
        chunk k that the progress bar counts."""
        if self.executor is None:
            self.executor = self.start_executor()
        futs = {}
        code = Path(self.cfg.model).read_text()
        for k, ch in enumerate(chunks):
            timeout = 60 + self.cfg.timeout_per_pixel * len(ch)
            futs[self.executor.submit(Trial("pixels", code, {**self.base, "pixels": ch}, timeout,
                                                    handler=cnn.TRIAL_HANDLER))] = k
        out: list = [None] * len(chunks)
        pending = set(futs)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for f in done:
                res = f.result()
                if res.status != "ok":
                    raise JobError(f"{res.status}: {res.message}".splitlines()[0][:400])
                out[futs[f]] = res.value
                self.on_pixels(counted[futs[f]])
        return out

    def close(self, interrupted: bool = False) -> None:
        if self.executor is not None:
            (self.executor.abort if interrupted else self.executor.close)()


def auto_per_job(cfg: CnnMapConfig, workers: int, ray: bool) -> int:
    """Pixels per job: a local worker lives for the whole run (small jobs, smoother progress); a Ray task
    starts its own jail (one job per worker and tile)."""
    if cfg.pixels_per_job > 0:
        return cfg.pixels_per_job
    tile_px = min(cfg.tile, cfg.shape[0]) * min(cfg.tile, cfg.shape[1])
    return max(1, math.ceil(tile_px / (workers * (1 if ray else 4))))


def _saved_baseline(cfg: CnnMapConfig, path: Path) -> dict | None:
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("fingerprint") == cfg.fingerprint():
            return saved
    return None


def compute_map(cfg: CnnMapConfig, out_dir: str | Path, data: dict, norm, start_executor,
                progress: bool = False) -> CnnMapResult:
    """Compute (or resume) the map; tiles under out_dir/tiles. start_executor() -> executor, called on
    first need. Raises JobError when a job fails (finished tiles are kept)."""
    cfg.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ny, nx = cfg.shape
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=ny * nx, unit="px", desc="pixels")
    runner = _Runner(cfg, data, norm, start_executor, lambda n: bar.update(n) if bar is not None else None)
    ranges = tiles.tile_ranges(cfg.shape, cfg.tile)
    window = min(cfg.window, cfg.steps)
    base_path = out / "baseline.json"
    state: dict = {"baseline": None}
    reference = [0.0, 0.0, None if cfg.grid == "lr-momentum" else 0.0]  # lr 0: the weights never move

    def job(r0, r1, c0, c1):
        if state["baseline"] is None:
            state["baseline"] = _saved_baseline(cfg, base_path)
        pixels, per = cfg.pixels(r0, r1, c0, c1), runner.per_job()
        chunks = [pixels[i:i + per] for i in range(0, len(pixels), per)]
        counted = [len(c) for c in chunks]
        new_base = state["baseline"] is None
        if new_base:  # the reference rides along in the first job: it starts no worker of its own
            chunks[0] = [reference] + chunks[0]
        results = runner.run(chunks, counted)
        rows = [row for r in results for row in r["losses"]]
        if new_base:
            ref = _losses(rows[:1])
            rows = rows[1:]
            if not (np.all(np.isfinite(ref)) and np.all(ref > 0)):
                raise JobError("the untrained model's loss is not finite and positive; cannot normalise")
            state["baseline"] = {"fingerprint": cfg.fingerprint(), "losses": ref[0].tolist(),
                                 "params": int(results[0]["params"])}
            write_json(base_path, state["baseline"])
        losses = _losses(rows)
        ratio = losses / np.asarray(state["baseline"]["losses"])[None]
        arrays = readout.scores_all(ratio, window, cfg.clip)
        arrays["final_ratio"] = ratio[:, -1]
        arrays["finite_steps"] = np.isfinite(losses).sum(axis=1)
        return arrays

    def on_tile(i, n, computed):
        if not computed and bar is not None:
            r0, r1, c0, c1 = ranges[i]
            bar.update((r1 - r0) * (c1 - c0))

    interrupted = True
    try:
        arrays, stats = tiles.run_tiles(cfg.shape, cfg.tile, job, str(out / "tiles"), cfg.fingerprint(), on_tile)
        interrupted = False
    finally:
        runner.close(interrupted)
        if bar is not None:
            bar.close()
    base = state["baseline"] or _saved_baseline(cfg, base_path) or {"losses": [float("nan")], "params": None}
    return CnnMapResult(cfg, arrays, stats, time.perf_counter() - t0, base)


def write_outputs(res: CnnMapResult, out_dir: str | Path, name: str = "map") -> dict:
    """<name>.npy (chosen readout), <name>_arrays.npz (every array), <name>.json (metadata),
    <name>.png (labelled figure), <name>_raw.png (one pixel per grid point). Returns the paths."""
    import torch

    cfg, out = res.config, Path(out_dir)
    ext = {"npy": ".npy", "npz": "_arrays.npz", "json": ".json", "png": ".png", "raw_png": "_raw.png"}
    paths = {k: str(out / (name + e)) for k, e in ext.items()}
    for key, save in (("npy", lambda f: np.save(f, res.scores)), ("npz", lambda f: np.savez(f, **res.arrays))):
        with open(paths[key] + ".tmp", "wb") as f:
            save(f)
        os.replace(paths[key] + ".tmp", paths[key])
    model = cfg.model_name or Path(cfg.model).stem
    fixed = f", momentum {cfg.momentum:g}" if cfg.grid == "lr-groups" else ""
    title = f"{model[:70]}\n{cfg.steps} steps, batch {cfg.batch}{fixed}, readout {cfg.readout}"
    render.save_png(res.scores, cfg.axes_meta(), paths["png"], title=title)
    render.save_raw_png(res.scores, paths["raw_png"])
    conv = res.arrays["converged"]
    meta = {
        "config": cfg.to_dict(), "fingerprint": cfg.fingerprint(), "params": res.baseline.get("params"),
        "axes": cfg.axes_meta(),
        "array": {"file": os.path.basename(paths["npy"]), "shape": list(res.scores.shape), "readout": cfg.readout,
                  "rows": "y ascending (row 0 = y lo)", "cols": "x ascending",
                  "sign": "negative = converged, positive = diverged",
                  "trajectory": "per-step minibatch loss / loss of the lr-0 reference on the same batch"},
        "converged_pixels": int(conv.sum()), "pixels": int(conv.size), "fraction_converged": float(conv.mean()),
        "baseline_loss": {"first": res.baseline["losses"][0], "mean": float(np.mean(res.baseline["losses"]))},
        "timing": {"seconds": round(res.seconds, 2), "tiles": res.stats},
        "environment": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
                        "machine": platform.machine()},
        "files": {k: os.path.basename(v) for k, v in paths.items()},
    }
    write_json(Path(paths["json"]), meta)
    return paths
