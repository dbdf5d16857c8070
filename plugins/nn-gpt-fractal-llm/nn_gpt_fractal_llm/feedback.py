"""Feedback for the prompt: what earlier models achieved and why others failed.

Sources: NNEval's run files `new_lemur/runs/<Model>.json`, the generator's `manifest.jsonl` (invalid and
duplicate proposals with their reasons) and the LEMUR SQLite DB (`stat` table), opened read-only.
Unreadable files are skipped and counted, never fatal.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

from ab.gpt.brute.fract.generation.manifest import MANIFEST
from ab.gpt.brute.fract.space.spec import ArchSpec, SpecError

CHANCE = 0.12  # CIFAR-10 accuracy at or below this counts as "did not learn"


@dataclass
class Result:
    name: str
    status: str
    accuracy: float | None = None
    epochs: int = 0
    reason: str = ""
    spec: dict | None = None
    source: str = ""

    @property
    def spec_json(self) -> str:
        if not self.spec:
            return ""
        shown = {k: v for k, v in self.spec.items() if k != "spec_version"}
        return json.dumps(shown, sort_keys=True, separators=(", ", ": "))


@dataclass
class Feedback:
    best: list[Result] = field(default_factory=list)
    failures: list[Result] = field(default_factory=list)
    existing: int = 0  # proposals already on record (manifest keys and evaluated runs)
    seen: set[str] = field(default_factory=set)  # spec hashes and code keys that exist
    status: dict[str, str] = field(default_factory=dict)  # manifest key -> latest status
    skipped_files: int = 0


def _spec_hash(spec: dict | None) -> str | None:
    try:
        return ArchSpec.from_dict(spec).spec_hash if isinstance(spec, dict) else None
    except (SpecError, TypeError, ValueError):
        return None


def read_manifest(out_dir: Path | None) -> list[dict]:
    path = Path(out_dir) / MANIFEST if out_dir else None
    if path is None or not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "status" in rec:
            records.append(rec)
    return records


def read_runs(new_lemur: Path | None) -> tuple[list[Result], int]:
    """(results, unreadable files) from NNEval's `runs/<Model>.json`; accuracy is the mean over seeds
    of each seed's last epoch."""
    folder = Path(new_lemur) / "runs" if new_lemur else None
    if folder is None or not folder.is_dir():
        return [], 0
    out, bad = [], 0
    for path in sorted(folder.glob("*.json")):
        try:
            d = json.loads(path.read_text())
            finals, epochs = [], 0
            for s in d.get("seeds") or []:
                eps = [e for e in s.get("epochs") or [] if isinstance(e.get("accuracy"), (int, float))]
                if eps:
                    finals.append(float(eps[-1]["accuracy"]))
                    epochs = max(epochs, int(eps[-1].get("epoch", len(eps))))
            out.append(Result(name=str(d.get("name", path.stem)), status=str(d.get("status", "unknown")),
                              accuracy=mean(finals) if finals else None, epochs=epochs,
                              reason=str(d.get("message") or ""), spec=d.get("spec") or None,
                              source="new_lemur"))
        except (OSError, ValueError, TypeError, AttributeError):
            bad += 1
    return out, bad


def read_db(db_path: Path | None, prefixes: tuple[str, ...] = ("FractalNet",), task: str = "img-classification",
            dataset: str = "cifar-10", k: int = 10) -> list[Result]:
    """Best accuracy per model from the LEMUR DB `stat` table, for names with one of `prefixes`."""
    if db_path is None or not Path(db_path).is_file():
        return []
    where = " OR ".join("nn LIKE ?" for _ in prefixes)
    query = (f"SELECT nn, MAX(accuracy), MAX(epoch) FROM stat WHERE task = ? AND dataset = ? AND ({where}) "
             f"GROUP BY nn ORDER BY MAX(accuracy) DESC LIMIT ?")
    try:
        con = sqlite3.connect(f"file:{Path(db_path).absolute()}?mode=ro", uri=True)
        try:
            rows = con.execute(query, (task, dataset, *[p + "%" for p in prefixes], k)).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []
    return [Result(name=n, status="trained", accuracy=float(a), epochs=int(e or 0), source="lemur-db")
            for n, a, e in rows if a is not None]


def collect(out_dir: Path | None, new_lemur: Path | None, db_path: Path | None, *, best_k: int = 5,
            failures_k: int = 8) -> Feedback:
    fb = Feedback()
    records = read_manifest(out_dir)
    by_name = {r.get("name"): r for r in records}
    for r in records:
        key = str(r.get("spec_hash", ""))
        if key and not key.startswith("llm-"):
            fb.seen.add(key)
            fb.status[key] = str(r.get("status"))
    runs, fb.skipped_files = read_runs(new_lemur)
    for run in runs:
        if run.spec is None and isinstance(by_name.get(run.name, {}).get("spec"), dict):
            run.spec = by_name[run.name]["spec"]
        h = _spec_hash(run.spec)
        if h:
            fb.seen.add(h)
    fb.existing = len(fb.seen)

    trained = [r for r in runs if r.status == "trained" and r.accuracy is not None and r.accuracy > CHANCE]
    db = [r for r in read_db(db_path) if r.name not in {t.name for t in trained}]
    for r in db:
        if isinstance(by_name.get(r.name, {}).get("spec"), dict):
            r.spec = by_name[r.name]["spec"]
    fb.best = sorted(trained + db, key=lambda r: -(r.accuracy or 0.0))[:best_k]

    failures = [r for r in runs if r.status != "trained"]
    failures += [Result(r.name, "trained", r.accuracy, r.epochs, f"stayed at chance accuracy ({r.accuracy:.3f})",
                        r.spec, r.source) for r in runs
                 if r.status == "trained" and r.accuracy is not None and r.accuracy <= CHANCE]
    bad = [r for r in records if r.get("status") in ("invalid", "duplicate")]
    failures += [Result(str(r.get("name")), str(r["status"]), reason=str(r.get("reason", "")),
                        spec=r.get("spec") if isinstance(r.get("spec"), dict) else None, source="manifest")
                 for r in reversed(bad)]  # newest first
    fb.failures = failures[:failures_k]
    return fb
