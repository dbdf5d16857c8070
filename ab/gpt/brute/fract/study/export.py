"""The study's checked-in data: results.csv (one row per model x seed x budget reached) and the generation
manifest that regenerates every model file byte for byte."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..sweep import results
from ..util.atomic import write_text
from ..generation.generate import file_intact
from ..generation.manifest import Manifest
from .sample import LEVEL_DIMS, levels

COLUMNS = ("model", "kind", "stage", "eval", "seed", "epochs", "accuracy", "status", "params", "flops",
           "channels") + LEVEL_DIMS + ("plain_layers",)


def rows(folder: Path, stage: str, evaluation: str, budgets: tuple[int, ...]) -> list[dict]:
    """Rows of one sweep's run records: each seed's accuracy at every budget in `budgets` it reached (a
    failed seed: one row at the epochs it finished, accuracy empty)."""
    out = []
    for r in results.load_runs(folder):
        spec = r.get("spec") or {}
        dims = levels(spec) if spec else {}
        for s in r["seeds"]:
            base = {"model": r["name"], "kind": spec.get("kind", ""), "stage": stage, "eval": evaluation,
                    "seed": s["seed"], "params": s.get("params"), "flops": s.get("flops"),
                    "channels": "-".join(map(str, spec.get("channels", []))),
                    "plain_layers": spec.get("plain_layers") or "", **dims}
            epochs = s.get("epochs") or []
            reached = [b for b in budgets if len(epochs) >= b]
            for b in reached:  # a seed that failed later still reached this budget
                ok = s["status"] == "trained" or len(epochs) > b
                out.append({**base, "epochs": b, "accuracy": _acc(epochs[b - 1]),
                            "status": "trained" if ok else s["status"]})
            if s["status"] != "trained" and len(epochs) not in reached:
                out.append({**base, "epochs": len(epochs), "accuracy": _acc(epochs[-1]) if epochs else "",
                            "status": s["status"]})
    return out


def _acc(epoch: dict) -> str:
    acc = epoch.get("accuracy")
    return "" if acc is None else f"{acc:.6f}"


def write_csv(path: Path, table: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in sorted(table, key=lambda r: (r["stage"], r["eval"], r["model"], r["seed"], r["epochs"])):
        w.writerow({k: row.get(k, "") for k in COLUMNS})
    write_text(path, buf.getvalue())


def write_manifest(dest: Path, folders: list[Path]) -> int:
    """The valid records of the generation folders (sample and twins), in order: enough for
    `study run` to render every model file again; the file hashes check the result byte for byte."""
    lines = []
    for folder in folders:
        for r in Manifest.load(folder).valid():
            if file_intact(folder, r):
                lines.append(r)
    write_text(dest, "".join(json.dumps({k: v for k, v in r.items() if k != "created"}, sort_keys=True) + "\n"
                             for r in lines))
    return len(lines)

