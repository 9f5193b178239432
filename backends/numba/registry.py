"""The Numba backend's per-op lowering table: NUMBA_LOWERINGS[op](ctx, node)."""

from __future__ import annotations

from collections.abc import Callable

from ...ir.graph import Node
from .plan import LowerCtx

Rule = Callable[[LowerCtx, Node], None]

NUMBA_LOWERINGS: dict[str, Rule] = {}
"""How each op becomes slots and kernel calls; a graph with an op missing here does not lower."""


def lowers(*ops: str) -> Callable[[Rule], Rule]:
    """Decorator: register the rule for `ops`."""

    def deco(fn: Rule) -> Rule:
        for op in ops:
            if op in NUMBA_LOWERINGS:
                raise ValueError(f"numba backend: op {op!r} already has a lowering")
            NUMBA_LOWERINGS[op] = fn
        return fn

    return deco
