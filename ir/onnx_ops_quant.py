"""ONNX converters for quantization: QuantizeLinear, DequantizeLinear, MatMulInteger, ConvInteger.

Quantize/DequantizeLinear with constant scales and zero points map onto the IR's `quantize` / `dequantize` (per
tensor or per axis; DequantizeLinear also blocked with symmetric scales: the IR's grouped dequantize); other forms
(run-time scales or zero points, blocks with zero points, int4 outputs) follow the operators' definitions as IR
ops (onnx_ops_quant_composed.py). The zero points of MatMulInteger and ConvInteger may be computed
(DynamicQuantizeLinear's, as ONNX Runtime's dynamic quantizer writes them). Integer products map to the IR's
8-bit matmul/linear/conv2d, which accumulate in i32 as MatMulInteger and ConvInteger do; non-zero zero points are
subtracted in i32 first. QLinearMatMul, QLinearConv and DynamicQuantizeLinear are in onnx_ops_qlinear.py.
"""

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
    np_dtype_of_onnx,
    shape_of,
)
from .onnx_ops_math import match_dtype
from .onnx_ops_nn import conv, matmul
from .onnx_ops_quant_composed import dequantize_composed, quantize_composed


def _qparams(ctx: NodeContext, x: Handle) -> tuple[tuple[float, ...], np.ndarray, int | None]:
    """Scale (as floats), zero points (array) and axis of a Quantize/DequantizeLinear node."""
    scale = ctx.const(1, "scale")
    if scale is None:
        raise ValueError("input 1 (scale) is required")
    zp = ctx.const(2, "zero_point")
    if ctx.attr("block_size", 0):
        raise UnsupportedError("blocked quantization (block_size > 0) is not supported")
    if scale.size == 1 and scale.ndim <= 1:
        axis = None
    elif scale.ndim == 1:
        axis = norm_axis(ctx.attr("axis", 1), len(shape_of(x)))
        if scale.size != shape_of(x)[axis]:
            raise ValueError(f"{scale.size} scales for axis {axis} of {describe(x)}")
    else:
        raise UnsupportedError(f"scale of shape {list(scale.shape)} (only per-tensor and per-axis)")
    scales = tuple(float(s) for s in scale.astype(np.float64).reshape(-1))
    if zp is None:
        zp = np.zeros(scale.size, np.uint8)
    zp = zp.reshape(-1)
    if zp.size == 1 and len(scales) > 1:
        zp = np.repeat(zp, len(scales))
    return scales, zp, axis


IR_QUANTIZED = {np.dtype(np.int8): "i8", np.dtype(np.uint8): "u8"}
"""Output dtypes of the IR's `quantize`."""


def _constant_params(ctx: NodeContext) -> bool:
    """Whether a Quantize/DequantizeLinear's scale and zero point (when given) are constants."""
    return all(ctx.input(i) is None or isinstance(ctx.input(i), np.ndarray) for i in (1, 2))


@converter("QuantizeLinear")
def _quantize(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "x")
    if ctx.attr("precision", 0) not in (0, 1):
        raise UnsupportedError("QuantizeLinear with a division precision other than float32")
    zp_in = ctx.input(2)
    dt = np_dtype(zp_in) if zp_in is not None else np.dtype(np.uint8)
    if zp_in is None and ctx.attr("output_dtype", 0):
        dt = np_dtype_of_onnx(ctx.attr("output_dtype"))
    if not _constant_params(ctx) or ctx.attr("block_size", 0) or np.dtype(dt) not in IR_QUANTIZED:
        return [quantize_composed(ctx, x, ctx.need(1, "scale"), zp_in, np.dtype(dt))]
    scales, zp, axis = _qparams(ctx, x)
    return [ctx.op("quantize", x, scale=scales, zero_point=[int(z) for z in zp.astype(np.int64)], axis=axis,
                   dtype=IR_QUANTIZED[np.dtype(dt)])]


def _blocked_dequantize(ctx: NodeContext, x: Handle, block: int) -> Handle:
    """DequantizeLinear with block_size: the IR's grouped dequantize (symmetric: zero points must be 0)."""
    scale = ctx.const(1, "scale")
    if scale is None:
        raise ValueError("input 1 (scale) is required")
    zp = ctx.const(2, "zero_point")
    if zp is not None and np.any(zp):
        return dequantize_composed(ctx, x, scale, zp)
    axis = norm_axis(ctx.attr("axis", 1), len(shape_of(x)))
    y = ctx.op("dequantize", x, np.asarray(scale, np.float32), axis=axis, group_size=int(block))
    return match_dtype(ctx, y, np.zeros(0, scale.dtype))


@converter("DequantizeLinear")
def _dequantize(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "x")
    if not _constant_params(ctx):
        return [dequantize_composed(ctx, x, ctx.need(1, "scale"), ctx.input(2))]
    if ctx.attr("block_size", 0):
        return [_blocked_dequantize(ctx, x, ctx.attr("block_size"))]
    scales, zp, axis = _qparams(ctx, x)
    y = ctx.op("dequantize", x, scale=scales, zero_point=[int(z) for z in zp], axis=axis)
    scale_dt = ctx.input(1).dtype  # type: ignore[union-attr]
    return [match_dtype(ctx, y, np.zeros(0, scale_dt))]


def _zero_point(ctx: NodeContext, i: int, x: Handle, what: str) -> Handle | None:
    """Input `i`, the zero point of `x`: a constant, or computed (as DynamicQuantizeLinear's), in x's dtype."""
    zp = ctx.input(i)
    if zp is not None and np_dtype(zp) != np_dtype(x):
        raise ValueError(f"{what} {describe(zp)} must have the dtype of {describe(x)}")
    return zp


def _is_zero(zp: Handle | None) -> bool:
    return zp is None or (isinstance(zp, np.ndarray) and not np.any(zp))


def _shifted(ctx: NodeContext, h: Handle, zp: Handle | None, shape: tuple[int, ...]) -> Handle:
    """`h` - zero point, in i32 (the zero point reshaped to `shape` when it has one value per row/channel)."""
    h32 = ctx.op("cast", h, dtype="i32")
    if _is_zero(zp):
        return h32
    z = ctx.op("cast", zp, dtype="i32")  # type: ignore[arg-type]
    return ctx.op("sub", h32, ctx.reshape(z, shape if math.prod(shape_of(z)) > 1 else ()))


def _int8(ctx: NodeContext, i: int, what: str) -> Handle:
    h = ctx.need(i, what)
    if np_dtype(h) not in (np.dtype(np.int8), np.dtype(np.uint8)):
        raise UnsupportedError(f"{what} {describe(h)} (int8 and uint8 only)")
    return h


@converter("MatMulInteger")
def _matmul_integer(ctx: NodeContext) -> list[Handle | None]:
    a, b = _int8(ctx, 0, "A"), _int8(ctx, 1, "B")
    azp, bzp = _zero_point(ctx, 2, a, "a_zero_point"), _zero_point(ctx, 3, b, "b_zero_point")
    if _is_zero(azp) and _is_zero(bzp) and np_dtype(a) == np_dtype(b):
        return [matmul(ctx, a, b)]  # 8-bit products accumulate in i32 in the IR
    rank_a = len(shape_of(a))
    return [matmul(ctx, _shifted(ctx, a, azp, (-1, 1) if rank_a > 1 else (-1,)), _shifted(ctx, b, bzp, (-1,)))]


@converter("ConvInteger")
def _conv_integer(ctx: NodeContext) -> list[Handle | None]:
    x, w = _int8(ctx, 0, "x"), _int8(ctx, 1, "w")
    xzp, wzp = _zero_point(ctx, 2, x, "x_zero_point"), _zero_point(ctx, 3, w, "w_zero_point")
    if _is_zero(xzp) and _is_zero(wzp) and np_dtype(x) == np_dtype(w):
        return [conv(ctx, x, w, None)]
    per_channel = (-1,) + (1,) * (len(shape_of(w)) - 1)
    return [conv(ctx, _shifted(ctx, x, xzp, ()), _shifted(ctx, w, wzp, per_channel), None)]
