"""Where things live: the LEMUR root and the folders under it.

The LEMUR root follows nn-dataset's rule (the first directory from the current one upwards that holds
both `ab/` and `README.md`, else the current directory), computed here without importing
`ab.nn.util.Const`, which prints on import. `NN_GPT_FRACTAL_ROOT` overrides it.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "NN_GPT_FRACTAL_ROOT"


def lemur_root(start: Path | None = None) -> Path:
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).absolute()
    here = (start or Path.cwd()).absolute()
    for d in (here, *here.parents):
        if (d / "ab").exists() and (d / "README.md").exists():
            return d
    return here


def models_dir(root: Path | None = None) -> Path:
    """Default output of the generator and default input of NNEval."""
    return (root or lemur_root()) / "out" / "fractal"


def new_lemur_dir(root: Path | None = None) -> Path:
    """LEMUR-format results (nn/ and stat/train/), as the paper names it."""
    return (root or lemur_root()) / "new_lemur"
