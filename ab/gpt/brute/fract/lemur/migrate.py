"""Rename outputs of the old `_` naming scheme to nn-dataset's grammar, idempotently and losing nothing.

    python -m ab.gpt.brute.fract.lemur migrate [--models out/fractal] [--results new_lemur] [--db db/ab.nn.db]

Old names (`FractalNet_N2_C3_..._<hash>`) become `names.migrated_name(old)` (`FractalNet-N2-C3-...-<hash>`,
the name today's code gives the same spec). Per model, each step is a rename or an atomic rewrite, so an
interrupted migration simply continues when run again, and a second run finds nothing to do:

- models folder: `<old>.py` -> `<new>.py` (content unchanged, so the manifest's code hash still holds),
  manifest records' `name` and `file`;
- results folder: `nn/<old>.py`, `stat/train/<config of old>/` (each trial's `model` renamed, and our own
  measurements of the old format moved under `nn_gpt_fractal`, where nn-dataset's import does not make them
  hyperparameters; every recorded value is kept), `runs/<old>.json` (its `name`), `ckpt/<old>_seed<k>.pt`,
  an unfinished trial's `.work/<old>/`;
- DB: in one transaction per model, its rows under the old name are removed and registered again from
  its migrated stat files (which hold everything those rows held); a model with DB rows but no stat
  files keeps its rows, renamed in place.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..util.atomic import write_text
from ..util.dbfile import connect_existing
from .names import is_lemur_name, migrated_name
from .stats import EXTRA, stat_dir
from .register import LemurDB

OLD_EXTRA_KEYS = ("peak_memory_mb", "images_per_s", "epoch_time_s", "amp", "checkpointing", "channels_last", "seed",
                  "device")
OLD_SPEC_NAME = re.compile(r"(FractalNet|PlainNet)_[A-Za-z0-9_]+_[0-9a-f]{10}")
CONFIG_PREFIX = "img-classification_cifar-10_acc_"


class MigrationError(ValueError):
    pass


@dataclass
class Report:
    renamed: dict[str, str] = field(default_factory=dict)  # old -> new, every model touched
    files: int = 0
    manifest_records: int = 0
    stat_folders: int = 0
    runs: int = 0
    db_models: int = 0

    def line(self) -> str:
        if not self.renamed:
            return "nothing to migrate: every name is already in nn-dataset's grammar"
        return (f"migrated {len(self.renamed)} model names: {self.files} model files, {self.manifest_records} "
                f"manifest records, {self.stat_folders} stat folders, {self.runs} run records, "
                f"{self.db_models} models in the DB")


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise MigrationError(f"{path} is not valid JSON ({e}); restore it or move it aside, then rerun") from None


def _rename(src: Path, dst: Path) -> bool:
    if not src.exists():
        return False
    if dst.exists():
        raise MigrationError(f"both {src} and {dst} exist: keep the one you want, move the other aside, rerun")
    os.replace(src, dst)
    return True


def upgrade_trial(trial: dict, new: str) -> dict:
    """A trial of the old stat format with the new name; our measurements go under EXTRA (values kept)."""
    out = {k: v for k, v in trial.items() if k not in OLD_EXTRA_KEYS}
    extra = {k: trial[k] for k in OLD_EXTRA_KEYS if k in trial}
    if extra:
        out[EXTRA] = {**extra, **trial.get(EXTRA, {})}
    if "model" in out:
        out["model"] = new
    return out


def migrate_models(folder: Path, report: Report) -> None:
    if not folder.is_dir():
        return
    for p in sorted(folder.glob("*.py")):
        if not is_lemur_name(p.stem) and p.name != "__init__.py" and not p.name.startswith("."):
            new = migrated_name(p.stem)
            report.files += _rename(p, folder / f"{new}.py")
            report.renamed[p.stem] = new
    manifest = folder / "manifest.jsonl"
    if manifest.exists():
        lines, changed = [], 0
        raw = manifest.read_text()
        for line in raw.splitlines():
            try:
                rec = json.loads(line) if line.strip() else None
            except ValueError:
                raise MigrationError(f"{manifest} has a line that is not JSON; restore it, then rerun") from None
            if isinstance(rec, dict) and isinstance(rec.get("name"), str) and not is_lemur_name(rec["name"]):
                new = migrated_name(rec["name"])
                report.renamed.setdefault(rec["name"], new)
                rec["name"] = new
                if rec.get("file"):
                    rec["file"] = f"{new}.py"
                changed += 1
                line = json.dumps(rec, sort_keys=True)
            lines.append(line)
        if changed:
            write_text(manifest, "".join(f"{l}\n" for l in lines))
            report.manifest_records += changed


def _old_names_in_results(out: Path) -> set[str]:
    names = set()
    for sub, pattern in (("nn", "*.py"), ("runs", "*.json")):
        names |= {p.stem for p in (out / sub).glob(pattern)} if (out / sub).is_dir() else set()
    train = out / "stat" / "train"
    if train.is_dir():
        names |= {d.name[len(CONFIG_PREFIX):] for d in train.iterdir() if d.name.startswith(CONFIG_PREFIX)}
    if (out / ".work").is_dir():
        names |= {d.name for d in (out / ".work").iterdir() if d.is_dir()}
    return {n for n in names if not is_lemur_name(n)}


def migrate_results(out: Path, report: Report) -> None:
    if not out.is_dir():
        return
    for old in sorted(_old_names_in_results(out)):
        new = migrated_name(old)
        report.renamed[old] = new
        _rename(out / "nn" / f"{old}.py", out / "nn" / f"{new}.py")
        old_stat = out / "stat" / "train" / f"{CONFIG_PREFIX}{old}"
        if old_stat.is_dir():
            for f in sorted(old_stat.glob("*.json")):
                trials = _load(f)
                upgraded = [upgrade_trial(t, new) for t in trials]
                if upgraded != trials:
                    write_text(f, json.dumps(upgraded, indent=4))
            report.stat_folders += _rename(old_stat, stat_dir(out, new))
        run = out / "runs" / f"{old}.json"
        if run.exists():
            rec = _load(run)
            if rec.get("name") != new:
                rec["name"] = new
                write_text(run, json.dumps(rec, indent=2, sort_keys=True) + "\n")
            report.runs += _rename(run, out / "runs" / f"{new}.json")
        _rename(out / ".work" / old, out / ".work" / new)
        for ckpt in sorted((out / "ckpt").glob(f"{old}_seed*.pt")) if (out / "ckpt").is_dir() else []:
            _rename(ckpt, ckpt.with_name(new + ckpt.name[len(old):]))


def db_old_names(db_file: Path, known: set[str]) -> list[str]:
    con = connect_existing(db_file)
    try:
        names = {r[0] for r in con.execute("SELECT name FROM nn")} | {r[0] for r in con.execute("SELECT DISTINCT nn FROM stat")}
    finally:
        con.close()
    return sorted(n for n in names if not is_lemur_name(n) and (n in known or OLD_SPEC_NAME.fullmatch(n)))


def migrate_db(db_file: Path, out: Path, report: Report) -> None:
    db = LemurDB(db_file)  # checks the file first (DBError names it)
    for old in db_old_names(db.path, set(report.renamed)):
        new = migrated_name(old)
        report.renamed.setdefault(old, new)
        has_files = (out / "nn" / f"{new}.py").exists() and stat_dir(out, new).is_dir()
        with contextlib.redirect_stdout(io.StringIO()), db.cursor() as cur:  # one transaction per model
            if has_files:  # the files hold everything the rows hold: register them again under the new name
                cur.execute("SELECT id, prm FROM stat WHERE nn = ?", (old,))
                rows = cur.fetchall()
                for stat_id, _ in rows:
                    cur.execute("DELETE FROM train_stat WHERE stat_id = ?", (stat_id,))
                cur.execute("DELETE FROM stat WHERE nn = ?", (old,))
                for uid in {uid for _, uid in rows}:
                    cur.execute("SELECT 1 FROM stat WHERE prm = ? LIMIT 1", (uid,))
                    if cur.fetchone() is None:
                        cur.execute("DELETE FROM prm WHERE uid = ?", (uid,))
                cur.execute("DELETE FROM nn WHERE name = ?", (old,))
                db.register_rows(cur, out, new)
            else:
                cur.execute("UPDATE stat SET nn = ? WHERE nn = ?", (new, old))
                cur.execute("UPDATE nn SET name = ? WHERE name = ?", (new, old))
        report.db_models += 1


def migrate(models: Path | None, results: Path | None, db_file: Path | None) -> Report:
    report = Report()
    if models is not None:
        migrate_models(Path(models), report)
    if results is not None:
        migrate_results(Path(results), report)
    if db_file is not None and Path(db_file).exists():
        migrate_db(Path(db_file), Path(results) if results else Path("new_lemur"), report)
    return report
