"""Generation pipeline: spec -> rendered code -> static checks -> jailed validation -> accepted file.

A model file is written to the output folder only after it passed; every proposal, accepted or not,
gets a manifest record. Reruns skip what the manifest already holds (and whose file is intact), so an
interrupted run resumes, and nothing that exists is ever wiped.
"""
from __future__ import annotations

import gc
import math
import os
import shutil
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sized

from ..util import folder_lock
from ..util.atomic import write_text
from ..lemur.names import code_model_name
from .template import code_hash, render
from .manifest import Manifest
from . import codecheck, handlers
from ..space.catalog import Registry
from ..space.generators import CodeProposal
from ..space.spec import ArchSpec
from ..trial import Trial, TrialLimits
from ..trial.executors import LocalExecutor

STAGING = ".staging"
SYNC_INTERVAL = 1.0  # seconds between manifest fsyncs


class OutputError(OSError):
    pass


@dataclass
class Outcome:
    accepted: list[str] = field(default_factory=list)
    skipped: int = 0  # already in the manifest
    reused: int = 0  # of those, valid models: they count toward the limit
    invalid: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"output folder {folder} is not writable ({e.strerror or e}); "
                          f"choose another with --models") from None


def exclusive(folder: Path):
    """Hold the output folder for one run: a second run into it gets a clear error, not a mixed manifest."""
    return folder_lock.hold(folder, OutputError(f"another generation run is writing to {folder}; wait for it "
                                                f"to finish or choose another --models"))


VALIDATIONS_PER_JAIL = 20  # a jail's start (~2.5 s of CPU) pays for itself past about this many validations
COLLAPSE_FROM = 250  # validations from which the zygote's heap collapse (0.7 s once, 3 ms less per fork) pays
WARM_SPACE_FROM = 40  # validations from which warming every layer combination (2-3 s once per jail) pays


def validation_jails(workers: int, validations: float) -> int:
    """Jails for about `validations` validations (math.inf: unknown): one per VALIDATIONS_PER_JAIL, at most
    `workers`, at least one."""
    if validations == math.inf:
        return max(1, workers)
    return max(1, min(workers, math.ceil(validations / VALIDATIONS_PER_JAIL)))


def file_intact(folder: Path, record: dict) -> bool:
    path = folder / f"{record['name']}.py"
    return path.exists() and code_hash(path.read_text()) == record.get("code_hash")


@dataclass(frozen=True)
class Candidate:
    """One proposal made concrete: its name, manifest key, code and the record fields it carries."""

    name: str
    key: str
    code: str
    fields: dict


def candidate(item: ArchSpec | CodeProposal, registry: Registry) -> Candidate:
    if isinstance(item, CodeProposal):
        name = code_model_name(item.name, item.key[5:])
        return Candidate(name, item.key, item.code, {"spec": None, "origin": item.origin})
    return Candidate(item.name, item.spec_hash, render(item, registry), {"spec": item.to_dict()})


def generate(proposals: Iterable[ArchSpec | CodeProposal], registry: Registry, out: Path, *,
             limit: int | None, generator: str, workers: int = 2, mode: str = "meta", timeout: float = 120.0,
             progress: Callable[[str, str], None] | None = None, static_check: bool = True,
             unsafe_no_jail: bool = False) -> Outcome:
    """Validate proposals and write the distinct valid ones into `out`, until the folder holds `limit`
    valid models from these proposals (earlier runs' count too, so a rerun does nothing new)."""
    out = Path(out).absolute()  # workers run in their own folder
    check_writable(out)
    with exclusive(out):
        ours = gc.get_freeze_count() == 0
        gc.freeze()  # the objects that exist now (torch, the space) are not traversed by each full collection
        try:
            return _generate(proposals, registry, out, limit=limit, generator=generator, workers=workers,
                             mode=mode, timeout=timeout, progress=progress, static_check=static_check,
                             unsafe_no_jail=unsafe_no_jail)
        finally:
            if ours:
                gc.unfreeze()


def _generate(proposals, registry, out, *, limit, generator, workers, mode, timeout, progress, static_check,
              unsafe_no_jail) -> Outcome:
    manifest = Manifest.load(out)
    # fsync the manifest about once a second, not per record (a killed run loses nothing; see Manifest)
    manifest.sync_interval = SYNC_INTERVAL
    try:
        return _run(proposals, registry, out, manifest, limit=limit, generator=generator, workers=workers,
                    mode=mode, timeout=timeout, progress=progress, static_check=static_check,
                    unsafe_no_jail=unsafe_no_jail)
    finally:
        manifest.sync()


def _run(proposals, registry, out, manifest, *, limit, generator, workers, mode, timeout, progress, static_check,
         unsafe_no_jail) -> Outcome:
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)  # leftovers of a killed run: we hold the folder, nobody uses them
    staging.mkdir()
    signatures = manifest.signatures()
    outcome = Outcome()
    note = progress or (lambda status, name: None)
    pending: dict[Future, tuple[Candidate, Path]] = {}

    def record(c: Candidate, status: str, reason: str = "", **extra) -> None:
        manifest.add({"name": c.name, "spec_hash": c.key, "code_hash": code_hash(c.code), "generator": generator,
                      "validation": mode, "status": status, "reason": reason, **c.fields, **extra})
        if status != "valid":
            (outcome.invalid if status == "invalid" else outcome.duplicates).append((c.name, reason))
        note(status, c.name)

    def settle(fut: Future) -> None:
        c, path = pending.pop(fut)
        res = fut.result()
        if not res.ok:
            path.unlink(missing_ok=True)
            prefix = "out of memory: " if res.status == "out-of-memory" else ""
            record(c, "invalid", prefix + res.message)
            return
        result = res.value
        sig = result["signature"]
        meta = {"signature": sig, "params": result["params"], "flops": result["flops"]}
        if signatures.get(sig, c.name) != c.name:  # the same name is a regeneration, not a duplicate
            path.unlink(missing_ok=True)
            record(c, "duplicate", f"same architecture as {signatures[sig]}", **meta)
            return
        if limit is not None and len(outcome.accepted) + outcome.reused >= limit:
            path.unlink(missing_ok=True)
            return
        os.replace(path, out / f"{c.name}.py")
        signatures[sig] = c.name
        outcome.accepted.append(c.name)
        record(c, "valid", file=f"{c.name}.py", **meta)

    def drain(until: int) -> None:
        while pending and len(pending) > until:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for f in done:
                settle(f)

    # validation runs forward and backward passes of the model: each in its own jailed process; a run that
    # is to add only a few models starts no more jails than it needs and skips the warm-ups that pay only
    # over many validations
    many = math.inf if limit is None else max(1, limit - len(manifest.valid()))  # models still to add
    if isinstance(proposals, Sized):
        many = max(1, min(many, len(proposals)))
    with LocalExecutor(validation_jails(workers, many), TrialLimits(cpu_s=int(timeout) + 60),
                       unsafe_no_jail=unsafe_no_jail,
                       warm=handlers.WARM if many >= WARM_SPACE_FROM else (handlers.WARM_UP,),
                       collapse_heap=many >= COLLAPSE_FROM) as box:
        items = iter(proposals)
        while True:
            # ask for another proposal only while the pending ones could still leave the limit unmet
            # (a generator such as an LLM pays for every proposal it is asked for)
            while limit is not None and pending and len(outcome.accepted) + outcome.reused + len(pending) >= limit:
                drain(len(pending) - 1)
            if limit is not None and len(outcome.accepted) + outcome.reused >= limit:
                break
            item = next(items, None)
            if item is None:
                break
            key = item.key if isinstance(item, CodeProposal) else item.spec_hash
            old = manifest.records.get(key)
            if old is not None and (old["status"] != "valid" or file_intact(out, old)):
                outcome.skipped += 1
                outcome.reused += old["status"] == "valid"
                note("skipped", old["name"])
                continue
            c = candidate(item, registry)
            findings = codecheck.check_model_code(c.code) if static_check else []
            if findings:
                record(c, "invalid", "static check: " + "; ".join(map(str, findings[:3])))
                continue
            path = staging / f"{c.name}.py"
            # no fsync: a file is trusted on a rerun only if its manifest record's code hash matches it
            write_text(path, c.code, durable=False)
            trial = Trial("validate", c.code, {"mode": mode}, timeout, handler=handlers.VALIDATE)
            pending[box.submit(trial)] = (c, path)
            drain(2 * workers - 1)
        drain(0)
    shutil.rmtree(staging, ignore_errors=True)
    return outcome
