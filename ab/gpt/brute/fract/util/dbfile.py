"""Opening an existing SQLite file for reading without ever creating one."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def writable(path: Path) -> bool:
    """Whether the file and its folder are writable (SQLite writes its journal beside the file)."""
    path = Path(path).absolute()
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def connect_existing(path: Path) -> sqlite3.Connection:
    """A connection to the SQLite file at `path` (never created here). Read-write where the file and its
    folder are writable: a writer killed mid-transaction leaves a hot journal, which only a read-write
    connection can roll back (a read-only one fails with "attempt to write a readonly database").
    Read-only otherwise."""
    path = Path(path).absolute()
    return sqlite3.connect(f"file:{path}?mode={'rw' if writable(path) else 'ro'}", uri=True)
