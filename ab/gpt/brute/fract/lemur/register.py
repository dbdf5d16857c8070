"""Registration of evaluated models into the LEMUR dataset through nn-dataset's own DB code and schema.

`LemurDB(path)` points nn-dataset at an SQLite file (default `<LEMUR root>/db/ab.nn.db`): it sets the DB
path in nn-dataset's modules before `ab.nn.util.db.Write` is imported (that import would otherwise
download the DB from the hub when the file is missing). With no file it creates an empty one with
nn-dataset's `init_db()` schema and says so, unless asked to fetch the full LEMUR DB (`fetch=True`,
online: nn-dataset's `init_population()`). Offline it never touches the network (`HF_HUB_OFFLINE=1`).
An existing file that is not a readable, writable LEMUR DB (empty, corrupt, truncated, read-only) is a
`DBError` naming the file and what to do, raised before anything is written.

`register(out, name)` stores in one transaction what nn-dataset's own JSON import
(`ab.nn.util.db.Write.json_train_to_db`) stores from `out/stat/train/<config>/<epoch>.json`: the model
code (`nn`), the `acc` metric code (`metric`, this package's `lemur/metric.py`, unless the DB has one),
the transform code (`transform`) and, per trial, `save_stat` (`stat`, `prm`, `train_stat`), after the
importer's own filtering (`stats.importable`). It is idempotent: `stat` and `train_stat` rows are keyed
by content, and each (uid, name, value) `prm` row is kept once (nn-dataset's import repeats a uid's rows
for every epoch and trial; its per-epoch `duration_seconds` and `metric_acc` give a uid several values).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sqlite3
import sys
from pathlib import Path

from ..util.dbfile import connect_existing, writable
from .names import DATASET, METRIC, TASK, check_name
from .stats import importable, stat_dir

_PATH_NAMES = ("db_file", "db_dir", "zst_db_file")
METRIC_FILE = Path(__file__).with_name("metric.py")  # the acc metric code we register (read, not imported)
TABLES = ("nn", "metric", "transform", "prm", "stat", "train_stat")


class DBError(ValueError):
    """The DB file cannot be used; the message names it and says what to do."""


class StatFileError(ValueError):
    """A stat JSON file that cannot be read; the message names it and says what to do."""


def _quiet():
    """nn-dataset prints on import (LEMUR root) and on DB creation; keep our stdout clean."""
    return contextlib.redirect_stdout(io.StringIO())


def _point_modules(db_file: Path) -> None:
    from ab.nn.util import Const

    zst = Path(db_file).parent / Path(Const.zst_db_file).name
    values = {"db_file": Path(db_file), "db_dir": Path(db_file).parent, "zst_db_file": zst}
    for name, mod in list(sys.modules.items()):
        if name == "ab.nn" or name.startswith("ab.nn."):
            for attr in _PATH_NAMES:
                if mod is not None and hasattr(mod, attr):
                    setattr(mod, attr, values[attr])


def check_db_file(path: Path) -> None:
    """Raise DBError unless `path` is a readable, writable SQLite file with nn-dataset's tables."""
    path = Path(path)
    fix = f"move {path} aside (or restore it from a copy) and rerun to create a new one, or pass --db"
    if path.stat().st_size == 0:
        raise DBError(f"LEMUR DB {path} is empty (0 bytes): {fix}")
    try:
        con = connect_existing(path)
        try:
            check = con.execute("PRAGMA quick_check").fetchone()[0]
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise DBError(f"LEMUR DB {path} is not a readable SQLite database ({e}): {fix}") from None
    if check != "ok":
        raise DBError(f"LEMUR DB {path} is damaged ({check.splitlines()[0]}): {fix}")
    missing = [t for t in TABLES if t not in tables]
    if missing:
        raise DBError(f"{path} is not a LEMUR DB (no {', '.join(missing)} table): {fix}")
    if not writable(path):
        raise DBError(f"LEMUR DB {path} is read-only (the file or its folder): make both writable, "
                      f"or pass --db to another file, or --no-register")


def read_trials(out: Path, name: str) -> list[tuple[int, dict]]:
    """(epoch, trial) from one model's stat folder; StatFileError names a file that cannot be read."""
    trials = []
    for f in sorted(stat_dir(out, name).glob("*.json")):
        if not f.stem.isdigit():
            continue
        try:
            items = json.loads(f.read_text())
            if not isinstance(items, list) or not all(isinstance(t, dict) and "uid" in t for t in items):
                raise ValueError("not a list of trials")
        except (OSError, ValueError) as e:
            raise StatFileError(f"stat file {f} is corrupt ({(str(e).splitlines() or [''])[0][:80]}): restore it, "
                                f"or delete {Path(out) / 'runs' / (name + '.json')} to train {name} again") from None
        trials += [(int(f.stem), t) for t in items]
    return trials


class LemurDB:
    """nn-dataset's DB modules, pointed at one SQLite file. `note` says what happened on open."""

    def __init__(self, db_file: Path, fetch: bool = False) -> None:
        self.path = Path(db_file).absolute()
        self.note = ""
        if self.path.exists():
            check_db_file(self.path)
        elif not os.access(self._existing_parent(), os.W_OK):
            raise DBError(f"cannot create the LEMUR DB {self.path}: {self._existing_parent()} is read-only; "
                          f"pass --db to a writable place, or --no-register")
        with _quiet():
            importlib.import_module("ab.nn.util.Const")
            importlib.import_module("ab.nn.util.Util")
            init = importlib.import_module("ab.nn.util.db.Init")
            _point_modules(self.path)
            if not self.path.exists() and fetch:
                os.environ.pop("HF_HUB_OFFLINE", None)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    write = importlib.import_module("ab.nn.util.db.Write")  # runs init_population()
                    _point_modules(self.path)
                    write.init_population()
                    self.note = f"fetched the full LEMUR DB into {self.path}"
                except Exception as e:  # noqa: BLE001 - offline or hub failure: fall back to an empty DB
                    for p in (self.path, Path(str(self.path) + "-journal")):
                        p.unlink(missing_ok=True)
                    self.note = f"could not fetch the LEMUR DB ({type(e).__name__}); "
            if not self.path.exists():
                os.environ["HF_HUB_OFFLINE"] = "1"
                self.path.parent.mkdir(parents=True, exist_ok=True)
                init.init_db()
                self.note += (f"created an empty LEMUR DB with nn-dataset's schema at {self.path}"
                              + ("" if fetch else " (--fetch-lemur-db downloads the full one when online)"))
            elif fetch and not self.note:
                self.note = f"{self.path} exists; --fetch-lemur-db only downloads when there is no DB"
            self.init = init
            self.write = importlib.import_module("ab.nn.util.db.Write")
            _point_modules(self.path)

    def _existing_parent(self) -> Path:
        p = self.path.parent
        while not p.exists():
            p = p.parent
        return p

    @contextlib.contextmanager
    def cursor(self):
        """One locked transaction (nn-dataset's write lock when it has one); commits on success."""
        lock = getattr(self.write, "_db_write_lock", None)
        with (lock() if lock else contextlib.nullcontext()):
            conn, cur = self.init.sql_conn()
            try:
                yield cur
                conn.commit()
            except sqlite3.DatabaseError as e:
                conn.rollback()
                raise DBError(f"LEMUR DB {self.path}: {e}; nothing of this model was written "
                              f"(check the file, or pass --db to another one)") from None
            except BaseException:
                conn.rollback()
                raise
            finally:
                conn.close()

    def _code_rows(self, cur, name: str, code: str, transforms: set[str]) -> None:
        self.write.code_to_db(cur, "nn", code=code, force_name=name)
        cur.execute("SELECT 1 FROM metric WHERE name = ?", (METRIC,))
        if cur.fetchone() is None:  # the full LEMUR DB has its own acc metric: keep it

            self.write.code_to_db(cur, "metric", code=METRIC_FILE.read_text(), force_name=METRIC)
        for tr in sorted(transforms):
            if not (Path(self.write.nn_path("transform")) / f"{tr}.py").exists():
                raise DBError(f"transform {tr!r} is not one of nn-dataset's transforms "
                              f"({self.write.nn_path('transform')}); evaluate with --transform norm_flip")
            self.write.populate_code_table("transform", cur, name=tr)

    def register(self, out: Path, name: str) -> int:
        """Register model `name` from its files under `out`; returns the number of new stat rows."""
        with _quiet(), self.cursor() as cur:
            return self.register_rows(cur, out, name)

    def register_rows(self, cur, out: Path, name: str) -> int:
        """`register` inside the caller's transaction."""
        check_name(name)
        code_file = Path(out) / "nn" / f"{name}.py"
        if not code_file.exists() or not stat_dir(out, name).is_dir():
            return 0
        trials = read_trials(out, name)
        cur.execute("SELECT COUNT(*) FROM stat WHERE nn = ?", (name,))
        before = cur.fetchone()[0]
        self._code_rows(cur, name, code_file.read_text(), {t["transform"] for _, t in trials if t.get("transform")})
        for epoch, trial in trials:
            t = importable(trial)
            cur.execute("SELECT 1 FROM prm WHERE uid = ? LIMIT 1", (t["uid"],))
            had_prm = cur.fetchone() is not None
            self.write.save_stat((TASK, DATASET, METRIC, name, epoch), t, cur)
            if had_prm:  # save_stat inserted this uid's rows again: keep each (name, value) once
                cur.execute("DELETE FROM prm WHERE uid = ? AND rowid NOT IN "
                            "(SELECT MIN(rowid) FROM prm WHERE uid = ? GROUP BY name, value)", (t["uid"], t["uid"]))
        cur.execute("SELECT COUNT(*) FROM stat WHERE nn = ?", (name,))
        return cur.fetchone()[0] - before

    def registered(self) -> int:
        """Models with at least one stat row in the DB."""
        with self.cursor() as cur:
            cur.execute("SELECT COUNT(DISTINCT nn) FROM stat")
            return cur.fetchone()[0]

    def counts(self, name: str) -> dict[str, int]:
        """Rows about model `name` per table (for checks)."""
        with self.cursor() as cur:
            out = {}
            for table, col in (("nn", "name"), ("stat", "nn")):
                cur.execute(f"SELECT COUNT(*) FROM {table} WHERE {col} = ?", (name,))
                out[table] = cur.fetchone()[0]
            cur.execute("SELECT COUNT(*) FROM prm WHERE uid IN (SELECT prm FROM stat WHERE nn = ?)", (name,))
            out["prm"] = cur.fetchone()[0]
            cur.execute("SELECT COUNT(*) FROM train_stat WHERE stat_id IN (SELECT id FROM stat WHERE nn = ?)", (name,))
            out["train_stat"] = cur.fetchone()[0]
        return out
