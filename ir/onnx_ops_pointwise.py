"""ONNX activations, value tests and pixel shuffles imported as short compositions of IR ops.

Swish (x * sigmoid(alpha x)), SwiGLU (a * sigmoid(alpha a) * b, a and b of one shape), Celu (max(0, x) +
min(0, alpha (exp(x / alpha) - 1))), ThresholdedRelu (x where x > alpha, else 0), Mish (x * tanh(softplus(x))),
Shrink (x + bias below -lambd, x - bias above lambd, else 0), IsNaN (x != x), IsInf (|x| ==
inf, or one sign of it), SpaceToDepth and DepthToSpace (a reshape, a transpose and a reshape, blocks before the
channel (DCR) or after it (CRD)), each as ONNX's operator definition says; half-precision inputs are computed in
float32 and cast back.
"""

from __future__ import annotations

import math

from .onnx_context import Handle, NodeContext, UnsupportedError, converter, describe, np_dtype, shape_of
from .onnx_ops_math import softplus


def _float_input(ctx: NodeContext) -> tuple[Handle, str | None]:
    """The node's input X in float32 or float64 (half precision cast to float32) and the IR dtype to cast a float
    result back to (None: none)."""
    x = ctx.need(0, "X")
    name = np_dtype(x).name
    if name in ("float16", "bfloat16"):
        return ctx.op("cast", x, dtype="f32"), "f16" if name == "float16" else "bf16"
    if np_dtype(x).kind != "f":
        raise UnsupportedError(f"{ctx.node.op_type} of {describe(x)}: floating point only")
    return x, None


def _back(ctx: NodeContext, y: Handle, dtype: str | None) -> list[Handle | None]:
    return [ctx.op("cast", y, dtype=dtype) if dtype is not None else y]


@converter("Swish")
def _swish(ctx: NodeContext) -> list[Handle | None]:
    x, back = _float_input(ctx)
    alpha = float(ctx.attr("alpha", 1.0))
    scaled = x if alpha == 1.0 else ctx.op("mul", x, ctx.scalar(alpha, x))
    return _back(ctx, ctx.op("mul", x, ctx.op("sigmoid", scaled)), back)


@converter("SwiGLU")
def _swiglu(ctx: NodeContext) -> list[Handle | None]:
    a, back = _float_input(ctx)
    b = ctx.need(1, "B")
    if shape_of(b) != shape_of(a) or np_dtype(b) != np_dtype(ctx.need(0, "A")):
        raise ValueError("SwiGLU needs A and B of one shape and dtype (no broadcasting): "
                         f"{describe(ctx.need(0, 'A'))}, {describe(b)}")
    b = ctx.op("cast", b, dtype="f32") if back is not None else b
    alpha = float(ctx.attr("alpha", 1.0))
    scaled = a if alpha == 1.0 else ctx.op("mul", a, ctx.scalar(alpha, a))
    return _back(ctx, ctx.op("mul", ctx.op("mul", a, ctx.op("sigmoid", scaled)), b), back)


@converter("Celu")
def _celu(ctx: NodeContext) -> list[Handle | None]:
    x, back = _float_input(ctx)
    alpha = float(ctx.attr("alpha", 1.0))
    if alpha == 0.0:
        raise UnsupportedError("Celu with alpha=0: the definition divides by alpha")
    negative = ctx.op("mul", ctx.scalar(alpha, x),
                      ctx.op("sub", ctx.op("exp", ctx.op("div", x, ctx.scalar(alpha, x))), ctx.scalar(1.0, x)))
    zero = ctx.scalar(0.0, x)
    return _back(ctx, ctx.op("add", ctx.op("maximum", x, zero), ctx.op("minimum", negative, zero)), back)


@converter("ThresholdedRelu")
def _thresholded_relu(ctx: NodeContext) -> list[Handle | None]:
    x, back = _float_input(ctx)
    above = ctx.op("greater", x, ctx.scalar(float(ctx.attr("alpha", 1.0)), x))
    return _back(ctx, ctx.op("where", above, x, ctx.scalar(0.0, x)), back)


@converter("Mish")
def _mish(ctx: NodeContext) -> list[Handle | None]:
    x, back = _float_input(ctx)
    return _back(ctx, ctx.op("mul", x, ctx.op("tanh", softplus(ctx, x))), back)


@converter("Shrink")
def _shrink(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "input")
    lambd, bias = float(ctx.attr("lambd", 0.5)), float(ctx.attr("bias", 0.0))
    if np_dtype(x).kind == "u" and lambd < 0:
        raise UnsupportedError(f"Shrink of {describe(x)} with a negative lambd {lambd}")
    if np_dtype(x).kind != "f" and (lambd != int(lambd) or bias != int(bias)):
        raise UnsupportedError(f"Shrink of {describe(x)} with lambd {lambd}, bias {bias}: integer inputs need "
                               "integer lambd and bias")
    above = ctx.op("greater", x, ctx.scalar(lambd, x))
    outer = ctx.op("where", above, ctx.op("sub", x, ctx.scalar(bias, x)), ctx.scalar(0.0, x))
    if np_dtype(x).kind == "u":  # no unsigned value lies below -lambd <= 0
        return [outer]
    below = ctx.op("less", x, ctx.scalar(-lambd, x))
    return [ctx.op("where", below, ctx.op("add", x, ctx.scalar(bias, x)), outer)]


@converter("IsNaN")
def _is_nan(ctx: NodeContext) -> list[Handle | None]:
    x, _ = _float_input(ctx)
    return [ctx.op("logical-not", ctx.op("equal", x, x))]


@converter("IsInf")
def _is_inf(ctx: NodeContext) -> list[Handle | None]:
    x, _ = _float_input(ctx)
    positive, negative = bool(ctx.attr("detect_positive", 1)), bool(ctx.attr("detect_negative", 1))
    if positive and negative:
        return [ctx.op("equal", ctx.op("abs", x), ctx.scalar(math.inf, x))]
    if positive or negative:
        return [ctx.op("equal", x, ctx.scalar(math.inf if positive else -math.inf, x))]
    return [ctx.op("logical-and", ctx.op("equal", x, ctx.scalar(math.inf, x)),
                   ctx.op("equal", x, ctx.scalar(-math.inf, x)))]  # detects nothing: all false


def _block(ctx: NodeContext, x: Handle) -> tuple[int, int, int, int, int]:
    shape = shape_of(x)
    if len(shape) != 4:
        raise UnsupportedError(f"{ctx.node.op_type} of {describe(x)}: 4-D input only")
    b = int(ctx.attr("blocksize"))
    if b <= 0:
        raise UnsupportedError(f"{ctx.node.op_type}: blocksize {b} must be positive")
    return (*shape, b)  # type: ignore[return-value]


@converter("SpaceToDepth")
def _space_to_depth(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "input")
    n, c, h, w, b = _block(ctx, x)
    if h % b or w % b:
        raise UnsupportedError(f"SpaceToDepth of {describe(x)}: height and width must be multiples of {b}")
    mode = _mode(ctx)
    perm = {"DCR": [0, 3, 5, 1, 2, 4], "CRD": [0, 1, 3, 5, 2, 4]}[mode]  # blocks before or after the channel
    y = ctx.transpose(ctx.reshape(x, (n, c, h // b, b, w // b, b)), perm)
    return [ctx.reshape(y, (n, c * b * b, h // b, w // b))]


def _mode(ctx: NodeContext) -> str:
    """The node's `mode` attribute: DCR (the default) or CRD."""
    mode = ctx.attr("mode", "DCR")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode not in ("DCR", "CRD"):
        raise UnsupportedError(f"{ctx.node.op_type} mode {mode!r} (DCR and CRD are defined)")
    return mode


@converter("DepthToSpace")
def _depth_to_space(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "input")
    n, c, h, w, b = _block(ctx, x)
    if c % (b * b):
        raise UnsupportedError(f"DepthToSpace of {describe(x)}: channels must be a multiple of {b * b}")
    if _mode(ctx) == "DCR":
        y = ctx.transpose(ctx.reshape(x, (n, b, b, c // (b * b), h, w)), [0, 3, 4, 1, 5, 2])
    else:
        y = ctx.transpose(ctx.reshape(x, (n, c // (b * b), b, b, h, w)), [0, 1, 4, 2, 5, 3])
    return [ctx.reshape(y, (n, c // (b * b), h * b, w * b))]
