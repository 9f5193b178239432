"""ONNX converters for the quantized operator forms: QLinearMatMul, QLinearConv, DynamicQuantizeLinear.

QLinearMatMul with a constant B becomes `qmatmul` and QLinearConv becomes `qconv2d`, both requantizing
their int32 accumulators to the u8/s8 of y_zero_point with y_scale (round half to even, saturating), as
ONNX defines them. DynamicQuantizeLinear becomes per-tensor `quantize-dynamic`, its i32 zero point cast
to u8. A weight zero point is subtracted here when w - w_zero_point stays in [-128, 127] (always for u8
weights with zero point 128): s8 weights with no zero point, which every int8 kernel takes. Otherwise (an
asymmetric u8 or s8 weight, as ONNX Runtime's quantizer writes with weight_type QUInt8) the weight is kept
in s8 (u8 weights less 128) with the op's `weight_zero_point` (the zero point less the same 128). A
constant 3-D B with a 3-D a of the same batch is one qmatmul per batch entry, concatenated. What the integer
ops cannot express (a computed B, per-row y_scale, another B rank, a convolution that is not 2-D) is refused
with the reason. See docs/ir.md, "Quantized ONNX models".
"""

from __future__ import annotations

import math

import numpy as np

from .onnx_context import Handle, NodeContext, UnsupportedError, converter, describe, np_dtype, shape_of
from .onnx_ops_math import match_dtype
from .onnx_ops_nn import conv_kernel, window_attrs
from .ops.integer import WEIGHT_BITS

_INT8 = {np.dtype(np.uint8): "u8", np.dtype(np.int8): "i8"}
_F32 = np.zeros(0, np.float32)


def _int8_input(ctx: NodeContext, i: int, what: str) -> Handle:
    """Input `i`, which must be u8 or s8."""
    h = ctx.need(i, what)
    if np_dtype(h) not in _INT8:
        raise UnsupportedError(f"{what} is {describe(h)}; the integer ops take uint8 or int8")
    return h


def _size(h: Handle) -> int:
    return math.prod(shape_of(h))


def _activation_params(ctx: NodeContext, i: int, x: Handle, rows: int, what: str) -> tuple[Handle, Handle]:
    """Inputs i, i + 1 (scale, zero point of `x`) as f32 and i32 of shape [1], or [rows] when rows > 1."""
    scale, zp = ctx.need(i, f"{what}_scale"), ctx.input(i + 1)
    n = _size(scale)
    if len(shape_of(scale)) > 1 or n not in (1, rows):
        per = f"one per row ({rows})" if rows > 1 else "one per tensor"
        raise UnsupportedError(f"{what}_scale {describe(scale)}: the integer ops take {per}")
    if zp is None:
        zp = np.zeros(n, np_dtype(x))
    if np_dtype(zp) != np_dtype(x) or _size(zp) != n:
        raise ValueError(f"{what}_zero_point {describe(zp)} must match {what} {describe(x)} in dtype and "
                         f"{what}_scale {describe(scale)} in size")
    if not np.issubdtype(np_dtype(scale), np.floating):
        raise ValueError(f"{what}_scale {describe(scale)} must be floating point")
    s = ctx.reshape(match_dtype(ctx, scale, _F32), (n,))
    return s, ctx.reshape(ctx.op("cast", zp, dtype="i32"), (n,))


def _weight_scale(ctx: NodeContext, i: int, channels: int, axis: int, what: str) -> Handle:
    """Input i (a weight's scale, constant or computed) as f32 [channels]."""
    scale = ctx.need(i, f"{what}_scale")
    n = _size(scale)
    if len(shape_of(scale)) > 1 or n not in (1, channels):
        raise UnsupportedError(f"{what}_scale {describe(scale)}: the integer ops take one scale per tensor or per "
                               f"output channel ({channels}, axis {axis} of {what})")
    if not np.issubdtype(np_dtype(scale), np.floating):
        raise ValueError(f"{what}_scale {describe(scale)} must be floating point")
    if isinstance(scale, np.ndarray):
        if not np.all(np.isfinite(scale)) or not np.all(scale > 0):
            raise ValueError(f"{what}_scale must be positive and finite, got {scale.reshape(-1)[:4].tolist()}")
        return np.broadcast_to(scale.astype(np.float32).reshape(-1), (channels,)).copy()
    s = ctx.reshape(match_dtype(ctx, scale, _F32), (n,))
    return s if n == channels else ctx.op("mul", s, np.ones(channels, np.float32))


def _weight(ctx: NodeContext, i: int, channels: int, axis: int, what: str,
            batch: int | None = None) -> tuple[np.ndarray, Handle, dict[str, object]]:
    """Inputs i..i+2 (w, w_scale, w_zero_point) as (s8 weight, f32 scale per channel, the op's weight_bits and
    weight_zero_point): w - w_zero_point when that fits s8, else w (less 128 when u8) with the zero point (less
    the same). `batch`: the weight is w[batch] of a batched w."""
    whole = _int8_input(ctx, i, what)
    if not isinstance(whole, np.ndarray):
        raise UnsupportedError(f"{what} is computed at run time ({describe(whole)}); the integer ops take a "
                               "constant weight")
    h = whole if batch is None else ctx.derived(np.ascontiguousarray(whole[batch]), whole, f"[{batch}]")
    ws = _weight_scale(ctx, i + 1, channels, axis, what)
    zp = ctx.const(i + 2, f"{what}_zero_point")
    zp = np.zeros(1, h.dtype) if zp is None else zp
    if zp.dtype != h.dtype or zp.ndim > 1 or zp.size not in (1, channels):
        raise ValueError(f"{what}_zero_point (constant {zp.dtype}{list(zp.shape)}) must be {h.dtype} with one "
                         f"value per tensor or per output channel ({channels})")
    bshape = [1] * h.ndim
    bshape[axis] = -1
    w = h.astype(np.int32) - zp.astype(np.int32).reshape(bshape if zp.size > 1 else ())
    lo, hi = (int(w.min()), int(w.max())) if w.size else (0, 0)
    shifted: tuple[int, ...] = ()
    if lo < -128 or hi > 127:  # kept with its zero point: both moved into s8 by the same 128 when u8
        offset = 128 if h.dtype == np.uint8 else 0
        w = h.astype(np.int32) - offset
        shifted = tuple(int(z) - offset for z in zp.reshape(-1))
        lo, hi = (int(w.min()), int(w.max())) if w.size else (0, 0)
    lo7, hi7 = WEIGHT_BITS[7]
    bits = 7 if lo >= lo7 and hi <= hi7 else 8
    return ctx.derived(w.astype(np.int8), h, ".s8"), ws, {"weight_bits": bits, "weight_zero_point": shifted}


def _output_params(ctx: NodeContext, i: int, default: np.dtype) -> dict[str, object]:
    """Inputs i, i + 1 (y_scale, y_zero_point) as the integer ops' dtype / out_scale / out_zero_point."""
    scale, zp = ctx.const(i, "y_scale"), ctx.const(i + 1, "y_zero_point")
    if scale is None:
        raise ValueError(f"input {i} (y_scale) is required")
    if scale.size != 1:
        raise UnsupportedError(f"y_scale of shape {list(scale.shape)}: the integer ops requantize with one "
                               "output scale per tensor here (per-row output scales have no IR form)")
    s = float(scale.astype(np.float32).reshape(-1)[0])
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"y_scale must be positive and finite, got {s}")
    zp = np.zeros(1, default) if zp is None else zp
    if zp.dtype not in _INT8 or zp.size != 1:
        raise UnsupportedError(f"y_zero_point (constant {zp.dtype}{list(zp.shape)}): one uint8 or int8 value")
    return {"dtype": _INT8[zp.dtype], "out_scale": [s], "out_zero_point": [int(zp.reshape(-1)[0])]}


def _batched_qlinear_matmul(ctx: NodeContext, a: Handle, b: Handle) -> Handle:
    """QLinearMatMul of a [B, M, K] by a constant b [B, K, N]: one qmatmul per batch entry, stacked."""
    (nb, m, k), n = shape_of(a), shape_of(b)[2]
    if shape_of(b)[:2] != (nb, k):
        raise UnsupportedError(f"a {describe(a)} and b {describe(b)}: a batched B needs a of the same batch, 3-D")
    xs, xz = _activation_params(ctx, 1, a, 1, "a")
    out = _output_params(ctx, 6, np_dtype(a))
    parts = []
    for i in range(nb):
        ai = ctx.reshape(ctx.op("slice", a, starts=[i], ends=[i + 1], axes=[0], steps=[1]), (m, k))
        w, ws, weight = _weight(ctx, 3, n, 1, "b", batch=i)
        parts.append(ctx.reshape(ctx.op("qmatmul", ai, xs, xz, w, ws, **weight, **out), (1, m, n)))
    return parts[0] if nb == 1 else ctx.op("concat", *parts, axis=0)


@converter("QLinearMatMul")
def _qlinear_matmul(ctx: NodeContext) -> list[Handle | None]:
    a = _int8_input(ctx, 0, "a")
    b = ctx.need(3, "b")
    if len(shape_of(b)) == 3 and len(shape_of(a)) == 3 and isinstance(b, np.ndarray):
        return [_batched_qlinear_matmul(ctx, a, b)]
    if len(shape_of(b)) != 2:
        raise UnsupportedError(f"b is {describe(b)}; the integer matmul (qmatmul) takes a 2-D B (or a 3-D one "
                               "with a 3-D a of the same batch)")
    k, n = shape_of(b)
    ra = len(shape_of(a))
    if ra == 0 or shape_of(a)[-1] != k:
        raise ValueError(f"a {describe(a)} and b {describe(b)} do not multiply")
    a2 = ctx.reshape(a, (1, k)) if ra == 1 else a
    xs, xz = _activation_params(ctx, 1, a, shape_of(a)[0] if ra == 2 else 1, "a")
    w, ws, weight = _weight(ctx, 3, n, 1, "b")
    out = _output_params(ctx, 6, np_dtype(a))
    y = ctx.op("qmatmul", a2, xs, xz, w, ws, **weight, **out)
    return [ctx.reshape(y, (n,)) if ra == 1 else y]


@converter("QLinearConv")
def _qlinear_conv(ctx: NodeContext) -> list[Handle | None]:
    x = _int8_input(ctx, 0, "x")
    w_in = ctx.need(3, "w")
    if len(shape_of(x)) != 4 or len(shape_of(w_in)) != 4:
        raise UnsupportedError(f"x {describe(x)} and w {describe(w_in)}: only 2-D convolution (NCHW, 4-D x and w) "
                               "maps onto qconv2d")
    co = shape_of(w_in)[0]
    xs, xz = _activation_params(ctx, 1, x, 1, "x")
    w, ws, weight = _weight(ctx, 3, co, 0, "w")
    out = _output_params(ctx, 6, np_dtype(x))
    strides, dil, pads = window_attrs(ctx, shape_of(x)[2:], conv_kernel(ctx, w_in))
    bias: tuple[Handle, ...] = ()
    b = ctx.input(8)
    if b is not None:
        if np_dtype(b) != np.dtype(np.int32) or shape_of(b) != (co,):
            raise ValueError(f"B {describe(b)} must be int32[{co}] (the bias in units of x_scale * w_scale)")
        bias = (ctx.op("mul", ctx.op("cast", b, dtype="f32"), ctx.op("mul", xs, ws)),)
    y = ctx.op("qconv2d", x, xs, xz, w, ws, *bias, strides=strides, pads=pads, dilations=dil,
               groups=int(ctx.attr("group", 1)), **weight, **out)
    return [y]


@converter("DynamicQuantizeLinear")
def _dynamic_quantize_linear(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "x")
    if np_dtype(x) != np.dtype(np.float32):
        raise UnsupportedError(f"x is {describe(x)}; quantize-dynamic takes float32")
    shape = shape_of(x)
    q, scale, zp = ctx.op_outputs("quantize-dynamic", ctx.reshape(x, (1,)) if not shape else x, granularity="tensor")
    return [ctx.reshape(q, shape), ctx.reshape(scale, ()), ctx.op("cast", ctx.reshape(zp, ()), dtype="u8")]
