"""Lowering of `fused` regions: each body equation through its own rule, reading the region's inputs.

This is the general form, correct for any body; matrix regions with an epilogue the kernels can
apply per tile, and elementwise regions, get one kernel instead (see `lower_region`).
"""

from __future__ import annotations

from ...ir.graph import Node
from ...ir.regions import region_anchor
from .plan import LowerCtx
from .registry import NUMBA_LOWERINGS, lowers
from .rules_region_elementwise import lower_elementwise_region


def lower_body_equations(ctx: LowerCtx, node: Node) -> None:
    """Lower the body of `node` equation by equation, its parameters bound to the node's input slots."""
    body = node.attrs["body"]
    for param, arg in zip(body.inputs, node.inputs):
        ctx.value_slot[id(param)] = ctx.slot(arg)
    result, outer = body.outputs[0], node.outputs[0]
    if id(outer) in ctx.out_ids:
        ctx.out_ids.add(id(result))
    for inner in body.nodes:
        ctx.node = inner
        NUMBA_LOWERINGS[inner.op](ctx, inner)
    ctx.node = node
    ctx.value_slot[id(outer)] = ctx.slot(result)


@lowers("fused")
def lower_region(ctx: LowerCtx, node: Node) -> None:
    """A fused region."""
    body = node.attrs["body"]
    if region_anchor(body) is None and lower_elementwise_region(ctx, node):
        return
    lower_body_equations(ctx, node)
