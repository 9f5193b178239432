"""QuantizeLinear and DequantizeLinear as compositions of IR ops where the IR's `quantize` / `dequantize` do not fit.

The IR ops take constant scales and zero points per tensor or per axis (and `dequantize` symmetric blocks). Scales
or zero points computed at run time (DynamicQuantizeLinear written out as ops), blocked quantization, blocked
dequantization with zero points and quantization to int4 follow the operators' definitions instead:

    QuantizeLinear:   y = saturate(round_half_even(x / scale) + zero_point)   (the division in float32)
    DequantizeLinear: y = (x - zero_point) * scale

with the scale and zero point broadcast over x: a scalar as is, one value per index of `axis`, or a block of
`block_size` consecutive indices of `axis` sharing one value (a constant repeated at import, a run-time value
gathered along the axis). Half-precision inputs are computed in float32 and the result cast back.
"""

from __future__ import annotations

import numpy as np

from .dtypes import DTYPES, dtype_from_numpy
from .onnx_context import Handle, NodeContext, UnsupportedError, describe, norm_axis, np_dtype, shape_of

SATURATION = {"i8": (-128.0, 127.0), "u8": (0.0, 255.0), "i4": (-8.0, 7.0)}
"""Integer IR dtypes a composed QuantizeLinear writes, with the range it saturates to."""


def ir_name(dt: np.dtype) -> str:
    """The IR dtype name of numpy dtype `dt`."""
    return dtype_from_numpy(dt).name


def as_dtype(ctx: NodeContext, h: Handle, dt: np.dtype) -> Handle:
    """h in numpy dtype `dt`: a constant converted at import, a run-time value cast."""
    if np_dtype(h) == dt:
        return h
    return h.astype(dt) if isinstance(h, np.ndarray) else ctx.op("cast", h, dtype=ir_name(dt))


def in_float32(ctx: NodeContext, h: Handle) -> Handle:
    """h cast to float32 unless it is float32 or float64 already."""
    wide = np_dtype(h) in (np.dtype(np.float32), np.dtype(np.float64))
    return h if wide else as_dtype(ctx, h, np.dtype(np.float32))


def broadcast_param(ctx: NodeContext, p: Handle, x: Handle, what: str) -> Handle:
    """A scale or zero point `p` of `x` shaped to broadcast against x (see the module docstring)."""
    xs, ps = shape_of(x), shape_of(p)
    block = int(ctx.attr("block_size", 0) or 0)
    if len(ps) == 0 or (len(ps) == 1 and ps[0] == 1 and not block):
        return p if len(ps) == 0 else ctx.reshape(p, ())
    axis = norm_axis(ctx.attr("axis", 1), len(xs))
    if not block:
        if ps != (xs[axis],):
            raise ValueError(f"{what} {describe(p)} must be a scalar or have {xs[axis]} values for axis {axis} of "
                             f"{describe(x)}")
        return ctx.reshape(p, tuple(xs[axis] if i == axis else 1 for i in range(len(xs))))
    want = tuple(-(-d // block) if i == axis else d for i, d in enumerate(xs))
    if ps != want:
        raise ValueError(f"{what} {describe(p)} must have shape {list(want)} for blocks of {block} along axis "
                         f"{axis} of {describe(x)}")
    if isinstance(p, np.ndarray):
        return np.take(np.repeat(p, block, axis=axis), np.arange(xs[axis]), axis=axis)
    return ctx.op("gather", p, np.arange(xs[axis], dtype=np.int64) // block, axis=axis)


def quantize_composed(ctx: NodeContext, x: Handle, scale: Handle, zp: Handle | None, out: np.dtype) -> Handle:
    """QuantizeLinear of x into numpy dtype `out` (int8, uint8 or int4) by the definition."""
    name = next((n for n in SATURATION if DTYPES[n].np_dtype == out), None)
    if name is None:
        raise UnsupportedError(f"quantization to {out} (only int8, uint8 and int4)")
    lo, hi = SATURATION[name]
    xf = in_float32(ctx, x)
    s = broadcast_param(ctx, in_float32(ctx, scale), x, "scale")
    q = ctx.op("round", ctx.op("div", xf, as_dtype(ctx, s, np_dtype(xf))))
    if zp is not None:
        q = ctx.op("add", q, broadcast_param(ctx, as_dtype(ctx, zp, np_dtype(xf)), x, "zero point"))
    return ctx.op("cast", ctx.op("clip", q, min=lo, max=hi), dtype=name)


def dequantize_composed(ctx: NodeContext, x: Handle, scale: Handle, zp: Handle | None) -> Handle:
    """DequantizeLinear of x by the definition, in the scale's float dtype (half precision computed in float32)."""
    sf = in_float32(ctx, scale)
    xf = as_dtype(ctx, x, np_dtype(sf))
    if zp is not None:
        xf = ctx.op("sub", xf, broadcast_param(ctx, as_dtype(ctx, zp, np_dtype(sf)), x, "zero point"))
    return as_dtype(ctx, ctx.op("mul", xf, broadcast_param(ctx, sf, x, "scale")), np_dtype(scale))
