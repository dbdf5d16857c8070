"""CIFAR-10 for training: locate it and decode it once to uint8 arrays (the batches: `batches.py`).

Where the data comes from, in order:
1. `--data-dir` / the environment variable `NN_GPT_FRACTAL_CIFAR`: a `cifar-10-batches-py` folder or its
   parent; shortened copies (md5 differs from the official files) are fine, no integrity check is made.
2. `<LEMUR root>/data/cifar-10-batches-py`, where nn-dataset's CIFAR-10 loader keeps it.
3. Otherwise torchvision downloads it there, as nn-dataset's loader does (`download=True`); offline that
   fails with a `DataError` saying where to put the files.

`prepare()` (trusted driver side) decodes the pickled batches once into `.npy` files in a cache folder;
training processes only memory-map those (`allow_pickle=False`), they never unpickle anything.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import importlib.util
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..util.paths import lemur_root

DATA_ENV = "NN_GPT_FRACTAL_CIFAR"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
TRANSFORMS = {"norm_flip": True, "norm": False}  # fast-path transforms -> random horizontal flip?


class DataError(OSError):
    """The data cannot be found, downloaded or read."""


LOADER = "ab.nn.loader.cifar-10"
NORM_NAMES = ("__norm_mean", "__norm_dev")


def lemur_norm() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) from nn-dataset's CIFAR-10 loader module (`ab/nn/loader/cifar-10.py`): read from its
    source as literals (importing it imports torchvision, 1.3 s of every sweep's start), else imported."""
    spec = importlib.util.find_spec(LOADER)
    try:
        tree = ast.parse(Path(spec.origin).read_text())
        found = {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                 for t in node.targets if isinstance(t, ast.Name) and t.id in NORM_NAMES}
        return tuple(map(float, found[NORM_NAMES[0]])), tuple(map(float, found[NORM_NAMES[1]]))
    except (OSError, SyntaxError, ValueError, KeyError, TypeError, AttributeError):
        return lemur_norm_imported()


def lemur_norm_imported() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The same constants by importing the loader module."""
    with contextlib.redirect_stdout(io.StringIO()):  # ab.nn.util.Const prints the LEMUR root
        mod = importlib.import_module(LOADER)
    # module-level dunder-prefixed names are not mangled: plain attribute look-up works
    return tuple(getattr(mod, NORM_NAMES[0])), tuple(getattr(mod, NORM_NAMES[1]))


def _as_batches_dir(path: Path) -> Path | None:
    path = Path(path).expanduser()
    for cand in (path, path / FOLDER):
        if (cand / TEST_FILE).is_file() and all((cand / f).is_file() for f in TRAIN_FILES):
            return cand.resolve()
    return None


def locate(data_dir: str | Path | None = None, root: Path | None = None, download: bool = True) -> Path:
    """The `cifar-10-batches-py` folder to use (see the module docstring for the order)."""
    explicit = data_dir or os.environ.get(DATA_ENV)
    if explicit:
        found = _as_batches_dir(Path(explicit))
        if found is None:
            raise DataError(f"no CIFAR-10 batches in {explicit} (expected {FOLDER}/ with "
                            f"{', '.join(TRAIN_FILES[:1])}..{TRAIN_FILES[-1]} and {TEST_FILE})")
        return found
    lemur_data = (root or lemur_root()) / "data"
    found = _as_batches_dir(lemur_data)
    if found is not None:
        return found
    if download:
        try:
            import torchvision

            for train in (True, False):  # what nn-dataset's loader does, minus the transform
                torchvision.datasets.CIFAR10(root=str(lemur_data), train=train, download=True)
        except Exception as e:  # noqa: BLE001 - offline is URLError, a bad mirror anything else
            raise DataError(f"CIFAR-10 is not under {lemur_data / FOLDER} and downloading it failed "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); put the "
                            f"python-version batches there, or pass --data-dir / set {DATA_ENV} to a "
                            f"{FOLDER} folder") from None
        found = _as_batches_dir(lemur_data)
        if found is not None:
            return found
    raise DataError(f"CIFAR-10 is not under {lemur_data / FOLDER}; put the python-version batches there, "
                    f"or pass --data-dir / set {DATA_ENV} to a {FOLDER} folder")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="latin1")
    x = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    y = np.asarray(d.get("labels", d.get("fine_labels")), dtype=np.int64)
    if len(x) != len(y):
        raise DataError(f"{path}: {len(x)} images but {len(y)} labels")
    return x, y


def _fingerprint(folder: Path) -> str:
    h = hashlib.sha256(str(folder).encode())
    for name in TRAIN_FILES + (TEST_FILE,):
        st = (folder / name).stat()
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Prepared:
    """Paths of the decoded arrays; plain strings so it travels as JSON to a training process."""

    source: str
    train_x: str
    train_y: str
    test_x: str
    test_y: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def prepare(batches: Path, cache_root: Path) -> Prepared:
    """Decode the pickled batches once into .npy files under cache_root (reused while the source is unchanged)."""
    batches = Path(batches)
    folder = Path(cache_root) / f"cifar-10-{_fingerprint(batches)}"
    names = ("train_x", "train_y", "test_x", "test_y")
    paths = {n: folder / f"{n}.npy" for n in names}
    if not all(p.exists() for p in paths.values()):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            parts = [_read_batch(batches / f) for f in TRAIN_FILES]
            arrays = {"train_x": np.concatenate([p[0] for p in parts]),
                      "train_y": np.concatenate([p[1] for p in parts])}
            arrays["test_x"], arrays["test_y"] = _read_batch(batches / TEST_FILE)
        except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
            raise DataError(f"cannot read CIFAR-10 batches in {batches}: {e}") from None
        for n in names:  # each file atomically: temp name, then rename
            tmp = folder / f".{n}.{os.getpid()}.npy"
            np.save(tmp, arrays[n])
            os.replace(tmp, paths[n])
    return Prepared(str(batches), *(str(paths[n]) for n in names))
