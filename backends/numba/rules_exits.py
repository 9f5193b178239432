"""Lowering of the early-exit ops: an exit is one compiled criterion kernel (`k_exits.py`) where its criterion
has one, else one step calling the reference's numpy code; exit_select calls the reference's numpy code.

The compiled criteria repeat the reference's arithmetic step by step (see `k_exits.py` for the one place they
may differ: a row on a threshold's boundary, within the math libraries' last-place differences of exp and log);
patience and cosine call the reference's function, so both backends fire on exactly the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...ir.graph import Node
from ..reference.exits import exit_fire, select_rows
from .k_exits import FIRE_KERNELS
from .plan import Lit, LowerCtx
from .registry import lowers


@dataclass(frozen=True)
class ExitStep:
    """Kernel of one exit by the reference's code: fire mask of `head` (and its earlier heads) written into `out`."""

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
    kernel = FIRE_KERNELS.get(node.attrs["criterion"])
    if kernel is not None:
        ctx.emit(f"exit-{node.attrs['criterion']}", kernel, ins[0], Lit(float(node.attrs["threshold"])), out,
                 writes=(out,))
    else:
        ctx.emit("exit", ExitStep(node), *ins, out, writes=(out,))


@lowers("exit_select")
def _exit_select(ctx: LowerCtx, node: Node) -> None:
    ins = [ctx.arg(v) for v in node.inputs]
    outs = [ctx.out(v) for v in node.outputs]
    ctx.emit("exit_select", select_step, *ins, *outs, writes=tuple(outs))
