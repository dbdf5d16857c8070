"""`study run`: the stages in order (stages.py), then the study's data, report and findings; `study plan`: the
sample, its coverage and what the training stages will cost here (NNEval's --plan machinery).

Every stage resumes from what its folder holds, so the same command continues an interrupted study and
does nothing new on a finished one (it rebuilds results.csv, the report and the findings, which are cheap).
"""
from __future__ import annotations

import csv
import hashlib
import json
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..util.atomic import write_json
from ..sweep.evaluate import run_sweep
from ..generation.manifest import Manifest, ManifestError
from ..report.build import build_report
from ..sweep import plan as tplan, plan_halving
from ..sweep.halving import sweep_rungs
from . import analysis, export
from .sample import level_counts, space_of
from .spec import StudyError, StudySpec
from .stages import Layout, run_breadth, run_generate, run_seeds, run_select, stage2_names, sweep_config

Say = Callable[[str], None]
MANIFEST_COPY = "manifest.jsonl"  # checked in next to study.toml
DONE = "finished.json"  # under work/: the digest of the inputs the outputs were last built from
OUTPUTS = ("results.csv", MANIFEST_COPY, "analysis/findings.md", "report/breadth/report.html",
           "report/seeds/report.html")


@dataclass
class RunOutcome:
    trained_epochs: int
    wall_s: float
    findings: list[str]


def validation_workers(p) -> int:
    """Jailed validation processes for generation: the protocol's workers, or 2 when those are 'auto'."""
    return p.workers if isinstance(p.workers, int) else 2


def check_regenerated(study: StudySpec, lay: Layout) -> None:
    """A checked-in manifest pins every model file: the regenerated files must hash the same."""
    pinned = study.folder / MANIFEST_COPY
    if not pinned.exists():
        return
    try:
        want = {r["name"]: r["code_hash"] for r in Manifest.load(study.folder).valid()}
    except ManifestError as e:
        raise StudyError(str(e)) from None
    have = {r["name"]: r["code_hash"] for folder in (lay.models, lay.baselines) for r in Manifest.load(folder).valid()}
    wrong = [n for n, h in want.items() if have.get(n) != h]
    if wrong:
        raise StudyError(f"{len(wrong)} model file(s) regenerated differently from {pinned} (e.g. {wrong[0]}): "
                         f"the template or the space changed; run in a fresh work/ folder or restore them")


def run(study: StudySpec, say: Say = print, quiet: bool = True, progress=None) -> RunOutcome:
    started = time.perf_counter()
    space_of(study)  # a bad space is one line before anything starts
    lay = Layout(study.work)
    p = study.protocol
    say(f"study {study.name}: generate")
    sample, chosen = run_generate(study, lay, say, validation_workers(p), progress)
    check_regenerated(study, lay)
    say(f"study {study.name}: breadth (halving over {len(sample)} models)")
    b = run_breadth(study, lay, say, quiet)
    sel = run_select(study, lay, sample, chosen, say)
    say(f"study {study.name}: seeds ({p.seeds} seeds at {p.epochs} epochs for {len(stage2_names(sel))} models, "
        f"deepest column of {len(sel['pairs'])})")
    s2, deep = run_seeds(study, lay, sel, say, quiet)
    trained = b.trained_epochs + sum(len(e["epochs"]) - int(e.get("resumed_epochs") or 0)
                                     for o in (s2, deep) for r in o.records for e in r["seeds"])
    digest = inputs_digest(study, lay)
    done = lay.work / DONE
    previous = json.loads(done.read_text()) if done.exists() else {}
    if previous.get("digest") == digest and all((study.folder / p).exists() for p in OUTPUTS):
        say("nothing changed since the last run: results.csv, the reports and the findings are up to date")
        findings = previous["findings"]
    else:
        findings = finish(study, lay, say)
        write_json(done, {"digest": digest, "findings": findings})
    return RunOutcome(trained, round(time.perf_counter() - started, 1), findings)


def inputs_digest(study: StudySpec, lay: Layout) -> str:
    """What the study's outputs are computed from: the study file, the selection and every run record."""
    h = hashlib.sha256(study.path.read_bytes())
    for folder in (lay.stage1, lay.stage2, lay.deepest):
        for p in sorted((folder / "runs").glob("*.json")):
            h.update(p.name.encode() + p.read_bytes())
    if lay.selection.exists():
        h.update(lay.selection.read_bytes())
    return h.hexdigest()


def finish(study: StudySpec, lay: Layout, say: Say) -> list[str]:
    """results.csv, the manifest copy, the reports of both stages and the findings (README section)."""
    h = study.protocol.halving
    budgets = tuple(h.rungs) + (study.protocol.epochs,)
    table = export.rows(lay.stage1, "breadth", "all", budgets)
    table += export.rows(lay.stage2, "seeds", "all", (h.rungs[0], study.protocol.epochs))
    table += export.rows(lay.deepest, "seeds", "deepest", (study.protocol.epochs,))
    export.write_csv(study.folder / "results.csv", table)
    n = export.write_manifest(study.folder / MANIFEST_COPY, [lay.models, lay.baselines])
    say(f"results.csv: {len(table)} rows; {MANIFEST_COPY}: {n} model records")
    for name, folder, models in (("breadth", lay.stage1, lay.models), ("seeds", lay.stage2, lay.stage2_models)):
        build_report(folder, study.folder / "report" / name, models_dir=models, top=10,
                     title=f"{study.name}: {name} stage")
    return analysis.write(study, study.folder / "results.csv", study.folder, say)


def plan(study: StudySpec, say: Say = print, calibrate: bool = False, progress=None) -> None:
    """Generate the sample (resumable: the real run reuses it), show its coverage and estimate both stages."""
    lay = Layout(study.work)
    p = study.protocol
    sample, chosen = run_generate(study, lay, say, validation_workers(p), progress)
    counts = level_counts([s for _, s in sample])
    say(f"{len(sample)} fractal models; levels (models per level):")
    for dim, c in counts.items():
        say(f"  {dim:<10} " + ", ".join(f"{v}: {n}" for v, n in sorted(c.items(), key=lambda x: str(x[0]))))
    say(f"{len(chosen)} fractal-vs-plain pairs (each with a depth- and a parameter-matched plain twin)")
    rungs = sweep_rungs(p.epochs, p.halving.eta, p.halving.rungs, p.halving.min_keep)
    common = dict(batch=p.batch, train_limit=p.train_limit, test_limit=p.test_limit, data_dir=str(study.data_dir()),
                  device="auto", workers=p.workers, threads=p.threads, checkpointing=False, calibrate=calibrate,
                  echo=say)
    one = tplan.plan_sweep(lay.models, lay.stage1, epochs=p.epochs, seeds=1, **common)
    hp = plan_halving.estimate(one, rungs)
    say("stage 1 (breadth):")
    plan_halving.render(hp, echo=say)
    # stage 2: the pairs (known now) and `top` models like the sample's most expensive finishers
    names = [n for pr in chosen for n in (pr.fractal.name, pr.depth_twin.name, pr.params_twin.name)]
    entries = tplan.entries_from_manifest(lay.models, [n for n in names if n in dict(sample)])
    entries += tplan.entries_from_manifest(lay.baselines, [n for n in names if n not in dict(sample)])
    top_like = sorted(tplan.entries_from_manifest(lay.models), key=lambda e: -(e.flops or 0))[:p.top]
    deepest = tplan.entries_from_manifest(lay.models, [pr.fractal.name for pr in chosen])  # scored again
    rate = (lambda e: one.rates.get(e.group)) if one.rates else None
    seeds = tplan.make_plan(entries + top_like + deepest, p.epochs, p.seeds, one.train_images, one.test_images, rate,
                            one.workers, one.overhead_s)
    say(f"stage 2 (seeds): {len(seeds.rows)} models x {p.seeds} seeds x {p.epochs} epochs "
        f"(the top {p.top} counted as the sample's most expensive: an upper bound)")
    say(f"  compute {tplan._dur(seeds.compute_s)}, wall ~{tplan._dur(seeds.wall_s)} with {p.workers} worker(s)"
        if seeds.rates else f"  {tplan._si(seeds.total_flops, 'FLOP')} (no calibration: FLOPs only; --calibrate "
                            f"measures this machine)")



def verify(study: StudySpec, rows: int, say: Say = print, seed: int = 0) -> list[dict]:
    """Retrain `rows` rows of results.csv (trained rows at the final budget, picked with `seed`) from scratch in
    a fresh folder with the recorded protocol and seed, and compare their accuracy with the recorded one."""
    lay = Layout(study.work)
    with open(study.folder / "results.csv", newline="") as f:
        table = [r for r in csv.DictReader(f) if r["status"] == "trained" and r["accuracy"]
                 and int(r["epochs"]) == study.protocol.epochs]
    if not table:
        raise StudyError(f"{study.folder / 'results.csv'} has no trained rows at the final budget: run the study first")
    picked = random.Random(seed).sample(table, min(rows, len(table)))
    sources = {"breadth": lay.models, "seeds": lay.stage2_models}
    out = []
    with tempfile.TemporaryDirectory(prefix="study-verify-") as tmp:
        for i, row in enumerate(picked):
            folder = Path(tmp) / f"row{i}"
            src = lay.deepest_models if row["eval"] == "deepest" else sources[row["stage"]]
            man = Manifest.load(src)
            rec = next(r for r in man.valid() if r["name"] == row["model"])
            models = folder / "models"
            models.mkdir(parents=True)
            shutil.copyfile(src / rec["file"], models / rec["file"])
            Manifest.load(models).add({k: v for k, v in rec.items() if k != "created"})
            cfg = sweep_config(study, models, folder / "results", None, True, seed=int(row["seed"]),
                               epochs=int(row["epochs"]),
                               eval_column="deepest" if row["eval"] == "deepest" else None)
            res = run_sweep(cfg, say=say)
            got = res.records[0]["seeds"][0]["epochs"][-1]["accuracy"]
            item = {"model": row["model"], "stage": row["stage"], "eval": row["eval"], "seed": int(row["seed"]),
                    "epochs": int(row["epochs"]), "recorded": float(row["accuracy"]), "retrained": got,
                    "diff_pp": round(100 * (got - float(row["accuracy"])), 3) if got is not None else None}
            say(f"{item['model']} seed {item['seed']} ({item['stage']}, {item['eval']} columns): recorded "
                f"{item['recorded']:.4f}, retrained {got if got is None else f'{got:.4f}'} ({item['diff_pp']} pp)")
            out.append(item)
    return out
