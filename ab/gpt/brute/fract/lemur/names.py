"""Model and result names in nn-dataset's grammar.

nn-dataset names a training pipeline `task_dataset_metric_nn` and splits it on `_`
(`ab.nn.util.Util.conf_to_names`), so a model name must hold no `_`. Ours are the paper's
`FractalNet-[configuration]`: hyphen-separated configuration tokens plus the spec hash, e.g.
`FractalNet-N3-C4-w64-conv3x3-bn-relu-drop0p2-mean-maxpool-gap-1a2b3c4d5e`. Every name is also a valid
file name; nn-dataset imports it with importlib (`ab.nn.nn.<name>`), which accepts `-`.
"""
from __future__ import annotations

import re

TASK, DATASET, METRIC = "img-classification", "cifar-10", "acc"
SPLITTER = "_"  # nn-dataset's config_splitter
NAME_RE = re.compile(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*")


def token(text: str) -> str:
    """One name token: letters, digits and `-` only (anything else, `_` included, becomes `-`)."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9]+", "-", str(text))).strip("-")


def num(x: float) -> str:
    """0.2 -> 0p2, 1e-05 -> 1em05: numbers without `.` or `-`."""
    return f"{x:g}".replace(".", "p").replace("-", "m")


def join(parts) -> str:
    return "-".join(t for t in (token(p) for p in parts) if t)


def code_model_name(stem: str, key: str) -> str:
    """Name of a generated file that has no spec (e.g. LLM code): its stem plus its content key (the old
    scheme's name with `-` for `_`, so `migrated_name` maps old names onto these)."""
    return token(f"{re.sub(r'[^A-Za-z0-9_]', '_', stem)[:80] or 'Model'}_{key}")


def is_lemur_name(name: str) -> bool:
    return bool(NAME_RE.fullmatch(name)) and SPLITTER not in name


def check_name(name: str) -> str:
    if not is_lemur_name(name):
        raise ValueError(f"model name {name!r} is not in nn-dataset's grammar (letters, digits, '-', "
                         f"no '_'); run: python -m ab.gpt.brute.fract.lemur migrate")
    return name


def config_name(model: str, task: str = TASK, dataset: str = DATASET, metric: str = METRIC) -> str:
    """nn-dataset's pipeline name `task_dataset_metric_nn`, e.g. img-classification_cifar-10_acc_<Model>:
    the stat folder name and what `python -m ab.nn.train -c` selects."""
    return SPLITTER.join((task, dataset, metric, check_name(model)))


def migrated_name(old: str) -> str:
    """The new name of a model named by the old `_` scheme (unchanged for a name already in the grammar).

    Old names joined configuration tokens with `_` and replaced other characters by `_`; turning every
    run of `_` into `-` keeps each token and the trailing hash, so the mapping is one-to-one on names the
    old code produced."""
    if is_lemur_name(old):
        return old
    return token(old)
