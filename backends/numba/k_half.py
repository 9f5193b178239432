"""Conversions between float32 and the 16-bit float storage types (f16, bf16) held as uint16 bit patterns."""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from .jit import twin


@intrinsic
def _half_to_f32(typingctx, v):  # type: ignore[no-untyped-def]
    """IEEE half (given as its uint16 bits) to float32."""
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return sig, codegen


@intrinsic
def _f32_to_half(typingctx, v):  # type: ignore[no-untyped-def]
    """float32 to the uint16 bits of the nearest IEEE half (ties to even)."""
    sig = types.uint16(types.float32)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return sig, codegen


@twin
def half_to_f32(src, out):  # type: ignore[no-untyped-def]
    """out[i] = float32(f16 bits src[i])."""
    for i in prange(out.shape[0]):
        out[i] = _half_to_f32(src[i])


@twin
def f32_to_half(src, out):  # type: ignore[no-untyped-def]
    """out[i] = f16 bits of src[i], rounded to nearest even."""
    for i in prange(out.shape[0]):
        out[i] = _f32_to_half(src[i])


@twin
def bf16_to_f32(src, out):  # type: ignore[no-untyped-def]
    """out[i] = bits of float32(bf16 bits src[i]); `out` is the float32 output viewed as uint32."""
    for i in prange(out.shape[0]):
        out[i] = np.uint32(src[i]) << np.uint32(16)


@twin
def f32_to_bf16(src, out):  # type: ignore[no-untyped-def]
    """out[i] = bf16 bits of src[i] (float32 viewed as uint32), rounded to nearest even; NaN stays NaN."""
    for i in prange(out.shape[0]):
        b = src[i]
        if (b & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):
            out[i] = np.uint16((b >> np.uint32(16)) | np.uint32(0x40))
        else:
            out[i] = np.uint16((b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
