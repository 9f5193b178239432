"""Lowering of the ops that run along one axis, the input seen as [A, R, B]: argmax / argmin, topk, cumsum."""

from __future__ import annotations

import math

from ...ir.graph import Node
from .k_reduce import arg_extreme, cumulative_sum, top_k
from .plan import Lit, LowerCtx
from .registry import lowers


def axis_view(ctx: LowerCtx, node: Node) -> tuple[int, tuple[int, int, int]]:
    """(the input's slot reshaped to [A, R, B] around the node's axis, (A, R, B)); refuses non-numeric inputs."""
    x = node.inputs[0]
    if x.type.dtype.np_dtype.kind not in "fiu":
        raise ctx.fail(f"{node.op} of dtype {x.type.dtype.name} is not supported")
    shape = x.type.shape
    axis = node.attrs["axis"] % len(shape)
    arb = (math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:]))
    return ctx.reshaped(ctx.arg(x), arb), arb


@lowers("argmax", "argmin")
def lower_arg_extreme(ctx: LowerCtx, node: Node) -> None:
    """The index of the extreme of each [a, :, b] (`k_reduce.arg_extreme`)."""
    out = ctx.out(node.outputs[0])
    if node.outputs[0].type.numel == 0:
        return
    x3, (a, r, b) = axis_view(ctx, node)
    ctx.emit(node.op, arg_extreme, x3, ctx.reshaped(out, (a, b)), Lit(node.op == "argmax"),
             Lit(bool(node.attrs["select_last_index"])), writes=(out,), work=a * r * b)


@lowers("topk")
def lower_topk(ctx: LowerCtx, node: Node) -> None:
    """The k extremes of each [a, :, b] and their positions (`k_reduce.top_k`)."""
    values, indices = (ctx.out(v) for v in node.outputs)
    if node.outputs[0].type.numel == 0:
        return
    x3, (a, r, b) = axis_view(ctx, node)
    k = node.attrs["k"]
    ctx.emit("topk", top_k, x3, ctx.reshaped(values, (a, k, b)), ctx.reshaped(indices, (a, k, b)),
             Lit(bool(node.attrs["largest"])), writes=(values, indices), work=a * b * r * max(1, r.bit_length()))


@lowers("cumsum")
def lower_cumsum(ctx: LowerCtx, node: Node) -> None:
    """Running sums along each [a, :, b] (`k_reduce.cumulative_sum`)."""
    out = ctx.out(node.outputs[0])
    if node.outputs[0].type.numel == 0:
        return
    x3, (a, r, b) = axis_view(ctx, node)
    ctx.emit("cumsum", cumulative_sum, x3, ctx.reshaped(out, (a, r, b)), Lit(bool(node.attrs["exclusive"])),
             Lit(bool(node.attrs["reverse"])), writes=(out,), work=a * r * b)
