"""The per-machine tuning cache: one JSON file of measured figures and decisions, keyed by
(device model, torch version, shape class, batch). Readers see whole files only (atomic replace); writers
take a lock so parallel probes do not drop each other's entries."""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

from ..util.atomic import write_json

CACHE_ENV = "NN_GPT_FRACTAL_TUNE_CACHE"
VERSION = 1


class CacheError(ValueError):
    pass


def default_path() -> Path:
    """$NN_GPT_FRACTAL_TUNE_CACHE, else $XDG_CACHE_HOME (~/.cache)/nn-gpt-fractal/tune.json."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "nn-gpt-fractal" / "tune.json"


class TuneCache:
    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path else default_path()

    def load(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("entries"), dict):
                raise ValueError("not a tuning cache of this version")
        except ValueError as e:
            raise CacheError(f"tuning cache {self.path} is unreadable ({e}); delete it to probe again") from None
        return data["entries"]

    def get(self, kind: str, key: str) -> dict | None:
        return self.load().get(f"{kind} | {key}")

    @contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def put(self, kind: str, key: str, entry: dict) -> None:
        with self._locked():
            entries = self.load()
            entries[f"{kind} | {key}"] = entry
            write_json(self.path, {"version": VERSION, "entries": entries})

    def get_or_measure(self, kind: str, key: str, measure, again=None) -> tuple[dict, bool]:
        """(entry, cached): the cached entry, else `measure()` stored under the key (once, under the lock).
        With `again(entry)` true for a cached entry, `measure(entry)` is called with it and its result
        replaces it (a noisy probe measured again on a later run)."""
        full = f"{kind} | {key}"
        hit = self.get(kind, key)
        if hit is not None and not (again and again(hit)):
            return hit, True
        with self._locked():
            hit = self.load().get(full)
            if hit is not None and not (again and again(hit)):
                return hit, True
            entry = measure(hit) if again else measure()
            entries = self.load()
            entries[full] = entry
            write_json(self.path, {"version": VERSION, "entries": entries})
            return entry, False
