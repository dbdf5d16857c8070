"""Renders an `ArchSpec` into a LEMUR model file through the Jinja2 template `templates/fractal_net.py.j2`.

Python resolves every choice into plain values (constructor expressions, constants); the template only
lays them out. StrictUndefined turns any missing value into an error instead of silent empty text.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

import jinja2

from .. import __version__
from ..space.catalog import Registry
from ..space.spec import ArchSpec
from ..tune.rules import CPU_AMP_MIN_CHANNELS, CPU_MEMORY_GB, DEFAULT_SHARE

# pairwise element-wise ops keep the inputs' memory format (torch.stack would make channels_last contiguous)
_JOIN = {
    "mean": ("Element-wise mean", "sum(inputs[1:], inputs[0]) / len(inputs)"),
    "sum": ("Element-wise sum", "sum(inputs[1:], inputs[0])"),
    "max": ("Element-wise maximum", "functools.reduce(torch.maximum, inputs)"),
}
_POOL = {"max": "nn.MaxPool2d(2)", "avg": "nn.AvgPool2d(2)"}


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ab.gpt.brute.fract.generation", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return env.get_template("fractal_net.py.j2")


def op_lines(spec: ArchSpec, registry: Registry) -> list[str]:
    """Constructor expressions of one column op; the first conv maps c_in to c_out."""
    lines, current = [], "c_in"
    for name in spec.layers:
        opt = registry.option(name)
        if opt.slot == "conv":
            lines.append(opt.code.format(c_in=current, c_out="c_out"))
            current = "c_out"
        else:
            lines.append(opt.code.format(ch=current, p="p" if spec.block_dropout else spec.dropout))
    return lines


def helpers(spec: ArchSpec, registry: Registry) -> list[str]:
    seen: list[str] = []
    for name in spec.layers:
        src = registry.option(name).helper.strip()
        if src and src not in seen:
            seen.append(src)
    return seen


def render(spec: ArchSpec, registry: Registry) -> str:
    unknown = [n for n in spec.layers if n not in registry.options]
    if unknown:
        raise KeyError(f"unknown layer option(s) {', '.join(unknown)}; registered: {', '.join(registry.options)}")
    if not any(registry.option(n).slot == "conv" for n in spec.layers):
        raise ValueError("a column op needs at least one conv-slot layer")
    join_doc, join_expr = _JOIN[spec.join]
    if spec.kind == "fractal":
        description = f"FractalNet, {spec.depth} blocks of {spec.columns} columns."
        summary = f"FractalNet: {spec.depth} fractal blocks x {spec.columns} columns, {spec.pool}-pool after each."
    else:
        description = f"plain baseline, {spec.plain_layers} ops in {spec.depth} blocks."
        summary = f"Plain network: {spec.plain_layers} ops over {spec.depth} blocks, {spec.pool}-pool after each."
    return _template().render(
        name=spec.name, description=description, summary=summary, version=__version__,
        spec=spec, spec_json=spec.to_json(), channels=repr(spec.channels),
        op_lines=op_lines(spec, registry), helpers=helpers(spec, registry),
        join_doc=join_doc, join_expr=join_expr, pool_expr=_POOL[spec.pool],
        per_block=bool(spec.block_dropout), block_dropout=repr(spec.block_dropout), **policy_constants(),
    )


def policy_constants() -> dict:
    """The model file's own auto-policy constants: the same rule and share as the runner's (tune/memory.py)."""
    return {"amp_min_channels": CPU_AMP_MIN_CHANNELS, "checkpoint_share": DEFAULT_SHARE, "cpu_memory_gb": CPU_MEMORY_GB}


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()[:16]
