"""Pixel coordinates of a map: which hyperparameters each pixel trains with."""
from __future__ import annotations

import numpy as np

from .config import BoundaryConfig

_EXPANDS = {"lr": ("lr0", "lr1"), "offset": ("offset0", "offset1")}


def pixel_knobs(cfg: BoundaryConfig, r0: int, r1: int, c0: int, c1: int) -> dict:
    """Per-pixel lr0, lr1, offset0, offset1 (flattened, row-major) for rows r0:r1, cols c0:c1,
    plus 'index', the global pixel index row * nx + col."""
    rows, cols = np.arange(r0, r1), np.arange(c0, c1)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    knobs = {k: np.full(rr.size, float(getattr(cfg, k))) for k in ("lr0", "lr1", "offset0", "offset1")}
    for axis, idx in ((cfg.x, cc), (cfg.y, rr)):
        vals = axis.values()[idx.ravel()]
        for k in _EXPANDS.get(axis.knob, (axis.knob,)):
            knobs[k] = vals.copy()
    knobs["index"] = (rr * cfg.x.n + cc).ravel()
    return knobs


KNOB_LABELS = {
    "lr0": "input-layer learning rate",
    "lr1": "output-layer learning rate",
    "lr": "learning rate (both layers)",
    "offset0": "input-layer init offset",
    "offset1": "output-layer init offset",
    "offset": "init offset (both layers)",
}


def axes_meta(cfg: BoundaryConfig) -> dict:
    """Axis description in the form render.save_png expects."""
    return {
        name: {"label": KNOB_LABELS.get(a.knob, a.knob), "lo": float(a.lo), "hi": float(a.hi), "log": bool(a.log)}
        for name, a in (("x", cfg.x), ("y", cfg.y))
    }
