"""Training cost of a model from its forward FLOPs: the factors the plan and the compile policy share."""
from __future__ import annotations

TRAIN_FACTOR = 3  # training step ~ forward + backward (2 x forward)


def drop_path_factor(spec: dict | None) -> float:
    """Expected share of the full network's training FLOPs under global drop-path: with probability
    global_drop a step runs one random column, whose ops are on average 1/C of the block's (column j has
    2**j of the 2**C - 1). Local drop-path, which skips a few more join inputs, is not counted."""
    if not spec or spec.get("kind", "fractal") != "fractal":
        return 1.0
    c, g = int(spec.get("columns", 1)), float(spec.get("global_drop", 0.5))
    return (1 - g) + g / c
