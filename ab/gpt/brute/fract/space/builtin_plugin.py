"""The built-in layer families and generators, registered through the same hooks as any plugin."""
from .families import BUILTIN_FAMILIES
from .generators import BUILTIN_GENERATORS
from .hookspecs import hookimpl


@hookimpl
def fractal_layer_families():
    return BUILTIN_FAMILIES


@hookimpl
def fractal_generators():
    return BUILTIN_GENERATORS
