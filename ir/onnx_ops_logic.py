"""ONNX converters for comparisons, logic and selection.

On constants (the shape and mask computations of exported models) these are evaluated at import.
On run-time values comparisons, And / Or / Xor / Not and Where become the IR's ops (ir/ops/logic.py);
so does Mod (the IR's `mod`), and ReduceProd becomes products of halves (`onnx_ops_products.py`); Range is
evaluated at import only. Where with a constant condition
selects between run-time tensors by exact data movement: both branches are flattened side by side and
one gather with a constant index picks each element from its branch.
"""

from __future__ import annotations

import math

import numpy as np

from .onnx_context import Handle, NodeContext, UnsupportedError, converter, describe, norm_axis, np_dtype, shape_of
from .onnx_ops_products import reduce_prod
from .onnx_ops_shape import broadcast_to

_FOLD_ONLY = {
    "Equal": np.equal, "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
    "GreaterOrEqual": np.greater_equal, "And": np.logical_and, "Or": np.logical_or, "Not": np.logical_not,
    "Xor": np.logical_xor, "Range": None, "ReduceProd": None, "Mod": None,
}
RUN_TIME_OPS = {"Equal": "equal", "Less": "less", "Greater": "greater", "LessOrEqual": "less-equal",
                "GreaterOrEqual": "greater-equal", "And": "logical-and", "Or": "logical-or", "Xor": "logical-xor",
                "Not": "logical-not"}
"""ONNX operators with an IR op for run-time operands."""


@converter(*_FOLD_ONLY)
def _fold_only(ctx: NodeContext) -> list[Handle | None]:
    op = ctx.node.op_type
    if any(not isinstance(h, np.ndarray) for h in ctx.inputs if h is not None):
        if op == "Mod":
            a, b = ctx.need(0, "A"), ctx.need(1, "B")
            if np_dtype(a) != np_dtype(b):
                raise ValueError(f"Mod operands {describe(a)}, {describe(b)} differ in type")
            return [ctx.op("mod", a, b, fmod=bool(ctx.attr("fmod", 0)))]
        if op == "ReduceProd":
            x = ctx.need(0, "data")
            if ctx.opset < 18:
                axes = ctx.attr("axes")
            else:
                arr = ctx.const(1, "axes")
                axes = None if arr is None else [int(v) for v in arr.reshape(-1)]
            if not axes and ctx.attr("noop_with_empty_axes", 0):
                return [x]
            return [reduce_prod(ctx, x, list(axes) if axes else None, bool(ctx.attr("keepdims", 1)))]
        if op in RUN_TIME_OPS:
            args = [h for h in ctx.inputs if h is not None]
            if len({np_dtype(h) for h in args}) > 1:
                raise ValueError(f"{op} operands {', '.join(describe(h) for h in args)} differ in type")
            return [ctx.op(RUN_TIME_OPS[op], *args)]
        raise UnsupportedError(f"{op} on run-time values (it is evaluated at import only, on constants)")
    args = [h for h in ctx.inputs if h is not None]
    if op == "Range":
        start, limit, delta = (a.reshape(()) for a in args)
        if delta == 0:
            raise ValueError("Range with delta 0")
        ctx.check_size([max(math.ceil((limit - start) / delta), 0)], args[0].dtype, "the output")
        return [np.arange(start, limit, delta, dtype=args[0].dtype)]
    if op == "ReduceProd":
        x = args[0]
        axes = [int(a) for a in args[1].reshape(-1)] if len(args) > 1 else ctx.attr("axes")
        ax = tuple(norm_axis(a, x.ndim) for a in axes) if axes else None
        return [np.prod(x, axis=ax, keepdims=bool(ctx.attr("keepdims", 1))).astype(x.dtype)]
    if op == "Mod":  # fmod=0: the remainder takes the divisor's sign (integers); fmod=1: C's fmod
        fn = np.fmod if ctx.attr("fmod", 0) else np.mod
        return [np.asarray(fn(args[0], args[1])).astype(np.result_type(args[0], args[1]))]
    return [np.asarray(_FOLD_ONLY[op](*args))]


@converter("Where")
def _where(ctx: NodeContext) -> list[Handle | None]:
    cond, x, y = ctx.need(0, "condition"), ctx.need(1, "X"), ctx.need(2, "Y")
    if not isinstance(cond, np.ndarray):
        if np_dtype(cond) != np.dtype(bool) or np_dtype(x) != np_dtype(y):
            raise ValueError(f"Where needs a bool condition and X, Y of one type, got {describe(cond)}, "
                             f"{describe(x)}, {describe(y)}")
        return [ctx.op("where", cond, x, y)]
    if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
        ctx.check_size(np.broadcast_shapes(cond.shape, x.shape, y.shape), x.dtype, "the output")
        return [np.where(cond, x, y)]
    if np_dtype(x) != np_dtype(y):
        raise ValueError(f"X {describe(x)} and Y {describe(y)} have different dtypes")
    out = np.broadcast_shapes(cond.shape, shape_of(x), shape_of(y))
    ctx.check_size(out, np.int64, "the output (and its gather indices)")
    c = np.broadcast_to(cond.astype(bool), out)
    if c.all():
        return [broadcast_to(ctx, x, out)]
    if not c.any():
        return [broadcast_to(ctx, y, out)]
    n = int(np.prod(out))
    both = ctx.op("concat", ctx.reshape(broadcast_to(ctx, y, out), [n]), ctx.reshape(broadcast_to(ctx, x, out), [n]),
                  axis=0)
    index = np.where(c, np.arange(n).reshape(out) + n, np.arange(n).reshape(out))
    return [ctx.op("gather", both, index.astype(np.int64), axis=0)]


@converter("Trilu")
def _trilu(ctx: NodeContext) -> list[Handle | None]:
    """The upper (upper=1, default) or lower triangle of the last two axes, diagonal offset k: on constants folded,
    on run-time values `where` with the constant triangle mask (the shapes are static)."""
    x = ctx.need(0, "input")
    k_in = ctx.input(1)
    if k_in is not None and not isinstance(k_in, np.ndarray):
        raise UnsupportedError(f"Trilu with k computed at run time ({describe(k_in)}): the mask is built at import")
    k = int(np.asarray(k_in).reshape(-1)[0]) if k_in is not None else 0
    shape = shape_of(x)
    if len(shape) < 2:
        raise ValueError(f"Trilu input {describe(x)} must have rank >= 2")
    rows, cols = np.indices(shape[-2:])
    keep = cols - rows >= k if ctx.attr("upper", 1) else cols - rows <= k
    if isinstance(x, np.ndarray):
        return [np.where(keep, x, x.dtype.type(0))]
    return [ctx.op("where", keep, x, np.zeros((), np_dtype(x)))]
