"""Dynamic quantization of a run of float32 values at the host's full vector width, in LLVM IR.

q = clamp(rint(x / scale) + zp, 0, 255) (NaN to zp) is DynamicQuantizeLinear's arithmetic, and the true
division bounds Numba's loop over it (vdivps on 8 floats: 0.22 ns a value of the 0.27 the whole loop
costs). Here each vector of VW floats (16 on AVX-512, 8 on AVX2) multiplies by inv = RN(1 / scale)
instead, and divides only when some value of the vector lies near a rounding tie:

t = RN(x * inv) is within |t| * 2^-22 of RN(x / scale) (two roundings of 2^-24 each, and RN(x / scale)
within 2^-24 of x / scale), so rint(t) and rint(RN(x / scale)) can differ only if a half-integer lies
that close to t. A vector in which some t lies within NEAR_TIE of a half-integer (|t - rint(t)| >=
0.5 - NEAR_TIE: one subtraction, one comparison) is done again by division, so the result is the
division's, bit for bit: for |t| <= 1024 that margin is at least twice the one needed, and above,
where it may not be, both ways saturate alike (the zero point is in [0, 255]). NaN and infinities take the
same path as the division's (NaN to zp, infinities saturate); a scale below the smallest normal
float32 (where 1 / scale may overflow) must not come here (`quantize_row` divides).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from .k_microkernel import VW

NEAR_TIE = 2.0 ** -11
"""Distance from a half-integer within which a vector is quantized again by division: at least twice the
largest |t - RN(x / scale)| for |t| <= 1024; beyond, q saturates the same way both ways."""
MIN_SCALE = float(np.finfo(np.float32).tiny)
"""Smallest scale `quantize_vectors` takes: 1 / scale stays finite and exact to half an ulp above it."""


def _vector_fn(builder: ir.IRBuilder, name: str, args: int, width: int) -> ir.Function:
    """The LLVM intrinsic llvm.<name>.v<width>f32 taking `args` vectors."""
    vt = ir.VectorType(ir.FloatType(), width)
    full = f"llvm.{name}.v{width}f32"
    return builder.module.globals.get(full) or ir.Function(builder.module, ir.FunctionType(vt, [vt] * args),
                                                           name=full)


def make_quantize_vectors(width: int) -> Any:
    """The intrinsic quantize_vectors(x, q, n, inv, scale, zp) on vectors of `width` floats: q[i] = clamp(rint(x[i] /
    scale) + zp, 0, 255) as u8, NaN to zp, for i < n (n a multiple of width).

    x f32 and q u8 are C-contiguous 1-D arrays, inv = float32(1 / scale), zp the zero point as float32,
    scale >= MIN_SCALE. `quantize_vectors` is the host's full width (VW); an AVX-512 host runs width 8 too.
    """

    def typer(typingctx, x, q, n, inv, scale, zp):  # type: ignore[no-untyped-def]
        """Type a quantize_vectors call."""
        return _typer(x, q, n, inv, scale, zp, width)

    typer.__name__ = typer.__qualname__ = f"quantize_vectors_{width}"
    return intrinsic(typer)


def _typer(x, q, n, inv, scale, zp, width):  # type: ignore[no-untyped-def]
    if not (isinstance(x, types.Array) and x.dtype == types.float32 and x.ndim == 1 and x.layout == "C"
            and isinstance(q, types.Array) and q.dtype == types.uint8 and q.ndim == 1 and q.layout == "C"):
        return None
    sig = types.void(x, q, n, inv, scale, zp)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        st = signature.args
        i64, f32 = ir.IntType(64), ir.FloatType()
        vt, bt = ir.VectorType(f32, width), ir.VectorType(ir.IntType(8), width)

        def splat(idx: int) -> ir.Value:
            v = context.cast(builder, args[idx], st[idx], types.float32)
            return builder.shuffle_vector(builder.insert_element(ir.Constant(vt, ir.Undefined), v,
                                                                 ir.Constant(ir.IntType(32), 0)),
                                          ir.Constant(vt, ir.Undefined),
                                          ir.Constant(ir.VectorType(ir.IntType(32), width), [0] * width))

        def const(v: float) -> ir.Constant:
            return ir.Constant(vt, [float(np.float32(v))] * width)

        px = context.make_array(st[0])(context, builder, args[0]).data
        pq = context.make_array(st[1])(context, builder, args[1]).data
        count = context.cast(builder, args[2], st[2], types.intp)
        inv_v, scale_v, zp_v = splat(3), splat(4), splat(5)
        rint, fabs = _vector_fn(builder, "rint", 1, width), _vector_fn(builder, "fabs", 1, width)
        pre = builder.block
        loop = builder.append_basic_block("vq_loop")
        exact = builder.append_basic_block("vq_divide")
        store = builder.append_basic_block("vq_store")
        done = builder.append_basic_block("vq_done")
        builder.cbranch(builder.icmp_signed(">", count, ir.Constant(i64, 0)), loop, done)

        builder.position_at_end(loop)
        i = builder.phi(i64)
        i.add_incoming(ir.Constant(i64, 0), pre)
        xv = builder.load(builder.bitcast(builder.gep(px, [i]), vt.as_pointer()), align=4)
        t = builder.fmul(xv, inv_v)
        r = builder.call(rint, [t])
        near = builder.fcmp_ordered(">=", builder.call(fabs, [builder.fsub(t, r)]), const(0.5 - NEAR_TIE))
        mask_t = ir.IntType(width)
        any_near = builder.icmp_unsigned("!=", builder.bitcast(near, mask_t), ir.Constant(mask_t, 0))
        from_loop = builder.block
        builder.cbranch(any_near, exact, store)

        builder.position_at_end(exact)  # some value near a tie: the whole vector by division
        r_div = builder.call(rint, [builder.fdiv(xv, scale_v)])
        builder.branch(store)

        builder.position_at_end(store)
        rv = builder.phi(vt)
        rv.add_incoming(r, from_loop)
        rv.add_incoming(r_div, exact)
        v = builder.fadd(rv, zp_v)
        v = builder.select(builder.fcmp_unordered("uno", v, v), zp_v, v)
        v = builder.select(builder.fcmp_ordered("<", v, const(0.0)), const(0.0), v)
        v = builder.select(builder.fcmp_ordered(">", v, const(255.0)), const(255.0), v)
        builder.store(builder.fptoui(v, bt), builder.bitcast(builder.gep(pq, [i]), bt.as_pointer()), align=1)
        nxt = builder.add(i, ir.Constant(i64, width))
        i.add_incoming(nxt, builder.block)
        builder.cbranch(builder.icmp_signed("<", nxt, count), loop, done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return sig, codegen


quantize_vectors = make_quantize_vectors(VW)
"""`make_quantize_vectors` at the host's full vector width."""


def quantize_run(x, q, inv, scale, zp):  # type: ignore[no-untyped-def]
    """`quantize_vectors` over the whole vectors of x when x and q are C-contiguous and scale >= MIN_SCALE;
    returns how many values it quantized (the caller does the rest; 0 for other layouts)."""
    n = x.shape[0] - x.shape[0] % VW if scale >= MIN_SCALE else 0
    quantize_vectors(x, q, n, inv, scale, zp)
    return n


@overload(quantize_run)
def _quantize_run_overload(x, q, inv, scale, zp):  # type: ignore[no-untyped-def]
    if x.layout == "C" and q.layout == "C":
        return quantize_run
    return lambda x, q, inv, scale, zp: 0
