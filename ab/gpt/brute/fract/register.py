"""Registration of evaluated models into the LEMUR dataset through nn-dataset's own DB code and schema.

`LemurDB(path)` points nn-dataset at an SQLite file (default `<LEMUR root>/db/ab.nn.db`): it sets the DB
path in nn-dataset's modules before `ab.nn.util.db.Write` is imported (that import would otherwise
download the DB from the hub when the file is missing). With no file it creates an empty one with
nn-dataset's `init_db()` schema and says so, unless asked to fetch the full LEMUR DB (`fetch=True`,
online: nn-dataset's `init_population()`). Offline it never touches the network (`HF_HUB_OFFLINE=1`).

`register(out, name)` stores a model's code (`nn` table, under our name via `code_to_db(force_name=...)`)
and each finished (epoch, seed) from its stat JSON files (`save_stat`: `stat`, `prm`, `train_stat`) in one
transaction. It is idempotent: a (model, epoch, uid) already in `stat` is skipped, and the `prm` rows of
a uid are written once (nn-dataset's `save_stat` would repeat them for every epoch).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
from pathlib import Path

from .results import DATASET, METRIC, TASK, stat_dir

_PATH_NAMES = ("db_file", "db_dir", "zst_db_file")


class RegistrationError(RuntimeError):
    pass


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


class LemurDB:
    """nn-dataset's DB modules, pointed at one SQLite file. `note` says what happened on open."""

    def __init__(self, db_file: Path, fetch: bool = False) -> None:
        self.path = Path(db_file).absolute()
        self.note = ""
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
                init.init_db()
                self.note += (f"created an empty LEMUR DB with nn-dataset's schema at {self.path}"
                              + ("" if fetch else " (--fetch-lemur-db downloads the full one when online)"))
            elif fetch and not self.note:
                self.note = f"{self.path} exists; --fetch-lemur-db only downloads when there is no DB"
            self.init = init
            self.write = importlib.import_module("ab.nn.util.db.Write")
            _point_modules(self.path)

    @contextlib.contextmanager
    def cursor(self):
        """One locked transaction (nn-dataset's write lock when it has one); commits on success."""
        lock = getattr(self.write, "_db_write_lock", None)
        with (lock() if lock else contextlib.nullcontext()):
            conn, cur = self.init.sql_conn()
            try:
                yield cur
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                conn.close()

    def register(self, out: Path, name: str) -> int:
        """Register model `name` from its files under `out`; returns the number of new stat rows."""
        code_file = Path(out) / "nn" / f"{name}.py"
        folder = stat_dir(out, name)
        if not code_file.exists() or not folder.is_dir():
            return 0
        trials = []
        for f in folder.glob("*.json"):
            if f.stem.isdigit():
                trials += [(int(f.stem), t) for t in json.loads(f.read_text())]
        added = 0
        with _quiet(), self.cursor() as cur:
            self.write.code_to_db(cur, "nn", code=code_file.read_text(), force_name=name)
            transforms = {t["transform"] for _, t in trials}
            for tr in transforms:
                if (Path(self.write.nn_path("transform")) / f"{tr}.py").exists():
                    self.write.populate_code_table("transform", cur, name=tr)
            for epoch, t in sorted(trials, key=lambda et: (et[0], et[1]["seed"])):
                cur.execute("SELECT 1 FROM stat WHERE nn = ? AND epoch = ? AND prm = ?", (name, epoch, t["uid"]))
                if cur.fetchone():
                    continue
                cur.execute("SELECT 1 FROM prm WHERE uid = ? LIMIT 1", (t["uid"],))
                had_prm = cur.fetchone() is not None
                prm = {"lr": t["lr"], "momentum": t["momentum"], "dropout": t["dropout"], "batch": t["batch"],
                       "epoch": t["epoch_max"], "transform": t["transform"], "seed": t["seed"],
                       "uid": t["uid"], "duration": t["duration"], "accuracy": t["accuracy"],
                       "train_stat": t["train_stat"]}
                self.write.save_stat((TASK, DATASET, METRIC, name, epoch), prm, cur)
                if had_prm:  # save_stat inserted this uid's hyperparameters again
                    cur.execute("DELETE FROM prm WHERE uid = ? AND rowid NOT IN "
                                "(SELECT MIN(rowid) FROM prm WHERE uid = ? GROUP BY name)", (t["uid"], t["uid"]))
                added += 1
        return added

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
