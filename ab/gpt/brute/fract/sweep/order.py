"""The order in which a sweep hands out its models: longest first, so the slowest do not start last.

The length of a model's trial is taken as its FLOPs per image from the generation manifest (descending);
models without a manifest record keep their file order after those with one.
"""
from __future__ import annotations

from typing import Sequence, TypeVar

T = TypeVar("T")  # anything with a `flops` attribute (int or None): evaluate.ModelEntry


def longest_first(entries: Sequence[T]) -> list[T]:
    return sorted(entries, key=lambda e: (e.flops is None, -(e.flops or 0)))  # sorted() is stable


ORDERS = {"longest": longest_first, "file": list}
