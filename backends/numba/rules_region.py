"""Lowering of `fused` regions (see ir/regions.py).

A matrix region runs as one kernel: its anchor (linear, matmul, conv2d) with the epilogue that
`epilogue.epilogue_from_region` builds from the body, applied per output tile; equations the
kernels cannot express (a leftover suffix) follow one by one. An elementwise region runs as one
loop generated from its body (`rules_region_elementwise`). Any other body, or an anchor that cannot
take an epilogue (integer dtypes), is lowered equation by equation (`lower_body_equations`), which
is correct for every body.
"""

from __future__ import annotations

from collections.abc import Callable

from ...ir.graph import Node, Value
from ...ir.regions import region_anchor, region_body
from .blocked import blocked_halo
from .epilogue import Epilogue, accepts_epilogue, epilogue_from_region
from .plan import LowerCtx
from .reference_steps import lower_node
from .registry import lowers
from .rules_conv import lower_conv, pools_in_kernel
from .rules_dense import lower_product
from .rules_integer import lower_qconv, lower_qproduct
from .rules_region_elementwise import lower_elementwise_region

MATRIX_LOWERINGS: dict[str, Callable[[LowerCtx, Node, Epilogue, Value], None]] = {
    "linear": lower_product, "matmul": lower_product, "conv2d": lower_conv,
    "qlinear": lower_qproduct, "qmatmul": lower_qproduct, "qconv2d": lower_qconv}
"""How each anchor op lowers with an epilogue, writing a given value."""


def bind_parameters(ctx: LowerCtx, node: Node) -> None:
    """Bind the body's parameters to the node's input slots (and its result to the node's output kind)."""
    body = region_body(node)
    for param, arg in zip(body.inputs, node.inputs):
        if ctx.is_deferred(arg):  # e.g. a widened int4 weight that the anchor may read packed instead
            ctx.defer(param, lambda arg=arg: ctx.slot(arg))  # type: ignore[misc]
        else:
            ctx.value_slot[id(param)] = ctx.slot(arg)
        if id(arg) in ctx.channels_last:
            ctx.channels_last[id(param)] = ctx.channels_last[id(arg)]
        if id(arg) in ctx.blocked:
            ctx.blocked[id(param)] = ctx.blocked[id(arg)]
    if id(node.outputs[0]) in ctx.out_ids:
        ctx.out_ids.add(id(body.outputs[0]))


def bind_result(ctx: LowerCtx, node: Node) -> None:
    """Bind the node's output to the slot of the body's result."""
    ctx.node = node
    result = region_body(node).outputs[0]
    if ctx.is_deferred(result):  # e.g. held blocked: its NCHW slot only if a reader asks for it
        ctx.defer(node.outputs[0], lambda: ctx.slot(result))
    else:
        ctx.value_slot[id(node.outputs[0])] = ctx.slot(result)
    if id(result) in ctx.channels_last:
        ctx.channels_last[id(node.outputs[0])] = ctx.channels_last[id(result)]
    if id(result) in ctx.blocked:
        ctx.blocked[id(node.outputs[0])] = ctx.blocked[id(result)]


def lower_equations(ctx: LowerCtx, equations: list[Node]) -> None:
    """Lower body equations one by one through their own rules."""
    for eq in equations:
        ctx.node = eq
        lower_node(ctx, eq)


def lower_body_equations(ctx: LowerCtx, node: Node) -> None:
    """Lower the body of `node` equation by equation, its parameters bound to the node's input slots."""
    bind_parameters(ctx, node)
    lower_equations(ctx, region_body(node).nodes)
    bind_result(ctx, node)


def lower_matrix_region(ctx: LowerCtx, node: Node) -> None:
    """A matrix region: the anchor and its epilogue in one kernel, then any leftover equations."""
    anchor, epi, leftover = epilogue_from_region(node)
    if not accepts_epilogue(anchor):
        lower_body_equations(ctx, node)
        return
    bind_parameters(ctx, node)
    halo = blocked_halo(ctx, node) if anchor.op == "conv2d" else None
    if epi.pool_2x2 and halo is None and not pools_in_kernel(ctx, anchor):  # the pool runs after the product
        leftover = [epi.equations[-1], *leftover]
        epi = epi.without_pool()
    if epi.mean and halo is None:  # only the blocked convolution averages its images: else the mean runs after it
        leftover = [epi.equations[-1], *leftover]
        epi = epi.without_mean()
    first = len(ctx.steps)
    ctx.node = anchor
    if anchor.op == "qconv2d":  # its result may stay channels last when the region's readers take it so
        lower_qconv(ctx, anchor, epi, epi.equations[-1].outputs[0], None if leftover else node.outputs[0])
    elif anchor.op == "conv2d":  # its result may stay blocked when the region's readers take it so
        lower_conv(ctx, anchor, epi, epi.equations[-1].outputs[0], halo)
    else:
        MATRIX_LOWERINGS[anchor.op](ctx, anchor, epi, epi.equations[-1].outputs[0])
    for step in ctx.steps[first:]:
        if not step.is_view:
            step.name = "+".join(eq.name for eq in epi.equations)
            step.op = "+".join(eq.op for eq in epi.equations)
    lower_equations(ctx, leftover)
    bind_result(ctx, node)


@lowers("fused")
def lower_region(ctx: LowerCtx, node: Node) -> None:
    """A fused region: a matrix region as one kernel, an elementwise one as one generated loop, any other
    body equation by equation."""
    body = region_body(node)
    if region_anchor(body) is not None:
        lower_matrix_region(ctx, node)
    elif not lower_elementwise_region(ctx, node):
        lower_body_equations(ctx, node)
