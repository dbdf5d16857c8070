"""pluggy hook specifications: how layer families and generators are contributed.

A plugin is a module (or object) with functions marked `@hookimpl`, registered under the entry-point
group `nn_gpt_fractal` in its package metadata. The built-ins are registered through the same hooks.
"""
from __future__ import annotations

import pluggy

PROJECT = "nn_gpt_fractal"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def fractal_layer_families():
    """Return an iterable of `families.LayerFamily`: named layer options the template can render."""


@hookspec
def fractal_generators():
    """Return an iterable of `generators.Generator`: named ways to propose specs from a space."""
