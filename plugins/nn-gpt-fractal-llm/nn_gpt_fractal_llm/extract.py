"""From raw LLM text to proposals: strip reasoning, pull out JSON specs or a model file, check them.

Nothing here runs model code. A spec is checked against the spec schema and the registered layer options
and must render; code is only extracted here: the generation pipeline checks it statically and then in
the jail, like any generated file. Every piece that cannot become a proposal becomes a `Rejection`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable

from ab.gpt.brute.fract.fractal_template import render
from ab.gpt.brute.fract.space.generators import CodeProposal
from ab.gpt.brute.fract.space.registry import Registry
from ab.gpt.brute.fract.space.spec import ArchSpec, SpecError

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_LIST_KEYS = ("specs", "architectures", "proposals", "models", "variants")
RAW_LIMIT = 2000  # characters of the offending text kept with a rejection


@dataclass(frozen=True)
class Rejection:
    """A piece of LLM output that is not a usable proposal, and why."""

    reason: str
    raw: str = ""
    spec: dict | None = None


def strip_reasoning(text: str) -> str:
    """The answer without `<think>...</think>`. A lone `</think>` (the chat template opened the block)
    keeps what follows it; an unclosed `<think>` (output cut off while reasoning) keeps what precedes it."""
    text = _THINK.sub("", text)
    low = text.lower()
    if "</think>" in low:
        text = text[low.rindex("</think>") + len("</think>"):]
        low = text.lower()
    if "<think>" in low:
        text = text[:low.index("<think>")]
    return text.strip()


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each ``` fenced block, in order; an unterminated last block counts too."""
    return [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]


def _scan_json(text: str) -> list[Any]:
    """Every top-level JSON object or array embedded in free text."""
    decoder = json.JSONDecoder()
    values, i = [], 0
    while i < len(text):
        if text[i] in "[{":
            try:
                value, end = decoder.raw_decode(text, i)
            except json.JSONDecodeError:
                i += 1
                continue
            values.append(value)
            i = end
        else:
            i += 1
    return values


def json_values(answer: str) -> tuple[list[Any], list[Rejection]]:
    """JSON values from fenced json blocks, else from the free text; unparsable blocks are rejections."""
    values: list[Any] = []
    rejections: list[Rejection] = []
    blocks = [body for lang, body in fenced_blocks(answer) if lang in ("json", "jsonc", "json5", "")]
    if not blocks:
        return _scan_json(answer), rejections
    for body in blocks:
        try:
            values.append(json.loads(body))
        except json.JSONDecodeError as e:
            found = _scan_json(body)
            if found:
                values.extend(found)
            else:
                rejections.append(Rejection(f"fenced block is not valid JSON: {e}", body[:RAW_LIMIT]))
    return values, rejections


def spec_objects(values: Iterable[Any]) -> Iterable[Any]:
    """Flatten arrays and {"specs": [...]} wrappers into candidate spec objects."""
    for v in values:
        if isinstance(v, list):
            yield from spec_objects(v)
        elif isinstance(v, dict) and any(isinstance(v.get(k), list) for k in _LIST_KEYS):
            for k in _LIST_KEYS:
                if isinstance(v.get(k), list):
                    yield from spec_objects(v[k])
        else:
            yield v


def check_spec(obj: Any, registry: Registry) -> ArchSpec | Rejection:
    """One candidate object against the spec schema, the registered layer options and the template."""
    raw = json.dumps(obj, sort_keys=True)[:RAW_LIMIT] if not isinstance(obj, str) else obj[:RAW_LIMIT]
    if not isinstance(obj, dict):
        return Rejection(f"spec must be a JSON object, got {type(obj).__name__}", raw)
    try:
        spec = ArchSpec.from_dict(obj)
    except (SpecError, ValueError, TypeError) as e:
        return Rejection(f"spec schema: {e}", raw, obj)
    unknown = [n for n in spec.layers if n not in registry.options]
    if unknown:
        return Rejection(f"unknown layer option(s) {', '.join(unknown)}; registered: "
                         f"{', '.join(registry.options)}", raw, obj)
    if not any(registry.option(n).slot == "conv" for n in spec.layers):
        return Rejection("layers need at least one conv-slot option", raw, obj)
    try:
        render(spec, registry)
    except Exception as e:  # noqa: BLE001 - any template failure is the proposal's fault
        return Rejection(f"spec does not render: {type(e).__name__}: {e}", raw, obj)
    return spec


def outside_space(spec: ArchSpec, space) -> str | None:
    """Why `spec` is not a point of `space` (its declared values), or None when it is one."""
    if spec.kind != space.kind:
        return f"kind {spec.kind} (the space is {space.kind})"
    checks = [("depth", spec.depth, space.depth), ("dropout", spec.dropout, space.dropout),
              ("pool", spec.pool, space.pool), ("head", spec.head, space.head)]
    if spec.kind == "fractal":
        checks.append(("columns", spec.columns, space.columns))
        if spec.columns > 1:
            checks += [("join", spec.join, space.join), ("local_drop", spec.local_drop, space.local_drop),
                       ("global_drop", spec.global_drop, space.global_drop)]
    for name, value, allowed in checks:
        if value not in allowed:
            return f"{name} {value} is not among the space's {list(allowed)}"
    schedules = [(tuple(c) + (c[-1],) * spec.depth)[:spec.depth] for c in space.channels]
    if spec.channels not in schedules:
        return f"channels {list(spec.channels)} follow none of the space's schedules"
    allowed_layers = set(space.conv) | set(space.norm) | set(space.act) | {"dropout"}
    extra = [n for n in spec.layers if n not in allowed_layers]
    return f"layers {extra} are not in the space" if extra else None


def parse_specs(text: str, registry: Registry) -> list[ArchSpec | Rejection]:
    answer = strip_reasoning(text)
    if not answer:
        return [Rejection("no answer after removing reasoning (output empty or cut off while thinking)",
                          text[-RAW_LIMIT:])]
    values, out = json_values(answer)
    objs = list(spec_objects(values))
    if not objs and not out:
        return [Rejection("no JSON spec found in the answer", answer[:RAW_LIMIT])]
    return out + [check_spec(o, registry) for o in objs]


def extract_code(answer: str) -> str | None:
    """The model file in an answer: the last fenced block defining `class Net`, else the text from its
    first import when the whole answer is unfenced code."""
    blocks = [body for lang, body in fenced_blocks(answer) if lang in ("python", "py", "python3", "")]
    with_net = [b for b in blocks if re.search(r"^class\s+Net\b", b, re.M)]
    if with_net:
        return with_net[-1].strip() + "\n"
    if "```" not in answer and re.search(r"^class\s+Net\b", answer, re.M):
        m = re.search(r"^(import |from |\"\"\"|def |class )", answer, re.M)
        return answer[m.start() if m else 0:].strip() + "\n"
    return None


def parse_code(text: str, name: str, origin: str) -> list[CodeProposal | Rejection]:
    answer = strip_reasoning(text)
    if not answer:
        return [Rejection("no answer after removing reasoning (output empty or cut off while thinking)",
                          text[-RAW_LIMIT:])]
    code = extract_code(answer)
    if code is None:
        return [Rejection("no Python code block defining class Net found", answer[:RAW_LIMIT])]
    return [CodeProposal(name=name, code=code, origin=origin)]
