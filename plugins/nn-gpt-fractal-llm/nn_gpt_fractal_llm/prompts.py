"""Renders a prompt template (Jinja2, sandboxed, strict) into chat messages."""
from __future__ import annotations

import json
from pathlib import Path

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from ab.gpt.brute.fract.fractal_template import render
from ab.gpt.brute.fract.space.registry import Registry
from ab.gpt.brute.fract.space.space import Space

from .backends import chat_messages
from .config import LLMConfig, PromptTemplate
from .feedback import Feedback, Result

REASON_CHARS = 240  # a failure reason is cut to this length in the prompt

_env = SandboxedEnvironment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False,
                            keep_trailing_newline=True)


def _shown(r: Result) -> dict:
    reason = " ".join(r.reason.split())
    return {"name": r.name, "status": r.status, "accuracy": r.accuracy or 0.0, "epochs": r.epochs,
            "reason": reason[:REASON_CHARS] + ("..." if len(reason) > REASON_CHARS else ""), "spec": r.spec_json}


def _typical(space: Space):
    """A mid-space point, preferring one with several columns and layers (a more telling example)."""
    start = space.raw_size // 2
    for i in range(start, min(space.raw_size, start + 500)):
        spec = space.point(i)
        if spec.columns > 1 and len(spec.layers) >= 3:
            return spec
    return space.point(start)


def example_spec(space: Space, fb: Feedback) -> dict:
    for r in fb.best:
        if r.spec:
            return r.spec
    return _typical(space).to_dict()


def base_model(space: Space, registry: Registry, fb: Feedback, out_dir: Path | None) -> tuple[str, str]:
    """(name, code) of the model code mode edits: the best earlier model whose file exists, else a rendered
    example. The code is only shown to the LLM, never run here."""
    for r in fb.best:
        path = Path(out_dir) / f"{r.name}.py" if out_dir else None
        if path is not None and path.is_file():
            return r.name, path.read_text()
    spec = _typical(space)
    return spec.name, render(spec, registry)


def context(tmpl: PromptTemplate, space: Space, registry: Registry, fb: Feedback, *, n: int,
            out_dir: Path | None) -> dict:
    ex = {k: v for k, v in example_spec(space, fb).items() if k != "spec_version"}
    ctx = {
        "kind": space.kind,
        "dimensions": {k: [list(v) if isinstance(v, tuple) else v for v in vals]
                       for k, vals in space.dimensions().items()},
        "options": [{"name": o.name, "slot": o.slot, "description": o.description}
                    for o in registry.options.values()],
        "example": json.dumps(ex, sort_keys=True),
        "best": [_shown(r) for r in fb.best[:tmpl.best_k]],
        "failures": [_shown(r) for r in fb.failures[:tmpl.failures_k]],
        "existing": fb.existing,
        "n": n,
    }
    if tmpl.mode == "code":
        ctx["base_name"], ctx["base_code"] = base_model(space, registry, fb, out_dir)
    return ctx


def render_messages(tmpl: PromptTemplate, cfg: LLMConfig, ctx: dict) -> list[dict[str, str]]:
    system = _env.from_string(tmpl.system).render(**ctx).strip()
    user = _env.from_string(tmpl.user).render(**ctx).strip()
    return chat_messages(cfg, system, user)
