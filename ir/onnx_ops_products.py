"""Products along an axis on run-time values, in logarithmic depth: ReduceProd and CumProd as IR ops.

ReduceProd halves each reduced axis until one element is left (an odd length padded with a one), so n elements take
log2(n) multiplications of halves; CumProd is a Hillis-Steele scan (the running product times itself shifted by 1,
2, 4, ... with ones shifted in), `exclusive` shifting the result by one and `reverse` gathering the axis backwards
before and after. Integer products are exact (they wrap as the sequential product does); float ones round in another
order than a left-to-right product, within a few ulps.
"""

from __future__ import annotations

import numpy as np

from .onnx_context import Handle, NodeContext, UnsupportedError, converter, describe, norm_axis, np_dtype, shape_of
from .onnx_ops_shape import constant_pad, slice_handle


def _ones(x: Handle, axis: int, n: int) -> np.ndarray:
    """Ones of x's dtype and shape, n long along axis."""
    shape = list(shape_of(x))
    shape[axis] = n
    return np.ones(shape, np_dtype(x))


def _take(ctx: NodeContext, x: Handle, axis: int, start: int, stop: int) -> Handle:
    return slice_handle(ctx, x, [start], [stop], [axis], [1])


def product_along(ctx: NodeContext, x: Handle, axis: int) -> Handle:
    """The product of x along `axis`, that axis kept with length 1 (ones for an empty axis)."""
    n = shape_of(x)[axis]
    if n == 0:
        return _ones(x, axis, 1)
    while n > 1:
        if n % 2:
            x = constant_pad(ctx, x, axis, 0, 1, 1)
            n += 1
        x = ctx.op("mul", _take(ctx, x, axis, 0, n // 2), _take(ctx, x, axis, n // 2, n))
        n //= 2
    return x


def _flip(ctx: NodeContext, x: Handle, axis: int) -> Handle:
    return ctx.op("gather", x, np.arange(shape_of(x)[axis] - 1, -1, -1, dtype=np.int64), axis=axis)


def running_product(ctx: NodeContext, x: Handle, axis: int, exclusive: bool, reverse: bool) -> Handle:
    """The cumulative product of x along `axis` (ONNX's CumProd)."""
    n = shape_of(x)[axis]
    if n == 0:
        return x
    y = _flip(ctx, x, axis) if reverse else x
    k = 1
    while k < n:  # y[i] = x[i - 2k + 1] * ... * x[i] after this step
        shifted = ctx.op("concat", _ones(y, axis, k), _take(ctx, y, axis, 0, n - k), axis=axis)
        y = ctx.op("mul", y, shifted)
        k *= 2
    if exclusive and n == 1:
        y = _ones(y, axis, 1)
    elif exclusive:
        y = ctx.op("concat", _ones(y, axis, 1), _take(ctx, y, axis, 0, n - 1), axis=axis)
    return _flip(ctx, y, axis) if reverse else y


def reduce_prod(ctx: NodeContext, x: Handle, axes: list[int] | None, keepdims: bool) -> Handle:
    """ReduceProd of a run-time x over `axes` (all when None)."""
    if np_dtype(x).kind not in "fiu":
        raise UnsupportedError(f"ReduceProd of {describe(x)}: numbers only")
    rank = len(shape_of(x))
    axes = sorted({norm_axis(a, rank, "reduce axis") for a in (range(rank) if axes is None else axes)})
    for a in axes:
        x = product_along(ctx, x, a)
    if keepdims:
        return x
    return ctx.reshape(x, [d for i, d in enumerate(shape_of(x)) if i not in axes])


@converter("CumProd")
def _cum_prod(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "x")
    axis = ctx.const(1, "axis")
    if axis is None:
        raise ValueError("input 1 (axis) is required")
    if np_dtype(x).kind not in "fiu":
        raise UnsupportedError(f"CumProd of {describe(x)}: numbers only")
    a = norm_axis(int(np.asarray(axis).reshape(-1)[0]), len(shape_of(x)))
    return [running_product(ctx, x, a, bool(ctx.attr("exclusive", 0)), bool(ctx.attr("reverse", 0)))]
