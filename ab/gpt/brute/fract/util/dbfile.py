"""Opening an existing SQLite file for reading without ever creating one."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def connect_existing(path: Path) -> sqlite3.Connection:
    """A connection to the SQLite file at `path` (never created here). Read-write where the file and its
    folder are writable: a writer killed mid-transaction leaves a hot journal, which only a read-write
    connection can roll back (a read-only one fails with "attempt to write a readonly database").
    Read-only otherwise."""
    path = Path(path).absolute()
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    return sqlite3.connect(f"file:{path}?mode={'rw' if writable else 'ro'}", uri=True)
