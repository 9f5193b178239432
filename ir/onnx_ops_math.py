"""ONNX converters for elementwise math, activations, softmax, reductions and quantization."""

from __future__ import annotations

import math

import numpy as np

from .onnx_context import (
    Handle,
    NodeContext,
    UnsupportedError,
    converter,
    describe,
    norm_axis,
    np_dtype,
    shape_of,
)

_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow"}
_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Erf": "erf", "Sqrt": "sqrt", "Exp": "exp",
          "Log": "log", "Neg": "neg", "Abs": "abs", "Floor": "floor", "Ceil": "ceil", "Round": "round", "Sign": "sign",
          "Sin": "sin", "Cos": "cos", "Tan": "tan", "Asin": "asin", "Acos": "acos", "Atan": "atan", "Sinh": "sinh",
          "Cosh": "cosh", "Asinh": "asinh", "Acosh": "acosh", "Atanh": "atanh"}


def legacy_broadcast(ctx: NodeContext, a: Handle, b: Handle) -> Handle:
    """Opsets before 7: `broadcast=1` with `axis` aligns b's dims to a's dims starting at axis."""
    if ctx.opset >= 7 or not ctx.attr("broadcast", 0):
        return b
    axis = ctx.attr("axis")
    ra, rb = len(shape_of(a)), len(shape_of(b))
    if axis is None:
        return b
    axis = norm_axis(axis, ra)
    if axis + rb > ra:
        raise ValueError(f"legacy broadcast: {describe(b)} does not fit {describe(a)} at axis {axis}")
    return ctx.reshape(b, shape_of(b) + (1,) * (ra - axis - rb))


def match_dtype(ctx: NodeContext, x: Handle, like: Handle) -> Handle:
    """`x` in the dtype of `like` (constants converted at import, values through a cast node)."""
    want = np_dtype(like)
    if np_dtype(x) == want:
        return x
    if isinstance(x, np.ndarray):
        return x.astype(want)
    from .dtypes import dtype_from_numpy

    return ctx.op("cast", x, dtype=dtype_from_numpy(want).name)


@converter(*_BINARY)
def _binary(ctx: NodeContext) -> list[Handle | None]:
    a, b = ctx.need(0, "A"), ctx.need(1, "B")
    b = legacy_broadcast(ctx, a, b)
    if ctx.node.op_type == "Pow":
        b = match_dtype(ctx, b, a)
    return [ctx.op(_BINARY[ctx.node.op_type], a, b)]


@converter("Sum", "Max", "Min", "Mean")
def _variadic(ctx: NodeContext) -> list[Handle | None]:
    xs = [h for h in ctx.inputs if h is not None]
    if not xs:
        raise ValueError("needs at least one input")
    op = {"Sum": "add", "Mean": "add", "Max": "maximum", "Min": "minimum"}[ctx.node.op_type]
    acc = xs[0]
    for x in xs[1:]:
        acc = ctx.op(op, acc, x)
    if ctx.node.op_type == "Mean" and len(xs) > 1:
        acc = ctx.op("div", acc, ctx.scalar(len(xs), acc))
    return [acc]


@converter(*_UNARY)
def _unary(ctx: NodeContext) -> list[Handle | None]:
    return [ctx.op(_UNARY[ctx.node.op_type], ctx.need(0, "X"))]


@converter("Reciprocal")
def _reciprocal(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "X")
    return [ctx.op("div", ctx.scalar(1.0, x), x)]


@converter("Gelu")
def _gelu(ctx: NodeContext) -> list[Handle | None]:
    return [ctx.op("gelu", ctx.need(0, "X"), approximate=ctx.attr("approximate", "none"))]


def _neg_part(ctx: NodeContext, x: Handle) -> Handle:
    """relu(-x): the magnitude of the negative part."""
    return ctx.op("relu", ctx.op("neg", x))


@converter("LeakyRelu")
def _leaky_relu(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "X")
    alpha = ctx.scalar(ctx.attr("alpha", 0.01), x)
    return [ctx.op("sub", ctx.op("relu", x), ctx.op("mul", alpha, _neg_part(ctx, x)))]


@converter("PRelu")
def _prelu(ctx: NodeContext) -> list[Handle | None]:
    x, slope = ctx.need(0, "X"), ctx.need(1, "slope")
    xs, ss = shape_of(x), shape_of(slope)
    if len(ss) == 1 and len(xs) > 2 and ss[0] == xs[1] != 1 and (ctx.opset < 7 or xs[-1] != ss[0]):
        slope = ctx.reshape(slope, (ss[0],) + (1,) * (len(xs) - 2))  # per-channel slope
    return [ctx.op("sub", ctx.op("relu", x), ctx.op("mul", slope, _neg_part(ctx, x)))]


def _elu(ctx: NodeContext, x: Handle, alpha: float) -> Handle:
    """relu(x) + alpha * (exp(min(x, 0)) - 1)."""
    neg = ctx.op("neg", _neg_part(ctx, x))
    em1 = ctx.op("sub", ctx.op("exp", neg), ctx.scalar(1.0, x))
    return ctx.op("add", ctx.op("relu", x), ctx.op("mul", ctx.scalar(alpha, x), em1))


@converter("Elu")
def _elu_conv(ctx: NodeContext) -> list[Handle | None]:
    return [_elu(ctx, ctx.need(0, "X"), ctx.attr("alpha", 1.0))]


@converter("Selu")
def _selu(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "X")
    y = _elu(ctx, x, ctx.attr("alpha", 1.67326319217681884765625))
    return [ctx.op("mul", ctx.scalar(ctx.attr("gamma", 1.05070102214813232421875), x), y)]


def softplus(ctx: NodeContext, x: Handle) -> Handle:
    """log(1 + exp(x)) as relu(x) + log(1 + exp(-|x|)): no overflow for large |x|."""
    tail = ctx.op("log", ctx.op("add", ctx.scalar(1.0, x), ctx.op("exp", ctx.op("neg", ctx.op("abs", x)))))
    return ctx.op("add", ctx.op("relu", x), tail)


@converter("Softplus")
def _softplus(ctx: NodeContext) -> list[Handle | None]:
    return [softplus(ctx, ctx.need(0, "X"))]


@converter("Softsign")
def _softsign(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "X")
    return [ctx.op("div", x, ctx.op("add", ctx.scalar(1.0, x), ctx.op("abs", x)))]


def _hard_sigmoid(ctx: NodeContext, x: Handle, alpha: float, beta: float) -> Handle:
    y = ctx.op("add", ctx.op("mul", x, ctx.scalar(alpha, x)), ctx.scalar(beta, x))
    return ctx.op("clip", y, min=0.0, max=1.0)


@converter("HardSigmoid")
def _hard_sigmoid_conv(ctx: NodeContext) -> list[Handle | None]:
    return [_hard_sigmoid(ctx, ctx.need(0, "X"), ctx.attr("alpha", 0.2), ctx.attr("beta", 0.5))]


@converter("HardSwish")
def _hard_swish(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "X")
    return [ctx.op("mul", x, _hard_sigmoid(ctx, x, 1.0 / 6.0, 0.5))]


@converter("Clip")
def _clip(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "input")
    if ctx.opset < 11:
        lo, hi = ctx.attr("min", -math.inf), ctx.attr("max", math.inf)
    else:
        lo_a, hi_a = ctx.const(1, "min"), ctx.const(2, "max")
        for arr, what in ((lo_a, "min"), (hi_a, "max")):
            if arr is not None and arr.size != 1:
                raise ValueError(f"{what} must be a scalar, got shape {list(arr.shape)}")
        lo = -math.inf if lo_a is None else float(lo_a.reshape(()))
        hi = math.inf if hi_a is None else float(hi_a.reshape(()))
    return [ctx.op("clip", x, min=lo, max=hi)]


def _coerced_axis(ctx: NodeContext, x: Handle, default13: int = -1) -> tuple[int, bool]:
    """The softmax axis, and whether opsets < 13's 2-D coercion changes the result."""
    rank = len(shape_of(x))
    if ctx.opset >= 13:
        return norm_axis(ctx.attr("axis", default13), rank), False
    axis = norm_axis(ctx.attr("axis", 1), rank)
    return axis, axis != rank - 1


def _softmax_like(ctx: NodeContext, x: Handle, axis: int, log: bool) -> Handle:
    if not log:
        return ctx.op("softmax", x, axis=axis)
    m = ctx.op("reduce-max", x, axes=[axis], keepdims=True)
    s = ctx.op("sub", x, m)
    lse = ctx.op("log", ctx.op("reduce-sum", ctx.op("exp", s), axes=[axis], keepdims=True))
    return ctx.op("sub", s, lse)


@converter("Softmax", "LogSoftmax")
def _softmax(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "input")
    log = ctx.node.op_type == "LogSoftmax"
    axis, coerce = _coerced_axis(ctx, x)
    if not coerce:
        return [_softmax_like(ctx, x, axis, log)]
    flat = ctx.op("flatten", x, axis=axis)  # opsets < 13: softmax over all axes from `axis` on
    return [ctx.reshape(_softmax_like(ctx, flat, 1, log), shape_of(x))]


def reduce_axes(ctx: NodeContext, x: Handle, input_from: int) -> list[int] | None:
    """The reduction axes (attribute before `input_from`, input 1 after); None means identity."""
    rank = len(shape_of(x))
    if ctx.opset < input_from:
        axes = ctx.attr("axes")
    else:
        arr = ctx.const(1, "axes")
        axes = None if arr is None else [int(v) for v in arr.reshape(-1)]
    if not axes:
        return None if ctx.attr("noop_with_empty_axes", 0) else list(range(rank))
    return sorted(norm_axis(int(a), rank, "reduce axis") for a in axes)


_REDUCE_INPUT_FROM = {"ReduceSum": 13}


@converter("TopK")
def _topk(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "X")
    if np_dtype(x).kind not in "fiu":
        raise UnsupportedError(f"TopK of {describe(x)}: numbers only")
    k = ctx.attr("k") if ctx.opset < 10 else ctx.const(1, "K")
    if k is None:
        raise ValueError("TopK needs K")
    values, indices = ctx.op_outputs("topk", x, k=int(np.asarray(k).reshape(-1)[0]), axis=int(ctx.attr("axis", -1)),
                                     largest=bool(ctx.attr("largest", 1)))
    return [values, indices]


@converter("CumSum")
def _cumsum(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "x")
    axis = ctx.const(1, "axis")
    if axis is None:
        raise ValueError("input 1 (axis) is required")
    if np_dtype(x).kind not in "fiu":
        raise UnsupportedError(f"CumSum of {describe(x)}: numbers only")
    return [ctx.op("cumsum", x, axis=int(axis.reshape(-1)[0]), exclusive=bool(ctx.attr("exclusive", 0)),
                   reverse=bool(ctx.attr("reverse", 0)))]


@converter("ArgMax", "ArgMin")
def _arg_extreme(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "data")
    if np_dtype(x).kind not in "fiu":
        raise UnsupportedError(f"{ctx.node.op_type} of {describe(x)}: numeric inputs only")
    op = "argmax" if ctx.node.op_type == "ArgMax" else "argmin"
    return [ctx.op(op, x, axis=int(ctx.attr("axis", 0)), keepdims=bool(ctx.attr("keepdims", 1)),
                   select_last_index=bool(ctx.attr("select_last_index", 0)))]


@converter("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceSumSquare", "ReduceL1", "ReduceL2")
def _reduce(ctx: NodeContext) -> list[Handle | None]:
    op_type = ctx.node.op_type
    x = ctx.need(0, "data")
    axes = reduce_axes(ctx, x, _REDUCE_INPUT_FROM.get(op_type, 18))
    if axes is None:
        return [x]
    keep = bool(ctx.attr("keepdims", 1))
    if any(shape_of(x)[a] == 0 for a in axes):
        return [_empty_reduction(op_type, x, axes, keep)]
    if op_type in ("ReduceMean", "ReduceSum", "ReduceMax"):
        ir = {"ReduceMean": "reduce-mean", "ReduceSum": "reduce-sum", "ReduceMax": "reduce-max"}[op_type]
        return [ctx.op(ir, x, axes=axes, keepdims=keep)]
    if op_type == "ReduceMin":
        if np_dtype(x) == np.bool_:  # all(x) = not any(not x)
            return [ctx.op("logical-not", ctx.op("reduce-max", ctx.op("logical-not", x), axes=axes, keepdims=keep))]
        if np_dtype(x).kind not in "fi":
            raise UnsupportedError(f"ReduceMin of {describe(x)} (computed as -max(-x): float, signed and bool types "
                                   "only)")
        return [ctx.op("neg", ctx.op("reduce-max", ctx.op("neg", x), axes=axes, keepdims=keep))]
    if op_type == "ReduceL1":
        return [ctx.op("reduce-sum", ctx.op("abs", x), axes=axes, keepdims=keep)]
    sq = ctx.op("reduce-sum", ctx.op("mul", x, x), axes=axes, keepdims=keep)
    return [sq if op_type == "ReduceSumSquare" else ctx.op("sqrt", sq)]


def _empty_reduction(op_type: str, x: Handle, axes: list[int], keep: bool) -> np.ndarray:
    """A reduction over an empty axis: a constant (its identity: 0, -inf/lowest for max, ...)."""
    dt = np_dtype(x)
    shape = tuple(1 if i in axes else d for i, d in enumerate(shape_of(x)) if keep or i not in axes)
    if op_type in ("ReduceMax", "ReduceMin"):
        lo_hi = (False, True) if dt.kind == "b" else (
            (-np.inf, np.inf) if dt.kind == "f" else (np.iinfo(dt).min, np.iinfo(dt).max))
        fill = lo_hi[0] if op_type == "ReduceMax" else lo_hi[1]
    else:
        fill = np.nan if op_type == "ReduceMean" else 0
    return np.full(shape, fill, dtype=dt)
