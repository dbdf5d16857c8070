"""Resumable tiled computation of 2-D per-pixel arrays, one file per finished tile.

A tile file appears only complete (written to a temporary name, then os.replace), so an interrupted
run leaves no half tiles; a rerun loads the finished ones and computes only the rest. The directory
is bound to a fingerprint of the settings; a different fingerprint is refused.
"""
from __future__ import annotations

import io
import json
import os
from typing import Callable

import numpy as np

MANIFEST = "manifest.json"


def tile_ranges(shape: tuple[int, int], tile: int) -> list[tuple[int, int, int, int]]:
    """(r0, r1, c0, c1) of every tile, row-major."""
    H, W = shape
    return [(r, min(H, r + tile), c, min(W, c + tile)) for r in range(0, H, tile) for c in range(0, W, tile)]


def atomic_write_bytes(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _tile_path(directory: str, r0: int, c0: int) -> str:
    return os.path.join(directory, f"tile_{r0:06d}_{c0:06d}.npz")


def run_tiles(
    shape: tuple[int, int],
    tile: int,
    job: Callable[[int, int, int, int], dict],
    directory: str,
    fingerprint: str,
    on_tile: Callable[[int, int, bool], None] | None = None,
    progress: bool = False,
) -> tuple[dict, dict]:
    """Compute job(r0, r1, c0, c1) -> {name: array (r1-r0, c1-c0)} for every tile and assemble.

    on_tile(i, n_tiles, computed) is called after each tile (computed=False: loaded from disk);
    an exception raised there stops the run with the finished tiles kept. Returns (arrays, stats)
    with stats = {'computed': k, 'reused': j, 'tiles': n}.
    """
    os.makedirs(directory, exist_ok=True)
    man_path = os.path.join(directory, MANIFEST)
    if os.path.exists(man_path):
        with open(man_path) as f:
            man = json.load(f)
        if man.get("fingerprint") != fingerprint or tuple(man.get("shape", ())) != tuple(shape) or man.get("tile") != tile:
            raise ValueError(f"{directory} holds tiles of different settings; use another output folder")
    else:
        atomic_write_bytes(man_path, json.dumps({"fingerprint": fingerprint, "shape": list(shape), "tile": tile}).encode())

    ranges = tile_ranges(shape, tile)
    out: dict = {}
    stats = {"computed": 0, "reused": 0, "tiles": len(ranges)}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ranges), unit="tile")
    try:
        for i, (r0, r1, c0, c1) in enumerate(ranges):
            path = _tile_path(directory, r0, c0)
            computed = not os.path.exists(path)
            if computed:
                arrays = {k: np.asarray(v).reshape(r1 - r0, c1 - c0) for k, v in job(r0, r1, c0, c1).items()}
                buf = io.BytesIO()
                np.savez(buf, **arrays)
                atomic_write_bytes(path, buf.getvalue())
                stats["computed"] += 1
            else:
                with np.load(path) as z:
                    arrays = {k: z[k] for k in z.files}
                stats["reused"] += 1
            for k, v in arrays.items():
                if k not in out:
                    out[k] = np.empty(shape, dtype=v.dtype)
                out[k][r0:r1, c0:c1] = v
            if bar is not None:
                bar.update(1)
            if on_tile is not None:
                on_tile(i, len(ranges), computed)
    finally:
        if bar is not None:
            bar.close()
    return out, stats
