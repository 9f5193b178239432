"""Quantization of runs of float32 values to 8 bits at the host's full vector width, in LLVM IR.

q = clamp(rint(x / scale) + zp, lo, hi) (NaN to zp) is DynamicQuantizeLinear's (and QuantizeLinear's)
arithmetic, and the true division bounds Numba's loop over it (vdivps on 8 floats: 0.22 ns a value of
the 0.27 the whole loop costs). Here each vector of VW floats (16 on AVX-512, 8 on AVX2) multiplies by
inv = RN(1 / scale) instead, and divides only when some value of the vector lies near a rounding tie:

t = RN(x * inv) is within |t| * 2^-22 of RN(x / scale) (two roundings of 2^-24 each, and RN(x / scale)
within 2^-24 of x / scale), so rint(t) and rint(RN(x / scale)) can differ only if a half-integer lies
that close to t. A vector in which some t lies within NEAR_TIE of a half-integer (|t - rint(t)| >=
0.5 - NEAR_TIE: one subtraction, one comparison) is done again by division, so the result is the
division's, bit for bit: for |t| <= 1024 that margin is at least twice the one needed, and above,
where it may not be, both ways saturate alike (8-bit outputs: the zero point and the bounds lie
within 255 of each other). NaN and infinities take the same path as the division's (NaN to zp,
infinities saturate); a scale below the smallest normal float32 (where 1 / scale may overflow) must
not come here (the callers divide). Users: dynamic quantization (`int8_quantize`), the static
`quantize` op (`k_data`) and the int8 GEMM's requantized outputs (`int8_drivers.requant_tile`, a scale
per element); `finite_range` is dynamic quantization's range pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from .k_microkernel import VW
from .llvm_intrinsics import float_vector_fn, splat
from .llvm_loops import carried_loop, counted_loop

NEAR_TIE = 2.0 ** -11
"""Distance from a half-integer within which a vector is quantized again by division: at least twice the
largest |t - RN(x / scale)| for |t| <= 1024; beyond, q saturates the same way both ways."""
MIN_SCALE = float(np.finfo(np.float32).tiny)
BYTE_TYPES = (types.uint8, types.int8)
"""Outputs the vector path writes: bounds within 255 of each other, so that values it may round otherwise than
the division (|t| > 1024) saturate alike."""
"""Smallest scale `quantize_vectors` takes: 1 / scale stays finite and exact to half an ulp above it."""


def make_quantize_vectors(width: int, per_element: bool = False) -> Any:
    """The intrinsic quantize_vectors(x, q, n, inv, scale, zp, lo, hi) on vectors of `width` floats: q[i] =
    clamp(rint(x[i] / scale) + zp, lo, hi), NaN to zp, for i < n (n a multiple of width).

    x f32 and q u8 or i8 are C-contiguous 1-D arrays, inv = float32(1 / scale), zp the zero point and lo, hi the
    bounds (within q's range) as float32, scale >= MIN_SCALE. `quantize_vectors` is the host's full width (VW);
    an AVX-512 host runs width 8 too. With `per_element`, inv, scale and zp are f32 arrays of one value per
    element of x (a GEMM output's scales per column, repeated over its rows), each scale >= MIN_SCALE.
    """

    def typer(typingctx, x, q, n, inv, scale, zp, lo, hi):  # type: ignore[no-untyped-def]
        """Type a quantize_vectors call."""
        if per_element and not all(isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == 1
                                   and a.layout == "C" for a in (inv, scale, zp)):
            return None
        return _typer(x, q, n, inv, scale, zp, lo, hi, width, per_element)

    typer.__name__ = typer.__qualname__ = f"quantize_vectors_{width}{'_per_element' if per_element else ''}"
    return intrinsic(typer)


def _typer(x, q, n, inv, scale, zp, lo, hi, width, per_element):  # type: ignore[no-untyped-def]
    if not (isinstance(x, types.Array) and x.dtype == types.float32 and x.ndim == 1 and x.layout == "C"
            and isinstance(q, types.Array) and q.dtype in BYTE_TYPES and q.ndim == 1 and q.layout == "C"):
        return None
    sig = types.void(x, q, n, inv, scale, zp, lo, hi)
    signed = q.dtype == types.int8

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        st = signature.args
        i64, f32 = ir.IntType(64), ir.FloatType()
        vt, bt = ir.VectorType(f32, width), ir.VectorType(ir.IntType(8), width)

        def arg_splat(idx: int) -> ir.Value:
            return splat(builder, context.cast(builder, args[idx], st[idx], types.float32), width)

        def const(v: float) -> ir.Constant:
            return ir.Constant(vt, [float(np.float32(v))] * width)

        px = context.make_array(st[0])(context, builder, args[0]).data
        pq = context.make_array(st[1])(context, builder, args[1]).data
        count = context.cast(builder, args[2], st[2], types.intp)
        lo_v, hi_v = arg_splat(6), arg_splat(7)
        one_scale = None if per_element else (arg_splat(3), arg_splat(4), arg_splat(5))
        rint, fabs = (float_vector_fn(builder.module, name, width, 1) for name in ("rint", "fabs"))

        def vector_step(i: ir.Value) -> None:
            """Quantize x[i:i + width] into q: by the reciprocal, or by division when a value is near a tie."""
            xv = builder.load(builder.bitcast(builder.gep(px, [i]), vt.as_pointer()), align=4)
            inv_v, scale_v, zp_v = one_scale or tuple(builder.load(builder.bitcast(builder.gep(
                context.make_array(st[k])(context, builder, args[k]).data, [i]), vt.as_pointer()), align=4)
                for k in (3, 4, 5))
            t = builder.fmul(xv, inv_v)
            r = builder.call(rint, [t])
            # unordered: NaN and infinities (t - r is NaN) take the division's path too, so that the common path
            # needs no NaN select
            near = builder.fcmp_unordered(">=", builder.call(fabs, [builder.fsub(t, r)]), const(0.5 - NEAR_TIE))
            mask_t = ir.IntType(width)
            any_near = builder.icmp_unsigned("!=", builder.bitcast(near, mask_t), ir.Constant(mask_t, 0))
            v_fast = builder.fadd(r, zp_v)
            from_loop = builder.block
            exact = builder.append_basic_block("vq_divide")
            store = builder.append_basic_block("vq_store")
            builder.cbranch(any_near, exact, store)

            builder.position_at_end(exact)  # some value near a tie, NaN or infinite: the whole vector by division
            v_div = builder.fadd(builder.call(rint, [builder.fdiv(xv, scale_v)]), zp_v)
            v_div = builder.select(builder.fcmp_unordered("uno", v_div, v_div), zp_v, v_div)
            builder.branch(store)

            builder.position_at_end(store)
            v = builder.phi(vt)
            v.add_incoming(v_fast, from_loop)
            v.add_incoming(v_div, exact)
            v = builder.select(builder.fcmp_ordered("<", v, lo_v), lo_v, v)
            v = builder.select(builder.fcmp_ordered(">", v, hi_v), hi_v, v)
            byte = builder.fptosi(v, bt) if signed else builder.fptoui(v, bt)
            builder.store(byte, builder.bitcast(builder.gep(pq, [i]), bt.as_pointer()), align=1)

        counted_loop(builder, ir.Constant(i64, 0), count, width, vector_step, "vq")
        return context.get_dummy_value()

    return sig, codegen


quantize_vectors = make_quantize_vectors(VW)
"""`make_quantize_vectors` at the host's full vector width."""
requantize_vectors = make_quantize_vectors(VW, per_element=True)
"""`make_quantize_vectors` with per-element scales, at the host's full vector width."""


RANGE_LANES = 4
"""Independent (min, max) accumulators of `finite_range`: one pair waits on its compare and select (about 5
cycles) each vector, so four run at once."""


def make_finite_range(width: int, skip_infinities: bool = True) -> Any:
    """The intrinsic finite_range(x, n) -> (lo, hi) on vectors of `width` floats: the min and max of 0 and the finite
    values among x[:n] (n a multiple of RANGE_LANES * width), NaN and infinities left out, as float32.

    Each vector's non-finite values become 0 (which the range holds anyway), then lane-wise min / max run over
    plain floats (no NaN left for their ordering to matter), in RANGE_LANES independent accumulator pairs reduced
    once at the end. Without `skip_infinities` (the intrinsic `value_range`) the values go to min / max as they
    are: NaN is still left out (each step keeps the accumulator unless the value compares below or above it),
    infinities are not, so a caller that finds one in the result takes `finite_range` instead.
    """

    def typer(typingctx, x, n):  # type: ignore[no-untyped-def]
        """Type a finite_range or value_range call."""
        if not (isinstance(x, types.Array) and x.dtype == types.float32 and x.ndim == 1 and x.layout == "C"):
            return None
        return types.UniTuple(types.float32, 2)(x, n), _range_codegen(width, skip_infinities)

    name = "finite_range" if skip_infinities else "value_range"
    typer.__name__ = typer.__qualname__ = f"{name}_{width}"
    return intrinsic(typer)


def _range_codegen(width: int, skip_infinities: bool) -> Any:
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        st = signature.args
        i64, i32, f32 = ir.IntType(64), ir.IntType(32), ir.FloatType()
        vt = ir.VectorType(f32, width)
        zero = ir.Constant(vt, [0.0] * width)
        inf = ir.Constant(vt, [float("inf")] * width)
        px = context.make_array(st[0])(context, builder, args[0]).data
        count = context.cast(builder, args[1], st[1], types.intp)
        fabs = float_vector_fn(builder.module, "fabs", width, 1)

        def smaller(a: ir.Value, b: ir.Value) -> ir.Value:
            return builder.select(builder.fcmp_ordered("<", a, b), a, b)

        def larger(a: ir.Value, b: ir.Value) -> ir.Value:
            return builder.select(builder.fcmp_ordered(">", a, b), a, b)

        def vector_step(i: ir.Value, acc: list[ir.Value]) -> list[ir.Value]:
            """RANGE_LANES vectors from x[i:], each into its own (min, max) pair of acc (lo0, hi0, lo1, ...)."""
            new = []
            for lane in range(RANGE_LANES):
                at = builder.add(i, ir.Constant(i64, lane * width))
                xv = builder.load(builder.bitcast(builder.gep(px, [at]), vt.as_pointer()), align=4)
                if skip_infinities:
                    xv = builder.select(builder.fcmp_ordered("<", builder.call(fabs, [xv]), inf), xv, zero)
                new += [smaller(xv, acc[2 * lane]), larger(xv, acc[2 * lane + 1])]
            return new

        flat = carried_loop(builder, ir.Constant(i64, 0), count, RANGE_LANES * width, [zero] * (2 * RANGE_LANES),
                            vector_step, "vr")
        finals = list(zip(flat[0::2], flat[1::2]))
        lo_v, hi_v = zero, zero
        for lo_p, hi_p in finals:
            lo_v, hi_v = smaller(lo_p, lo_v), larger(hi_p, hi_v)
        lo_s, hi_s = (builder.extract_element(v, ir.Constant(i32, 0)) for v in (lo_v, hi_v))
        for k in range(1, width):
            lo_s = smaller(builder.extract_element(lo_v, ir.Constant(i32, k)), lo_s)
            hi_s = larger(builder.extract_element(hi_v, ir.Constant(i32, k)), hi_s)
        return context.make_tuple(builder, signature.return_type, [lo_s, hi_s])

    return codegen


finite_range = make_finite_range(VW)
"""`make_finite_range` at the host's full vector width."""
value_range = make_finite_range(VW, skip_infinities=False)
"""`make_finite_range` without the finite-value select (2.5x faster), at the host's full vector width."""


def range_run(x):  # type: ignore[no-untyped-def]
    """(lo, hi, n): the range `finite_range` gives over the first n values of a C-contiguous x, n its largest
    multiple of RANGE_LANES * VW (n = 0 for other layouts: the caller reduces the rest). `value_range` first, and
    `finite_range` only when that range holds an infinity."""
    n = x.shape[0] - x.shape[0] % (RANGE_LANES * VW)
    lo, hi = value_range(x, n)
    if lo == -np.inf or hi == np.inf:  # an infinity among them: again, leaving the infinities out
        lo, hi = finite_range(x, n)
    return lo, hi, n


@overload(range_run)
def _range_run_overload(x):  # type: ignore[no-untyped-def]
    if x.layout == "C":
        return range_run
    return lambda x: (np.float32(0.0), np.float32(0.0), 0)


def quantize_run(x, q, inv, scale, zp, lo, hi):  # type: ignore[no-untyped-def]
    """`quantize_vectors` over the whole vectors of x when x (f32) and q (u8 or i8) are C-contiguous and scale >=
    MIN_SCALE; returns how many values it quantized (the caller does the rest; 0 for other arrays)."""
    n = x.shape[0] - x.shape[0] % VW if scale >= MIN_SCALE else 0
    quantize_vectors(x, q, n, inv, scale, zp, lo, hi)
    return n


@overload(quantize_run)
def _quantize_run_overload(x, q, inv, scale, zp, lo, hi):  # type: ignore[no-untyped-def]
    if x.layout == "C" and q.layout == "C" and x.dtype == types.float32 and q.dtype in BYTE_TYPES:
        return quantize_run
    return lambda x, q, inv, scale, zp, lo, hi: 0


def requantize_run(y, q, inv, scale, zp, lo, hi):  # type: ignore[no-untyped-def]
    """`requantize_vectors` (per-element f32 inv, scale and zero point, every scale >= MIN_SCALE) over the whole
    vectors of y when y, q and the per-element arrays are C-contiguous; returns how many values it quantized."""
    n = y.shape[0] - y.shape[0] % VW
    requantize_vectors(y, q, n, inv, scale, zp, lo, hi)
    return n


@overload(requantize_run)
def _requantize_run_overload(y, q, inv, scale, zp, lo, hi):  # type: ignore[no-untyped-def]
    arrays = (y, inv, scale, zp)
    if q.layout == "C" and q.dtype in BYTE_TYPES and all(a.layout == "C" and a.dtype == types.float32 for a in arrays):
        return requantize_run
    return lambda y, q, inv, scale, zp, lo, hi: 0
