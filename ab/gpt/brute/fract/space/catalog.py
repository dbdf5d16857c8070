"""What is registered: layer options, layer families and generators by name, and each plugin's share.

Plain data with no plugin loading, so the space, the template and the generators can use it without
importing the registry that loads them (`registry.build_registry` fills one).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .families import LayerFamily, LayerOption


@dataclass
class Contribution:
    families: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    generators: list[str] = field(default_factory=list)


@dataclass
class Registry:
    options: dict[str, LayerOption] = field(default_factory=dict)
    families: dict[str, LayerFamily] = field(default_factory=dict)
    generators: dict = field(default_factory=dict)
    contributions: dict[str, Contribution] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def options_for(self, slot: str, default_only: bool = False) -> list[str]:
        return [o.name for o in self.options.values()
                if o.slot == slot and (o.in_default_space or not default_only)]

    def option(self, name: str) -> LayerOption:
        return self.options[name]
