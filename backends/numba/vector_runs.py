"""Copies and fills of short runs (float32 or uint8) one vector at a time, the last one masked.

LLVM vectorizes a loop of unknown trip count only for runs of several vectors (and checks at run
time that source and destination do not overlap); rows of 8-32 floats, as in a convolution's padded
planes, or of a few dozen bytes, as in a u8 im2col, then run its scalar remainder. These helpers move
one vector per step (16 floats or 64 bytes with AVX-512, half that otherwise) with a masked load and
store for the tail, so a row of 16 floats is one load and one store.
"""

from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .jit import helper
from .llvm_intrinsics import declare, splat

VECTOR_BYTES = 64 if llvm.get_host_cpu_features().get("avx512f") else 32
"""Bytes per vector: 64 with AVX-512, 32 otherwise."""
VW = VECTOR_BYTES // 4
"""Floats per vector."""
_RUN_DTYPES = {types.float32: ir.FloatType(), types.uint8: ir.IntType(8)}


def _lanes(arr_type: types.Array) -> int:
    """Elements per vector of an array of one of _RUN_DTYPES."""
    return VECTOR_BYTES // arr_type.dtype.bitwidth * 8


def _vector_type(arr_type: types.Array) -> ir.VectorType:
    """The LLVM vector of one vector's worth of the array's elements."""
    return ir.VectorType(_RUN_DTYPES[arr_type.dtype], _lanes(arr_type))


def _vector_pointer(context, builder, arr_type, arr, off_type, off):  # type: ignore[no-untyped-def]
    """Pointer to arr.data + off (elements) as a pointer to one vector."""
    data = context.make_array(arr_type)(context, builder, arr).data
    elem = builder.gep(data, [context.cast(builder, off, off_type, types.intp)])
    return builder.bitcast(elem, _vector_type(arr_type).as_pointer())


def _lane_mask(context, builder, lanes, count_type, count):  # type: ignore[no-untyped-def]
    """<lanes x i1>: lane i < count (0 <= count < lanes), as the bits of (1 << count) - 1."""
    i64 = ir.IntType(64)
    n = context.cast(builder, count, count_type, types.intp)
    bits = builder.sub(builder.shl(ir.Constant(i64, 1), n), ir.Constant(i64, 1))
    return builder.bitcast(builder.trunc(bits, ir.IntType(lanes)), ir.VectorType(ir.IntType(1), lanes))


def _masked(builder, name, vt, ret, args):  # type: ignore[no-untyped-def]
    """Declare (once) and call llvm.masked.load / llvm.masked.store on vectors of type vt."""
    elem = "f32" if isinstance(vt.element, ir.FloatType) else f"i{vt.element.width}"
    full = f"llvm.masked.{name}.v{vt.count}{elem}.p0v{vt.count}{elem}"
    return builder.call(declare(builder.module, full, ret, [a.type for a in args]), args)


def _run_array(arr) -> bool:  # type: ignore[no-untyped-def]
    """Whether a Numba type is an array these helpers move (float32 or uint8)."""
    return isinstance(arr, types.Array) and arr.dtype in _RUN_DTYPES


@intrinsic
def _vector_lanes(typingctx, arr):  # type: ignore[no-untyped-def]
    """Elements per vector step for this array (a compile-time constant)."""
    if not _run_array(arr):
        return None
    sig = types.intp(arr)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return ir.Constant(ir.IntType(64), _lanes(arr))

    return sig, codegen


@intrinsic
def _copy_vector(typingctx, dst, d_off, src, s_off, count):  # type: ignore[no-untyped-def]
    """dst[d_off:d_off + count] = src[s_off:s_off + count] for count <= lanes: one (masked when short) vector."""
    if not (_run_array(dst) and _run_array(src) and dst.dtype == src.dtype):
        return None
    sig = types.void(dst, d_off, src, s_off, count)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        st = signature.args
        vt = _vector_type(st[0])
        dp = _vector_pointer(context, builder, st[0], args[0], st[1], args[1])
        sp = _vector_pointer(context, builder, st[2], args[2], st[3], args[3])
        full = builder.icmp_signed(">=", context.cast(builder, args[4], st[4], types.intp),
                                   ir.Constant(ir.IntType(64), vt.count))
        with builder.if_else(full) as (whole, part):
            with whole:
                builder.store(builder.load(sp, align=1), dp, align=1)
            with part:
                mask = _lane_mask(context, builder, vt.count, st[4], args[4])
                align = ir.Constant(ir.IntType(32), 1)
                v = _masked(builder, "load", vt, vt, [sp, align, mask, ir.Constant(vt, None)])
                _masked(builder, "store", vt, ir.VoidType(), [v, dp, align, mask])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _fill_vector(typingctx, dst, d_off, value, count):  # type: ignore[no-untyped-def]
    """dst[d_off:d_off + count] = value for count <= lanes: one (masked when short) vector store."""
    if not _run_array(dst):
        return None
    sig = types.void(dst, d_off, dst.dtype, count)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        st = signature.args
        vt = _vector_type(st[0])
        dp = _vector_pointer(context, builder, st[0], args[0], st[1], args[1])
        i32 = ir.IntType(32)
        value = splat(builder, args[2], vt.count)
        full = builder.icmp_signed(">=", context.cast(builder, args[3], st[3], types.intp),
                                   ir.Constant(ir.IntType(64), vt.count))
        with builder.if_else(full) as (whole, part):
            with whole:
                builder.store(value, dp, align=1)
            with part:
                mask = _lane_mask(context, builder, vt.count, st[3], args[3])
                _masked(builder, "store", vt, ir.VoidType(), [value, dp, ir.Constant(i32, 1), mask])
        return context.get_dummy_value()

    return sig, codegen


@helper
def copy_run(dst, d_off, src, s_off, n):  # type: ignore[no-untyped-def]
    """dst.flat[d_off:d_off + n] = src.flat[s_off:s_off + n] (float32 or uint8, contiguous over the run, no
    overlap)."""
    step = _vector_lanes(dst)
    i = 0
    while i < n:
        _copy_vector(dst, d_off + i, src, s_off + i, min(step, n - i))
        i += step


@helper
def fill_run(dst, d_off, value, n):  # type: ignore[no-untyped-def]
    """dst.flat[d_off:d_off + n] = value (float32 or uint8, contiguous over the run)."""
    step = _vector_lanes(dst)
    i = 0
    while i < n:
        _fill_vector(dst, d_off + i, value, min(step, n - i))
        i += step


@helper
def zero_run(dst, d_off, n):  # type: ignore[no-untyped-def]
    """dst.flat[d_off:d_off + n] = 0."""
    fill_run(dst, d_off, 0, n)
