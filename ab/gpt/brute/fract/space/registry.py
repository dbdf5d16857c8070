"""The plugin registry: built-in and third-party layer families and generators, through pluggy.

Third-party plugins are found through the entry-point group `nn_gpt_fractal`. A plugin that fails to
load, or whose hooks fail, is reported in one line (`Registry.errors`) and left out; the rest works.
"""
from __future__ import annotations

import functools
import sys
from importlib.metadata import entry_points

import pluggy

from . import builtin_plugin, hookspecs
from .catalog import Contribution, Registry
from .families import LayerFamily, LayerOption

ENTRY_POINT_GROUP = hookspecs.PROJECT
BUILTIN = "builtin"


def _plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _collect(pm: pluggy.PluginManager, name: str, plugin: object, reg: Registry) -> None:
    """Register one plugin and take what its hooks return; undo and report on any failure."""
    try:
        pm.register(plugin, name=name)
        others = [p for p in pm.get_plugins() if p is not plugin]
        families = [f for batch in pm.subset_hook_caller("fractal_layer_families", others)() for f in batch]
        gens = [g for batch in pm.subset_hook_caller("fractal_generators", others)() for g in batch]
        contrib = Contribution()
        new_options: dict[str, LayerOption] = {}
        for fam in families:
            if not isinstance(fam, LayerFamily):
                raise TypeError(f"fractal_layer_families returned {type(fam).__name__}, not LayerFamily")
            for opt in fam.options:
                if opt.name in reg.options or opt.name in new_options:
                    raise ValueError(f"layer option {opt.name!r} is already registered")
                new_options[opt.name] = opt
                contrib.options.append(opt.name)
            contrib.families.append(fam.name)
        new_gens = {}
        for gen in gens:
            if gen.name in reg.generators or gen.name in new_gens:
                raise ValueError(f"generator {gen.name!r} is already registered")
            new_gens[gen.name] = gen
            contrib.generators.append(gen.name)
    except Exception as e:  # a broken plugin must not take the others down
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        reg.errors.append(f"plugin {name!r} failed to load: {type(e).__name__}: {e}")
        return
    reg.options.update(new_options)
    reg.generators.update(new_gens)
    for fam in families:
        reg.families[f"{name}:{fam.name}"] = fam
    reg.contributions[name] = contrib


def build_registry(*, third_party: bool = True, extra: dict[str, object] | None = None) -> Registry:
    pm = _plugin_manager()
    reg = Registry()
    _collect(pm, BUILTIN, builtin_plugin, reg)
    if third_party:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            try:
                plugin = ep.load()
            except Exception as e:
                reg.errors.append(f"plugin {ep.name!r} failed to load: {type(e).__name__}: {e}")
                continue
            _collect(pm, ep.name, plugin, reg)
    for name, plugin in (extra or {}).items():
        _collect(pm, name, plugin, reg)
    return reg


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry for this process, built once; load errors go to stderr as one line each."""
    reg = build_registry()
    for err in reg.errors:
        print(f"warning: {err}", file=sys.stderr)
    return reg
