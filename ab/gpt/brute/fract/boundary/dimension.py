"""Box-counting fractal dimension of the converged/diverged border.

Border pixels: each 2x2 neighbourhood of the score image whose signs are not all equal (an
(ny-1, nx-1) mask). Box counting: for box sizes s = 1, 2, 4, ... count the s x s boxes holding any
border pixel; the dimension is the least-squares slope of log N(s) against log(1/s).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class MapFileError(ValueError):
    """A file that is not a saved score map (a 2-D numeric .npy array)."""


def load_map(path: str) -> np.ndarray:
    """The score image saved at `path` (a 2-D real .npy array, at least 2x2), or MapFileError in one line."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        why = "not a plain .npy array: another format, or pickled objects" if "pickle" in str(e) else (str(e).splitlines() or [type(e).__name__])[0]
        raise MapFileError(f"{path} is not a readable .npy map array ({why}); pass a <name>.npy written by "
                           "'boundary map' or a folder holding map.npy") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        arr.close()
        raise MapFileError(f"{path} is an .npz archive, not a .npy map array; pass <name>.npy")
    if arr.ndim != 2 or min(arr.shape) < 2 or not (np.issubdtype(arr.dtype, np.integer)
                                                   or np.issubdtype(arr.dtype, np.floating)):
        raise MapFileError(f"{path} holds a {arr.dtype} array of shape {arr.shape}, not a 2-D numeric map "
                           "of at least 2x2 pixels")
    return arr


def border_mask(scores) -> np.ndarray:
    """True where a 2x2 neighbourhood holds both signs (converged: score < 0)."""
    pos = np.asarray(scores) >= 0
    a, b, c, d = pos[:-1, :-1], pos[:-1, 1:], pos[1:, :-1], pos[1:, 1:]
    return ~((a == b) & (a == c) & (a == d))


def box_counts(mask, sizes) -> np.ndarray:
    """Number of s x s boxes (grid anchored at 0, edge boxes padded) containing a True pixel."""
    m = np.asarray(mask, dtype=bool)
    counts = []
    for s in sizes:
        H, W = -(-m.shape[0] // s) * s, -(-m.shape[1] // s) * s
        p = np.zeros((H, W), dtype=bool)
        p[: m.shape[0], : m.shape[1]] = m
        counts.append(int(p.reshape(H // s, s, W // s, s).any(axis=(1, 3)).sum()))
    return np.array(counts)


@dataclass
class Dimension:
    dimension: float
    sizes: np.ndarray
    counts: np.ndarray
    intercept: float

    def to_dict(self) -> dict:
        return {"dimension": self.dimension, "sizes": self.sizes.tolist(), "counts": self.counts.tolist()}


def default_sizes(shape, min_size: int = 1, max_fraction: float = 0.125) -> np.ndarray:
    """Powers of two from min_size up to max_fraction of the smaller side (at least two sizes)."""
    top = max(min_size * 2, int(min(shape) * max_fraction))
    sizes = [s for s in (2 ** k for k in range(31)) if min_size <= s <= top]
    return np.array(sizes)


def box_dimension(mask, sizes=None, min_size: int = 1) -> Dimension:
    """Slope of log N(s) vs log(1/s) over `sizes` (default: default_sizes). NaN without border."""
    m = np.asarray(mask, dtype=bool)
    sizes = default_sizes(m.shape, min_size) if sizes is None else np.asarray(sizes)
    counts = box_counts(m, sizes)
    ok = counts > 0
    if ok.sum() < 2:
        return Dimension(float("nan"), sizes, counts, float("nan"))
    slope, icpt = np.polyfit(np.log(1.0 / sizes[ok]), np.log(counts[ok]), 1)
    return Dimension(float(slope), sizes, counts, float(icpt))


def map_dimension(scores, sizes=None, min_size: int = 1) -> Dimension:
    """Dimension of the border of one score image."""
    return box_dimension(border_mask(scores), sizes, min_size)


def median_dimension(score_images, sizes=None, min_size: int = 1) -> tuple[float, list]:
    """Median over images (e.g. a zoom sequence) and the per-image results."""
    res = [map_dimension(s, sizes, min_size) for s in score_images]
    dims = [r.dimension for r in res if np.isfinite(r.dimension)]
    return (float(np.median(dims)) if dims else float("nan")), res


def save_loglog(results, path: str, labels=None) -> None:
    """Log-log plot of N(s) against 1/s with the fitted line, one series per result."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if isinstance(results, Dimension):
        results = [results]
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    for i, r in enumerate(results):
        inv = 1.0 / r.sizes
        lab = labels[i] if labels else f"image {i}"
        pts = ax.loglog(inv, np.maximum(r.counts, 1e-1), "o")
        if np.isfinite(r.dimension):
            ax.loglog(inv, np.exp(r.intercept) * inv ** r.dimension, "-", color=pts[0].get_color(),
                      label=f"{lab}: D = {r.dimension:.3f}")
    ax.set_xlabel("1 / box size (pixels$^{-1}$)")
    ax.set_ylabel("boxes touching the border N(s)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
