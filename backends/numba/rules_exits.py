"""Lowering of the early-exit ops: each is one step calling the reference's numpy code on the arena arrays.

An exit decides on a few values per row, so its cost is negligible next to the layers it skips; calling the
reference's function keeps the fire decisions identical on both backends (a row on a threshold's boundary
fires on both or on neither).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...ir.graph import Node
from ..reference.exits import exit_fire, select_rows
from .plan import LowerCtx
from .registry import lowers


@dataclass(frozen=True)
class ExitStep:
    """Kernel of one exit: fire mask of `head` (and its earlier heads) written into `out`."""

    node: Node

    def __call__(self, head: np.ndarray, *rest: np.ndarray) -> None:
        *earlier, out = rest
        out[...] = exit_fire(self.node, head, earlier)


def select_step(final: np.ndarray, *rest: np.ndarray) -> None:
    """Kernel of exit_select: `rest` is the (head, fire) pairs, then out and taken."""
    *pairs, out, taken = rest
    select_rows(final, pairs, out, taken)


@lowers("exit")
def _exit(ctx: LowerCtx, node: Node) -> None:
    ins = [ctx.arg(v) for v in node.inputs]
    out = ctx.out(node.outputs[0])
    ctx.emit("exit", ExitStep(node), *ins, out, writes=(out,))


@lowers("exit_select")
def _exit_select(ctx: LowerCtx, node: Node) -> None:
    ins = [ctx.arg(v) for v in node.inputs]
    outs = [ctx.out(v) for v in node.outputs]
    ctx.emit("exit_select", select_step, *ins, *outs, writes=tuple(outs))
