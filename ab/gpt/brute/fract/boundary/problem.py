"""Random data, targets, initial weights and minibatch order for the tiny-network experiment.

Draws come from numpy's SeedSequence-based generators so that a pixel's problem depends only on
(seed, pixel index), never on tiling or chunking: shared mode uses entropy [seed, 0, 0] for every
pixel, per-pixel mode [seed, 0, 1 + pixel index]; the minibatch order uses [seed, 1, 0].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Problem:
    """Inputs X (n, w), targets y (n,), init W1 (w_in, w_out), W2 (w,); a leading pixel axis B when per pixel."""

    X: np.ndarray
    y: np.ndarray
    W1: np.ndarray
    W2: np.ndarray

    @property
    def per_pixel(self) -> bool:
        return self.X.ndim == 3


def _draw(rng: np.random.Generator, n: int, w: int):
    X = rng.standard_normal((n, w))
    y = rng.standard_normal(n)
    W1 = rng.standard_normal((w, w))
    W2 = rng.standard_normal(w)
    return X, y, W1, W2


def make_problem(n: int, width: int, seed: int, pixel_index: np.ndarray | None = None) -> Problem:
    """Shared problem when pixel_index is None, else one problem per listed global pixel index."""
    if pixel_index is None:
        return Problem(*_draw(np.random.default_rng([seed, 0, 0]), n, width))
    parts = [_draw(np.random.default_rng([seed, 0, 1 + int(p)]), n, width) for p in pixel_index]
    return Problem(*(np.stack(a) for a in zip(*parts)))


def batch_order(n: int, batch_size: int | None, steps: int, seed: int) -> np.ndarray | None:
    """(steps, batch_size) sample indices: a stream of per-epoch permutations; None for full batch."""
    if batch_size is None or batch_size >= n:
        return None
    rng = np.random.default_rng([seed, 1, 0])
    need = steps * batch_size
    stream = np.concatenate([rng.permutation(n) for _ in range(-(-need // n))])
    return stream[:need].reshape(steps, batch_size)
