"""Crash-safe file writes: write to a temporary file in the same folder, fsync, then rename.

Without fsync (`durable=False`, `sync=False`) a write still survives the writer being killed (the kernel
holds it); only an OS crash or power loss can lose it, so callers use that where a lost write is redone.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str, durable: bool = True) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def append_line(path: Path, line: str, sync: bool = True) -> None:
    """Append one line with a single write (and fsync); a crash leaves at most a truncated last line."""
    assert "\n" not in line
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        if sync:
            os.fsync(f.fileno())


def sync_file(path: Path) -> None:
    """fsync what earlier unsynced writes left in `path` (nothing if it does not exist)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
