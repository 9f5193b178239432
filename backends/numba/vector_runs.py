"""Copies and fills of short float32 runs one vector at a time, the last one masked.

LLVM vectorizes a loop of unknown trip count only for runs of several vectors (and checks at run
time that source and destination do not overlap); rows of 8-32 floats, as in a convolution's padded
planes, then run its scalar remainder. These helpers move one VW-float vector per step with a
masked load and store for the tail, so a row of 16 floats is one load and one store.
"""

from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .jit import helper

VW = 16 if llvm.get_host_cpu_features().get("avx512f") else 8
"""Floats per vector: 16 with AVX-512, 8 otherwise."""


def _vector_pointer(context, builder, arr_type, arr, off_type, off):  # type: ignore[no-untyped-def]
    """Pointer to arr.data + off as a pointer to a VW-float vector."""
    data = context.make_array(arr_type)(context, builder, arr).data
    elem = builder.gep(data, [context.cast(builder, off, off_type, types.intp)])
    return builder.bitcast(elem, ir.VectorType(ir.FloatType(), VW).as_pointer())


def _lane_mask(context, builder, count_type, count):  # type: ignore[no-untyped-def]
    """<VW x i1>: lane i < count."""
    i32 = ir.IntType(32)
    n = builder.trunc(context.cast(builder, count, count_type, types.intp), i32)
    lanes = ir.Constant(ir.VectorType(i32, VW), list(range(VW)))
    splat = builder.shuffle_vector(builder.insert_element(ir.Constant(ir.VectorType(i32, VW), ir.Undefined), n,
                                                          ir.Constant(i32, 0)),
                                   ir.Constant(ir.VectorType(i32, VW), ir.Undefined),
                                   ir.Constant(ir.VectorType(i32, VW), [0] * VW))
    return builder.icmp_unsigned("<", lanes, splat)


def _masked(builder, name, ret, args):  # type: ignore[no-untyped-def]
    """Declare (once) and call llvm.masked.load / llvm.masked.store on VW floats."""
    full = f"llvm.masked.{name}.v{VW}f32.p0v{VW}f32"
    fn = builder.module.globals.get(full) or ir.Function(
        builder.module, ir.FunctionType(ret, [a.type for a in args]), name=full)
    return builder.call(fn, args)


def _f32_array(arr) -> bool:  # type: ignore[no-untyped-def]
    """Whether a Numba type is an array of float32."""
    return isinstance(arr, types.Array) and arr.dtype == types.float32


@intrinsic
def _copy_vector(typingctx, dst, d_off, src, s_off, count):  # type: ignore[no-untyped-def]
    """dst[d_off:d_off + count] = src[s_off:s_off + count] for count <= VW: one (masked when short) vector."""
    if not (_f32_array(dst) and _f32_array(src)):
        return None
    sig = types.void(dst, d_off, src, s_off, count)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        st = signature.args
        vt = ir.VectorType(ir.FloatType(), VW)
        dp = _vector_pointer(context, builder, st[0], args[0], st[1], args[1])
        sp = _vector_pointer(context, builder, st[2], args[2], st[3], args[3])
        full = builder.icmp_signed(">=", context.cast(builder, args[4], st[4], types.intp),
                                   ir.Constant(ir.IntType(64), VW))
        with builder.if_else(full) as (whole, part):
            with whole:
                builder.store(builder.load(sp, align=4), dp, align=4)
            with part:
                mask = _lane_mask(context, builder, st[4], args[4])
                align = ir.Constant(ir.IntType(32), 4)
                v = _masked(builder, "load", vt, [sp, align, mask, ir.Constant(vt, [0.0] * VW)])
                _masked(builder, "store", ir.VoidType(), [v, dp, align, mask])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _zero_vector(typingctx, dst, d_off, count):  # type: ignore[no-untyped-def]
    """dst[d_off:d_off + count] = 0 for count <= VW: one (masked when short) vector store."""
    if not _f32_array(dst):
        return None
    sig = types.void(dst, d_off, count)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        st = signature.args
        vt = ir.VectorType(ir.FloatType(), VW)
        dp = _vector_pointer(context, builder, st[0], args[0], st[1], args[1])
        zero = ir.Constant(vt, [0.0] * VW)
        full = builder.icmp_signed(">=", context.cast(builder, args[2], st[2], types.intp),
                                   ir.Constant(ir.IntType(64), VW))
        with builder.if_else(full) as (whole, part):
            with whole:
                builder.store(zero, dp, align=4)
            with part:
                mask = _lane_mask(context, builder, st[2], args[2])
                _masked(builder, "store", ir.VoidType(), [zero, dp, ir.Constant(ir.IntType(32), 4), mask])
        return context.get_dummy_value()

    return sig, codegen


@helper
def copy_run(dst, d_off, src, s_off, n):  # type: ignore[no-untyped-def]
    """dst.flat[d_off:d_off + n] = src.flat[s_off:s_off + n] (float32, both contiguous over the run, no overlap)."""
    i = 0
    while i < n:
        _copy_vector(dst, d_off + i, src, s_off + i, min(VW, n - i))
        i += VW


@helper
def zero_run(dst, d_off, n):  # type: ignore[no-untyped-def]
    """dst.flat[d_off:d_off + n] = 0 (float32, contiguous over the run)."""
    i = 0
    while i < n:
        _zero_vector(dst, d_off + i, min(VW, n - i))
        i += VW
