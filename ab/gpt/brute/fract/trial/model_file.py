"""How a trial loads a model file: imported under a fresh module name, then dropped from sys.modules."""
from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

_counter = itertools.count()


class ContractError(ValueError):
    """The model breaks the LEMUR model contract."""


def import_isolated(path: str | Path):
    """Import a model file under a fresh module name; it is removed from sys.modules afterwards."""
    name = f"_fractal_candidate_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, str(path))
    if spec is None or spec.loader is None:
        raise ContractError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module
