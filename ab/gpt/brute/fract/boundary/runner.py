"""One map end to end: grid -> batched engine -> readout -> tiles on disk -> .npy/.json/.png."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import engine, grid, readout, render, tiles
from .config import BoundaryConfig
from .problem import make_problem


@dataclass
class MapResult:
    config: BoundaryConfig
    arrays: dict  # 'sum', 'final', 'probe' scores and 'converged', each (ny, nx); row 0 = lowest y
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def scores(self) -> np.ndarray:
        return self.arrays[self.config.readout]


def tile_job(cfg: BoundaryConfig):
    """job(r0, r1, c0, c1) for tiles.run_tiles that trains the tiny networks of one tile."""
    spec = engine.Spec.from_config(cfg)
    shared = make_problem(cfg.n_samples, cfg.width, cfg.seed) if cfg.seed_mode == "shared" else None

    def job(r0, r1, c0, c1):
        k = grid.pixel_knobs(cfg, r0, r1, c0, c1)
        B = len(k["index"])
        traj = np.empty((B, cfg.steps))
        for s in range(0, B, cfg.chunk):
            sl = slice(s, min(B, s + cfg.chunk))
            pb = shared if shared is not None else make_problem(cfg.n_samples, cfg.width, cfg.seed, k["index"][sl])
            traj[sl] = engine.train(pb, k["lr0"][sl], k["lr1"][sl], k["offset0"][sl], k["offset1"][sl], spec, chunk=cfg.chunk)
        return readout.scores_all(traj, cfg.window, cfg.clip, cfg.probe_step)

    return job


def compute_map(cfg: BoundaryConfig, out_dir: str, on_tile=None, progress: bool = False) -> MapResult:
    """Compute (or resume) the map of cfg with tiles kept under out_dir/tiles."""
    cfg.validate()
    t0 = time.perf_counter()
    arrays, stats = tiles.run_tiles(
        cfg.shape, cfg.tile, tile_job(cfg), os.path.join(out_dir, "tiles"), cfg.fingerprint(), on_tile, progress
    )
    return MapResult(cfg, arrays, stats, time.perf_counter() - t0)


def write_outputs(res: MapResult, out_dir: str, name: str = "map") -> dict:
    """Write <name>.npy (chosen readout), <name>.json (metadata), <name>.png (annotated figure) and
    <name>_raw.png (one pixel per grid point). Returns the paths."""
    cfg = res.config
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, name + ext) for k, ext in
             (("npy", ".npy"), ("json", ".json"), ("png", ".png"), ("raw_png", "_raw.png"))}
    with open(paths["npy"] + ".tmp", "wb") as f:
        np.save(f, res.scores)
    os.replace(paths["npy"] + ".tmp", paths["npy"])
    title = f"{cfg.activation}, width {cfg.width}, {cfg.steps} steps, readout {cfg.readout}"
    render.save_png(res.scores, grid.axes_meta(cfg), paths["png"], title=title)
    render.save_raw_png(res.scores, paths["raw_png"])
    conv = res.arrays["converged"]
    meta = {
        "config": cfg.to_dict(),
        "fingerprint": cfg.fingerprint(),
        "seed": cfg.seed,
        "n_params": cfg.n_params,
        "n_samples": cfg.n_samples,
        "axes": grid.axes_meta(cfg),
        "array": {"file": os.path.basename(paths["npy"]), "shape": list(res.scores.shape),
                  "rows": "y ascending (row 0 = y lo)", "cols": "x ascending", "readout": cfg.readout,
                  "sign": "negative = converged, positive = diverged"},
        "fraction_converged": float(np.mean(conv)),
        "timing": {"seconds": res.seconds, "networks": int(conv.size), "tiles": res.stats,
                   "networks_x_steps_per_s_this_run": (res.stats.get("computed", 0) / max(1, res.stats.get("tiles", 1)))
                   * conv.size * cfg.steps / max(res.seconds, 1e-9)},
        "environment": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
                        "threads": torch.get_num_threads(), "machine": platform.machine()},
        "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": {k: os.path.basename(v) for k, v in paths.items()},
    }
    with open(paths["json"] + ".tmp", "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(paths["json"] + ".tmp", paths["json"])
    return paths
