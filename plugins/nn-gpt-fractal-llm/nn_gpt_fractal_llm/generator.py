"""The `llm` generator: prompt an LLM with the space and earlier results, turn its answers into proposals.

Options (`--gen-opt KEY=VALUE`):
  llm / llm_config     name in conf/llm or a path to a JSON file [deepseek-r1-distill-qwen-7b]
  prompt / prompt_config  name in conf/prompt or a path [fractal_spec, or fractal_code with mode=code]
  mode                 spec (JSON specs) or code (whole model files) [from the prompt]
  proposals            specs asked for per call [from the prompt]
  max_calls            LLM calls at most [2 x the calls the limit needs, at least 2]
  new_lemur            results folder with runs/<Model>.json [<LEMUR root>/new_lemur]
  lemur_db             LEMUR SQLite DB [<LEMUR root>/db/ab.nn.db]
  round                round number recorded in the logs (the closed loop sets it)
  strict_space         1: reject specs outside the declared space's values [0: any valid spec]

No further call is made once the forwarded proposals that are valid or still being validated would fill
the limit (a proposal that then fails validation leaves the run short rather than costing another call).
Proposals that survive extraction and deduplication are yielded to the generation pipeline, which
checks, jails and records them like any other. The rest are recorded here, in the same manifest,
with status invalid or duplicate and the reason. Every call is logged to `llm_calls.jsonl`.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ab.gpt.brute.fract.util.atomic import append_line
from ab.gpt.brute.fract.space.generators import CodeProposal, Request
from ab.gpt.brute.fract.generation.manifest import MANIFEST
from ab.gpt.brute.fract.util.paths import lemur_root, new_lemur_dir
from ab.gpt.brute.fract.space.registry import Registry, default_registry
from ab.gpt.brute.fract.space.space import Space
from ab.gpt.brute.fract.space.spec import ArchSpec

from . import config, extract, feedback, prompts
from .backends import make_backend

NAME = "llm"
CALL_LOG = "llm_calls.jsonl"
RESPONSE_CHARS = 50_000  # characters of each raw response kept in the call log
OPTIONS = ("llm", "llm_config", "prompt", "prompt_config", "mode", "proposals", "max_calls", "new_lemur",
           "lemur_db", "round", "strict_space")


@dataclass(frozen=True)
class Options:
    llm: str
    prompt: str
    mode: str
    proposals: int | None
    max_calls: int | None
    new_lemur: Path
    lemur_db: Path
    round: int
    strict_space: bool = False

    @classmethod
    def parse(cls, options: dict[str, str]) -> "Options":
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise config.ConfigError(f"unknown --gen-opt for the llm generator: {', '.join(unknown)}; "
                                     f"known: {', '.join(OPTIONS)}")
        mode = options.get("mode")
        if mode is not None and mode not in config.MODES:
            raise config.ConfigError(f"--gen-opt mode={mode} is not one of {', '.join(config.MODES)}")

        def count(key: str) -> int | None:
            if key not in options:
                return None
            try:
                value = int(options[key])
            except ValueError:
                value = 0
            if value < 1:
                raise config.ConfigError(f"--gen-opt {key}={options[key]} must be a positive integer")
            return value

        root = lemur_root()
        return cls(llm=options.get("llm_config") or options.get("llm") or config.DEFAULT_LLM,
                   prompt=options.get("prompt_config") or options.get("prompt") or config.DEFAULT_PROMPT[mode or "spec"],
                   mode=mode or "", proposals=count("proposals"), max_calls=count("max_calls"),
                   new_lemur=Path(options["new_lemur"]) if options.get("new_lemur") else new_lemur_dir(root),
                   lemur_db=Path(options["lemur_db"]) if options.get("lemur_db") else root / "db" / "ab.nn.db",
                   round=int(options.get("round", 0) or 0),
                   strict_space=options.get("strict_space", "0").lower() in ("1", "true", "yes"))


class Recorder:
    """Appends rejections to the manifest and calls to the call log, once the output folder exists
    (the pipeline creates it before it asks for proposals; a dry run writes nothing)."""

    def __init__(self, out_dir: Path | None, llm: str) -> None:
        self.out = Path(out_dir) if out_dir else None
        self.llm = llm
        self.rejected = 0

    @property
    def active(self) -> bool:
        return self.out is not None and self.out.is_dir()

    def reject(self, status: str, reason: str, raw: str, spec: dict | None, call_id: str, index: int) -> None:
        self.rejected += 1
        if not self.active:
            return
        key = "llm-" + hashlib.sha256(f"{call_id}:{index}:{raw}".encode()).hexdigest()[:12]
        append_line(self.out / MANIFEST, json.dumps({
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "name": f"llm_proposal_{key[4:]}", "spec_hash": key,
            "code_hash": None, "generator": NAME, "validation": "llm-output", "status": status, "reason": reason,
            "spec": spec, "origin": f"llm:{self.llm}:{call_id}", "raw": raw[:extract.RAW_LIMIT]}, sort_keys=True))

    def call(self, entry: dict[str, Any]) -> None:
        if self.active:
            append_line(self.out / CALL_LOG, json.dumps(
                {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), **entry}, sort_keys=True))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:40] or "llm"


def llm_proposals(space: Space, request: Request, *, registry: Registry | None = None,
                  backend_factory: Callable[[config.LLMConfig], Any] | None = None
                  ) -> Iterator[ArchSpec | CodeProposal]:
    """The generator function. `backend_factory` lets a caller supply the backend (e.g. constrained)."""
    opts = Options.parse(request.options)
    reg = registry or default_registry()
    cfg = config.load_llm_config(opts.llm)
    tmpl = config.load_prompt(opts.prompt)
    if opts.mode and tmpl.mode != opts.mode:
        raise config.ConfigError(f"prompt {tmpl.name!r} is for mode {tmpl.mode}, not {opts.mode}")
    n = opts.proposals or tmpl.proposals
    per_call = n if tmpl.mode == "spec" else 1
    max_calls = opts.max_calls or max(2, 2 * math.ceil((request.limit or per_call) / per_call))
    backend = (backend_factory or make_backend)(cfg)  # loads nothing until its first call
    rec = Recorder(request.out_dir, cfg.name)
    forwarded: set[str] = set()

    for call in range(max_calls):
        fb = feedback.collect(request.out_dir, opts.new_lemur, opts.lemur_db, best_k=tmpl.best_k,
                              failures_k=tmpl.failures_k)
        # do not pay for an LLM call when what was forwarded, valid or still being validated, would
        # already fill the limit
        promising = sum(1 for k in forwarded if fb.status.get(k, "pending") in ("valid", "pending"))
        if request.limit is not None and promising >= request.limit:
            return
        ctx = prompts.context(tmpl, space, reg, fb, n=n, out_dir=request.out_dir)
        messages = prompts.render_messages(tmpl, cfg, ctx)
        call_id = f"r{opts.round}c{call}s{request.seed}"
        done = backend.complete(messages, seed=request.seed * 1000 + call)
        if tmpl.mode == "spec":
            items = extract.parse_specs(done.text, reg)
        else:
            items = extract.parse_code(done.text, f"FractalNet_llm_{_slug(cfg.name)}", f"llm:{cfg.name}:{call_id}")
        passed: list[ArchSpec | CodeProposal] = []
        for i, item in enumerate(items):
            if isinstance(item, extract.Rejection):
                rec.reject("invalid", "llm output: " + item.reason, item.raw, item.spec, call_id, i)
                continue
            if opts.strict_space and isinstance(item, ArchSpec) and extract.outside_space(item, space):
                rec.reject("invalid", "llm output: outside the space: " + extract.outside_space(item, space),
                           item.to_json(), item.to_dict(), call_id, i)
                continue
            key = item.spec_hash if isinstance(item, ArchSpec) else item.key
            raw = item.to_json() if isinstance(item, ArchSpec) else item.code
            spec = item.to_dict() if isinstance(item, ArchSpec) else None
            if key in fb.seen:
                rec.reject("duplicate", f"already generated or evaluated ({key})", raw, spec, call_id, i)
            elif key in forwarded:
                rec.reject("duplicate", f"proposed earlier in this run ({key})", raw, spec, call_id, i)
            else:
                forwarded.add(key)
                passed.append(item)
        rec.call({"generator": NAME, "llm": cfg.name, "backend": cfg.backend, "model": cfg.model,
                  "prompt": tmpl.name, "mode": tmpl.mode, "round": opts.round, "call": call, "call_id": call_id,
                  "seed": request.seed, "latency_s": round(done.latency_s, 3), "usage": done.usage,
                  "finish_reason": done.finish_reason, "prompt_chars": sum(len(m["content"]) for m in messages),
                  "extracted": len(items), "forwarded": [p.spec_hash if isinstance(p, ArchSpec) else p.key
                                                         for p in passed],
                  "rejected": len(items) - len(passed), "response": done.text[:RESPONSE_CHARS]})
        yield from passed
