"""Where plugins import the hook markers from: `from ab.gpt.brute.fract.hookspecs import hookimpl`.
The specifications live in `space/hookspecs.py`."""
from .space.hookspecs import PROJECT, hookimpl, hookspec

__all__ = ["PROJECT", "hookimpl", "hookspec"]
