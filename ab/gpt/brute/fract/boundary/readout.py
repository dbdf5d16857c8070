"""Per-pixel readout of loss trajectories; independent of how the trajectories were produced.

Convention for every score: negative = converged, positive = diverged; |score| is the intensity.
"""
from __future__ import annotations

import numpy as np

KINDS = ("sum", "final", "probe")


def normalise(traj, clip: float = 1e6) -> np.ndarray:
    """Losses divided by the first loss; non-finite values and values above clip become clip."""
    traj = np.asarray(traj, dtype=np.float64)
    if traj.ndim == 1:
        traj = traj[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        v = traj / traj[:, :1]
    return np.where(np.isfinite(v) & (v <= clip), v, clip)


def converged(v: np.ndarray, window: int = 20) -> np.ndarray:
    """Boolean per row: mean of the last `window` normalised losses below 1."""
    return v[:, -window:].mean(axis=1) < 1.0


def _signed_log_magnitude(conv: np.ndarray, vk: np.ndarray) -> np.ndarray:
    # 1 + |log10 v| so that every pixel is clearly signed even when v is close to 1
    mag = 1.0 + np.abs(np.log10(np.maximum(vk, 1e-300)))
    return np.where(conv, -mag, mag)


def score(traj, kind: str = "sum", window: int = 20, clip: float = 1e6, probe_step: int | None = None) -> np.ndarray:
    """Scores (B,) from loss trajectories (B, steps) or one trajectory (steps,).

    sum:   converged -> -sum(v), diverged -> sum(1/v)  (Sohl-Dickstein 2024)
    final: sign of convergence times (1 + |log10 v_last|)
    probe: same as final, read at step `probe_step` (default: last step)
    """
    return scores_all(traj, window, clip, probe_step)[kind]


def scores_all(traj, window: int = 20, clip: float = 1e6, probe_step: int | None = None) -> dict:
    """Every readout at once: dict with 'sum', 'final', 'probe' scores and the 'converged' flags."""
    v = normalise(traj, clip)
    if not 1 <= window <= v.shape[1]:
        raise ValueError(f"window must be in [1, {v.shape[1]}], got {window}")
    conv = converged(v, window)
    recip = 1.0 / np.maximum(v, 1.0 / clip)
    s_sum = np.where(conv, -v.sum(axis=1), recip.sum(axis=1))
    k = v.shape[1] - 1 if probe_step is None else probe_step
    return {
        "sum": s_sum,
        "final": _signed_log_magnitude(conv, v[:, -1]),
        "probe": _signed_log_magnitude(conv, v[:, k]),
        "converged": conv,
    }
