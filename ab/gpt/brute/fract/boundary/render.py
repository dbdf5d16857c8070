"""Images of any 2-D score array (negative = converged, positive = diverged).

The stretch ranks |score| separately within each sign (histogram equalisation), so structure shows
whatever the dynamic range, and maps it to [0.25, 1]: sign always readable from the hue.
Array row 0 is the lowest y value and is drawn at the bottom.
"""
from __future__ import annotations

import numpy as np

CMAP = "RdBu_r"  # converged blue, diverged red
_FLOOR = 0.25


def stretch(scores) -> np.ndarray:
    """Signed intensities in [-1, 1]: sign of the score, rank of |score| within its sign; NaN kept."""
    s = np.asarray(scores, dtype=np.float64)
    out = np.full(s.shape, np.nan)
    for sign in (-1.0, 1.0):
        mask = (s < 0) if sign < 0 else (s >= 0)
        vals = np.abs(s[mask])
        if vals.size == 0:
            continue
        srt = np.sort(vals)
        lo = np.searchsorted(srt, vals, side="left")
        hi = np.searchsorted(srt, vals, side="right") - 1
        rank = 0.5 * (lo + hi) / max(1, vals.size - 1)  # ties share their mean rank
        out[mask] = sign * (_FLOOR + (1.0 - _FLOOR) * rank)
    return out


def colorize(scores, cmap: str = CMAP) -> np.ndarray:
    """uint8 RGB image (ny, nx, 3) with the lowest y row at the bottom; NaN drawn grey."""
    import matplotlib

    v = stretch(scores)
    rgba = matplotlib.colormaps[cmap]((np.nan_to_num(v, nan=0.0) + 1.0) / 2.0)
    rgb = (rgba[..., :3] * 255 + 0.5).astype(np.uint8)
    rgb[np.isnan(v)] = 128
    return rgb[::-1]


def save_raw_png(scores, path: str, cmap: str = CMAP) -> None:
    """PNG with exactly one pixel per array element."""
    from PIL import Image

    Image.fromarray(colorize(scores, cmap)).save(path)


def _axis(meta: dict | None, n: int):
    if meta is None:
        return 0.0, float(n), "pixel", False
    lo, hi, log = float(meta["lo"]), float(meta["hi"]), bool(meta.get("log", False))
    if log:
        lo, hi = np.log10(lo), np.log10(hi)
    return lo, hi, meta.get("label", ""), log


def save_png(scores, axes_meta: dict | None, path: str, title: str | None = None,
             size_px: tuple[int, int] = (900, 760), dpi: int = 100, cmap: str = CMAP) -> None:
    """Annotated figure of exactly size_px pixels: stretched diverging colours, labelled (log) axes.

    axes_meta: {'x': {'label', 'lo', 'hi', 'log'}, 'y': {...}} (bounds of the swept values), or None.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    s = np.asarray(scores)
    ny, nx = s.shape
    xlo, xhi, xlabel, xlog = _axis((axes_meta or {}).get("x"), nx)
    ylo, yhi, ylabel, ylog = _axis((axes_meta or {}).get("y"), ny)
    v = stretch(s)
    fig, ax = plt.subplots(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
    im = ax.imshow(np.ma.masked_invalid(v), origin="lower", cmap=cmap, vmin=-1, vmax=1,
                   extent=(xlo, xhi, ylo, yhi), aspect="auto", interpolation="nearest")
    log_fmt = FuncFormatter(lambda t, _: f"$10^{{{t:.3g}}}$")
    if xlog:
        ax.xaxis.set_major_formatter(log_fmt)
    if ylog:
        ax.yaxis.set_major_formatter(log_fmt)
    ax.set_xlabel(xlabel + (" (log scale)" if xlog else ""))
    ax.set_ylabel(ylabel + (" (log scale)" if ylog else ""))
    if title:
        ax.set_title(title)
    cb = fig.colorbar(im, ax=ax, ticks=[-0.625, 0.625])
    cb.ax.set_yticklabels(["converged", "diverged"], rotation=90, va="center")
    cb.set_label("shade: rank of |score| within its outcome")
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
