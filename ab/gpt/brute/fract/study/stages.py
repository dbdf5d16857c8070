"""The stages of a study, each resumable on its own (it reads what the earlier run left and does the rest):

    generate   the fractal sample (declared generator, seed and size) into work/models, then the plain twins
               of the compared pairs into work/baselines (generate.py: validated in jails, manifest records)
    breadth    successive halving over the sample (NNEval's sweep, --schedule halving) into work/stage1
    select     the best `top` of the halving ranking plus the pairs: work/selection.json (written once)
    seeds      the selection at the final budget with `seeds` seeds (work/stage2), and the pairs' fractal
               models scored by their deepest column alone (work/deepest: same training, same seeds)

Nothing here trains or validates by itself: generate.generate and evaluate.run_sweep do, in their jails.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..util.atomic import write_json
from ..sweep.evaluate import SweepConfig, SweepOutcome, run_sweep
from ..generation.generate import Outcome, file_intact, generate
from ..generation.manifest import Manifest
from ..sweep import results
from ..space.generators import Request
from ..space.registry import default_registry
from ..space.spec import ArchSpec
from ..sweep.halving import ranking, sweep_rungs, trial_from_run
from .sample import Pair, check_coverage, pairs, space_of
from .spec import StudyError, StudySpec

Say = Callable[[str], None]


@dataclass(frozen=True)
class Layout:
    """Where a study's stages keep their files (all under work/, which the run rebuilds)."""

    work: Path

    @property
    def models(self) -> Path:
        return self.work / "models"

    @property
    def baselines(self) -> Path:
        return self.work / "baselines"

    @property
    def stage1(self) -> Path:
        return self.work / "stage1"

    @property
    def selection(self) -> Path:
        return self.work / "selection.json"

    @property
    def stage2_models(self) -> Path:
        return self.work / "stage2-models"

    @property
    def stage2(self) -> Path:
        return self.work / "stage2"

    @property
    def deepest_models(self) -> Path:
        return self.work / "deepest-models"

    @property
    def deepest(self) -> Path:
        return self.work / "deepest"

    @property
    def db(self) -> Path:
        return self.work / "ab.nn.db"


def valid_specs(folder: Path) -> list[tuple[str, ArchSpec]]:
    """(name, spec) of the valid models of a generation folder, in generation order."""
    return [(r["name"], ArchSpec.from_dict(r["spec"])) for r in Manifest.load(folder).valid() if r.get("spec")]


def run_generate(study: StudySpec, lay: Layout, say: Say, workers: int, progress=None) -> tuple[list, list[Pair]]:
    """The sample and its pairs' twins; returns ([(name, spec)] of the sample, pairs)."""
    reg = default_registry()
    if study.generator not in reg.generators:
        raise StudyError(f"[space] generator = {study.generator!r}: choose from {', '.join(reg.generators)}")
    proposals = reg.generators[study.generator].propose(space_of(study), Request(limit=study.size, seed=study.seed))
    out: Outcome = generate(proposals, reg, lay.models, limit=study.size, generator=study.generator,
                            workers=workers, progress=progress)
    sample = valid_specs(lay.models)
    say(f"sample: {len(sample)} valid models ({len(out.accepted)} new, {len(out.duplicates)} duplicates, "
        f"{len(out.invalid)} invalid this run) in {lay.models}")
    if len(sample) < study.size:
        raise StudyError(f"[space] size = {study.size}: the space gave only {len(sample)} distinct valid models; "
                         f"widen the space or lower size")
    check_coverage(study, [s for _, s in sample])
    chosen = pairs(study, [s for _, s in sample])
    twins = [t for p in chosen for t in (p.depth_twin, p.params_twin)]
    b = generate(twins, reg, lay.baselines, limit=None, generator="baselines", workers=workers)
    if b.invalid:
        raise StudyError(f"plain twin {b.invalid[0][0]} failed validation ({b.invalid[0][1]})")
    return sample, chosen


def sweep_config(study: StudySpec, models: Path, out: Path, db: Path | None, quiet: bool, **changes) -> SweepConfig:
    """NNEval's config for one stage: the study's protocol (policies off: fp32, no tuning, reproducible)."""
    p = study.protocol
    tuned = p.policies == "auto"
    cfg = dict(models=models, out=out, epochs=p.epochs, batch=p.batch, lr=p.lr, momentum=p.momentum,
               transform=p.transform, seeds=1, seed=0, amp="auto" if tuned else False,
               checkpointing="auto" if tuned else False, channels_last="auto" if tuned else False,
               compile="auto" if tuned else "off", device=p.device, data_dir=str(study.data_dir()),
               train_limit=p.train_limit, test_limit=p.test_limit, db=db, register=db is not None,
               workers=p.workers, threads=p.threads, timeout=p.timeout, quiet=quiet, order="longest",
               executor=p.executor, address=p.address, gpus_per_trial=p.gpus_per_trial,
               cpus_per_trial=p.cpus_per_trial)
    cfg.update(changes)
    return SweepConfig(**cfg)


def run_breadth(study: StudySpec, lay: Layout, say: Say, quiet: bool) -> SweepOutcome:
    h = study.protocol.halving
    return run_sweep(sweep_config(study, lay.models, lay.stage1, lay.db, quiet, schedule="halving", eta=h.eta,
                                  rungs=h.rungs, min_keep=h.min_keep), say=say)


def halving_ranking(study: StudySpec, stage1: Path) -> list[str]:
    """Stage-1 models best first (further rungs first, then accuracy at their last rung's budget)."""
    h = study.protocol.halving
    recs = {r["name"]: r for r in results.load_runs(stage1)}
    rungs = sweep_rungs(study.protocol.epochs, h.eta, h.rungs, h.min_keep)
    return ranking(sorted(recs), {n: trial_from_run(r) for n, r in recs.items()}, rungs)


def run_select(study: StudySpec, lay: Layout, sample: list, chosen: list[Pair], say: Say) -> dict:
    """The stage-2 selection, decided once from the finished stage 1 and then read back."""
    if lay.selection.exists():
        return json.loads(lay.selection.read_text())
    recs = {r["name"]: r for r in results.load_runs(lay.stage1)}
    finished = [n for n in halving_ranking(study, lay.stage1)
                if recs[n]["status"] == "trained" and len(recs[n]["seeds"][0]["epochs"]) == study.protocol.epochs]
    sel = {"top": finished[:study.protocol.top],
           "pairs": [{"fractal": p.fractal.name, "depth_twin": p.depth_twin.name, "params_twin": p.params_twin.name,
                      "depth": p.fractal.depth, "columns": p.fractal.columns} for p in chosen]}
    write_json(lay.selection, sel)
    say(f"selected for {study.protocol.seeds} seeds: top {len(sel['top'])} + {len(sel['pairs'])} pairs")
    return sel


def _stage_folder(dest: Path, names: list[str], sources: list[Path]) -> None:
    """A models folder holding exactly `names` (copied with their manifest records) for one sweep."""
    dest.mkdir(parents=True, exist_ok=True)
    man = Manifest.load(dest)
    have = {r["name"] for r in man.valid() if file_intact(dest, r)}
    by_name = {}
    for src in sources:
        for r in Manifest.load(src).valid():
            by_name.setdefault(r["name"], (src, r))
    for n in names:
        if n in have:
            continue
        if n not in by_name:
            raise StudyError(f"model {n} of the selection is not in {', '.join(map(str, sources))}; "
                             f"delete {dest.parent / 'selection.json'} to select again")
        src, rec = by_name[n]
        shutil.copyfile(src / rec["file"], dest / rec["file"])
        man.add({k: v for k, v in rec.items() if k != "created"})
    man.sync()


def stage2_names(sel: dict) -> list[str]:
    names = list(sel["top"])
    for p in sel["pairs"]:
        names += [p["fractal"], p["depth_twin"], p["params_twin"]]
    return list(dict.fromkeys(names))


def run_seeds(study: StudySpec, lay: Layout, sel: dict, say: Say, quiet: bool) -> tuple[SweepOutcome, SweepOutcome]:
    _stage_folder(lay.stage2_models, stage2_names(sel), [lay.models, lay.baselines])
    _stage_folder(lay.deepest_models, [p["fractal"] for p in sel["pairs"]], [lay.models])
    n = study.protocol.seeds
    a = run_sweep(sweep_config(study, lay.stage2_models, lay.stage2, lay.db, quiet, seeds=n), say=say)
    b = run_sweep(sweep_config(study, lay.deepest_models, lay.deepest, None, quiet, seeds=n,
                               eval_column="deepest"), say=say)
    return a, b

