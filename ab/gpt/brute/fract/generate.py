"""Generation pipeline: spec -> rendered code -> static checks -> sandboxed validation -> accepted file.

A model file is written to the output folder only after it passed; every proposal, accepted or not,
gets a manifest record. Reruns skip what the manifest already holds (and whose file is intact), so an
interrupted run resumes, and nothing that exists is ever wiped.
"""
from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from . import codecheck
from .atomic import write_text
from .fractal_template import code_hash, render
from .manifest import Manifest
from .registry import Registry
from .sandbox import Limits, Sandbox, SandboxError
from .spec import ArchSpec

VALIDATE = "ab.gpt.brute.fract.validate:check_model_file"
STAGING = ".staging"


class OutputError(OSError):
    pass


@dataclass
class Outcome:
    accepted: list[str] = field(default_factory=list)
    skipped: int = 0  # already in the manifest
    invalid: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"output folder {folder} is not writable ({e.strerror or e}); "
                          f"choose another with --out") from None


def file_intact(folder: Path, record: dict) -> bool:
    path = folder / f"{record['name']}.py"
    return path.exists() and code_hash(path.read_text()) == record.get("code_hash")


def generate(specs: Iterable[ArchSpec], registry: Registry, out: Path, *, limit: int | None,
             generator: str, workers: int = 2, mode: str = "meta", timeout: float = 120.0,
             progress: Callable[[str, str], None] | None = None) -> Outcome:
    """Validate and write up to `limit` new distinct models from `specs` into `out`."""
    check_writable(out)
    manifest = Manifest.load(out)
    staging = out / STAGING
    staging.mkdir(exist_ok=True)
    signatures = manifest.signatures()
    outcome = Outcome()
    note = progress or (lambda status, name: None)
    pending: dict[Future, tuple[ArchSpec, str, Path]] = {}

    def settle(fut: Future) -> None:
        spec, code, path = pending.pop(fut)
        base = {"name": spec.name, "spec": spec.to_dict(), "spec_hash": spec.spec_hash,
                "code_hash": code_hash(code), "generator": generator, "validation": mode}
        try:
            result = fut.result()
        except SandboxError as e:
            reason = str(e)
            manifest.add({**base, "status": "invalid", "reason": reason})
            outcome.invalid.append((spec.name, reason))
            outcome.counts["invalid"] += 1
            note("invalid", spec.name)
            path.unlink(missing_ok=True)
            return
        sig = result["signature"]
        meta = {"signature": sig, "params": result["params"], "flops": result["flops"]}
        if sig in signatures:
            manifest.add({**base, **meta, "status": "duplicate", "reason": f"same architecture as {signatures[sig]}"})
            outcome.duplicates.append((spec.name, signatures[sig]))
            outcome.counts["duplicate"] += 1
            note("duplicate", spec.name)
            path.unlink(missing_ok=True)
            return
        if limit is not None and len(outcome.accepted) >= limit:
            path.unlink(missing_ok=True)
            return
        os.replace(path, out / f"{spec.name}.py")
        signatures[sig] = spec.name
        manifest.add({**base, **meta, "status": "valid", "reason": "", "file": f"{spec.name}.py"})
        outcome.accepted.append(spec.name)
        outcome.counts["valid"] += 1
        note("valid", spec.name)

    with Sandbox(workers=workers, limits=Limits(timeout_s=timeout), run_dir=staging) as box:
        for spec in specs:
            if limit is not None and len(outcome.accepted) + len(pending) >= limit:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for f in done:
                    settle(f)
                if len(outcome.accepted) >= limit:
                    break
            old = manifest.records.get(spec.spec_hash)
            if old is not None and (old["status"] != "valid" or file_intact(out, old)):
                outcome.skipped += 1
                note("skipped", spec.name)
                continue
            code = render(spec, registry)
            findings = codecheck.check_source(code) + codecheck.check_contract(code)
            if findings:
                reason = "; ".join(map(str, findings[:3]))
                manifest.add({"name": spec.name, "spec": spec.to_dict(), "spec_hash": spec.spec_hash,
                              "code_hash": code_hash(code), "generator": generator, "status": "invalid",
                              "reason": f"static check: {reason}"})
                outcome.invalid.append((spec.name, reason))
                outcome.counts["invalid"] += 1
                note("invalid", spec.name)
                continue
            path = staging / f"{spec.name}.py"
            write_text(path, code)
            pending[box.submit(VALIDATE, path=str(path), mode=mode)] = (spec, code, path)
            while len(pending) >= 2 * workers:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for f in done:
                    settle(f)
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for f in done:
                settle(f)
    try:
        staging.rmdir()
    except OSError:
        pass
    return outcome
