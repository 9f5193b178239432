"""Layout cleanup that `fuse` runs after recognition: data movement that a replacement leaves behind.

A recognized op comes back in the layout its consumers expect (attention, for instance, is followed
by the reshape and transpose to [B, H, S, D]); these exact rules cancel such layout ops against the
exporter's own, turn transposes that move only unit axes into free reshapes, and move a reshape
that keeps the feature axis in front of the linear that produced it, so that the residual add after
it becomes the linear's epilogue again.
"""

from __future__ import annotations

from ..ir.graph import Value
from .rewrite import Const, Rewriter, RuleSet, Var, op, rules
from .simplify import SIMPLIFY_RULES


def _unit_axes_transpose(rw: Rewriter, x: Value) -> Value | None:
    """A transpose whose non-unit axes keep their order is a reshape (no data moves)."""
    perm = rw.root.attrs["perm"]
    moved = [a for a in perm if x.type.shape[a] != 1]
    if moved != sorted(moved) or tuple(perm) == tuple(range(len(perm))):
        return None
    return rw.emit("reshape", x, shape=list(rw.root.outputs[0].type.shape))


def _reshape_before_linear(rw: Rewriter, x: Value, w: Value, lin: Value, b: Value | None = None) -> Value | None:
    """reshape(linear(x, w, b)) keeping the last axis is linear(reshape(x), w, b)."""
    shape = rw.root.outputs[0].type.shape
    if rw.uses_of(lin) != 1 or not shape or shape[-1] != lin.type.shape[-1]:
        return None
    xr = rw.emit("reshape", x, shape=list(shape[:-1]) + [x.type.shape[-1]])
    return rw.emit("linear", xr, w, *([b] if b is not None else []))


_KEPT = ("transpose-transpose", "identity-transpose", "reshape-reshape", "noop-reshape")

LAYOUT_CLEANUP: RuleSet = RuleSet(tuple(r for r in SIMPLIFY_RULES if r.name in _KEPT)) + rules(
    ("unit-axes-transpose", op("transpose", Var("x")), _unit_axes_transpose),
    ("reshape-before-linear", op("reshape", op("linear", Var("x"), Const("w"), Const("b"), capture="lin")),
     _reshape_before_linear),
    ("reshape-before-linear", op("reshape", op("linear", Var("x"), Const("w"), capture="lin")),
     _reshape_before_linear),
)
"""Exact rewrites; `fuse` applies them to a fixed point after recognizing patterns."""
