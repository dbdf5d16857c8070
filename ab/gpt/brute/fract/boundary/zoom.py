"""Zoom sequences toward a point on the border, every frame recomputed at full resolution."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np

from . import render, runner
from .config import Axis, BoundaryConfig
from .dimension import border_mask


def _zoom_axis(a: Axis, centre: float, scale: float) -> Axis:
    if a.log:
        half = 0.5 * np.log10(a.hi / a.lo) / scale
        return dataclasses.replace(a, lo=float(centre * 10 ** -half), hi=float(centre * 10 ** half))
    half = 0.5 * (a.hi - a.lo) / scale
    return dataclasses.replace(a, lo=float(centre - half), hi=float(centre + half))


def frame_configs(cfg: BoundaryConfig, centre: tuple[float, float], factor: float, frames: int) -> list:
    """Frame k spans the extent of cfg (in log units on log axes) divided by factor**k, around centre."""
    return [dataclasses.replace(cfg, x=_zoom_axis(cfg.x, centre[0], factor ** k), y=_zoom_axis(cfg.y, centre[1], factor ** k))
            for k in range(frames)]


def border_point(scores, cfg: BoundaryConfig) -> tuple[float, float] | None:
    """Axis values of the border pixel nearest the image centre (None when there is no border)."""
    m = border_mask(scores)
    rr, cc = np.nonzero(m)
    if rr.size == 0:
        return None
    ny, nx = m.shape
    i = np.argmin((rr - (ny - 1) / 2) ** 2 + (cc - (nx - 1) / 2) ** 2)
    # a mask cell sits between pixels r, r+1 and c, c+1: take the midpoint (geometric on log axes)
    def mid(a: Axis, k: int) -> float:
        v = a.values()
        return float(np.sqrt(v[k] * v[k + 1]) if a.log else 0.5 * (v[k] + v[k + 1]))
    return mid(cfg.x, cc[i]), mid(cfg.y, rr[i])


def save_gif(images, path: str, ms: int = 200, min_side: int = 256) -> None:
    """Animated GIF (looping) from RGB uint8 images, upscaled by an integer factor to >= min_side."""
    from PIL import Image

    k = max(1, -(-min_side // max(images[0].shape[:2])))
    frames = [Image.fromarray(np.kron(im, np.ones((k, k, 1), dtype=np.uint8))) for im in images]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms, loop=0, optimize=False)


def save_mp4(images, path: str, fps: int = 5) -> bool:
    """MP4 via ffmpeg when it is on PATH; returns whether a file was written."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        return False
    from PIL import Image

    with tempfile.TemporaryDirectory() as d:
        for i, im in enumerate(images):
            Image.fromarray(im).save(os.path.join(d, f"f{i:05d}.png"))
        cmd = [exe, "-y", "-loglevel", "error", "-framerate", str(fps), "-i", os.path.join(d, "f%05d.png"),
               "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2:flags=neighbor", "-pix_fmt", "yuv420p", path]
        return subprocess.run(cmd).returncode == 0


def run_zoom(cfg: BoundaryConfig, out_dir: str, frames: int, factor: float,
             centre: tuple[float, float] | None = None, progress: bool = False, ms: int = 200) -> dict:
    """Compute every frame (resumable, under out_dir/frame_XXX), write zoom.gif (+ zoom.mp4) and
    zoom.json. Without centre, a scout map of cfg picks the border point nearest its centre."""
    cfg.validate()
    if frames < 1 or not factor > 1:
        raise ValueError("need frames >= 1 and factor > 1")
    os.makedirs(out_dir, exist_ok=True)
    if centre is None:
        scout = runner.compute_map(cfg, os.path.join(out_dir, "scout"), progress=progress)
        centre = border_point(scout.scores, cfg)
        if centre is None:
            raise ValueError("the starting map has no border to zoom into; widen the bounds or give a centre")
    images, scores, infos = [], [], []
    for k, fc in enumerate(frame_configs(cfg, centre, factor, frames)):
        d = os.path.join(out_dir, f"frame_{k:03d}")
        res = runner.compute_map(fc, d, progress=progress)
        runner.write_outputs(res, d, "map")
        scores.append(res.scores)
        images.append(render.colorize(res.scores))
        infos.append({"frame": k, "x": [fc.x.lo, fc.x.hi], "y": [fc.y.lo, fc.y.hi], "seconds": res.seconds,
                      "fraction_converged": float(np.mean(res.arrays["converged"]))})
    paths = {"gif": os.path.join(out_dir, "zoom.gif")}
    save_gif(images, paths["gif"], ms)
    mp4 = os.path.join(out_dir, "zoom.mp4")
    if save_mp4(images, mp4):
        paths["mp4"] = mp4
    meta = {"config": cfg.to_dict(), "centre": list(centre), "factor": factor, "frames": infos,
            "files": {k: os.path.basename(v) for k, v in paths.items()}}
    with open(os.path.join(out_dir, "zoom.json"), "w") as f:
        json.dump(meta, f, indent=2)
    return {"centre": centre, "scores": scores, "paths": paths, "meta": meta}
