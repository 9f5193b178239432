"""The softmax's exp at the host's full vector width, in LLVM IR.

Numba's loops over `mathfn.fexp` vectorize, but LLVM picks 256-bit vectors on AVX-512 hosts (its
prefer-256-bit tuning), and the polynomial is compute-bound: about 0.5 ns a value. Here the same
Cody-Waite exp is written on explicit vectors of VW floats (16 on AVX-512, 8 on AVX2), which LLVM keeps
at that width: twice the values per instruction on AVX-512.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .k_microkernel import VW

EXP_CLAMP = (-88.0, 88.8)
"""The range the argument is clamped to before the polynomial (as mathfn.fexp)."""
EXP_ZERO_BELOW, EXP_INF_ABOVE = -87.33654, 88.72283
"""Arguments below / above which the result is 0 / inf (as mathfn.fexp)."""
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
"""Coefficients of the polynomial in r = x - n ln 2, highest first (as mathfn.fexp)."""


def _vexp(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """e**x on a vector of VW floats: NaN stays NaN, overflow gives inf, results below 2**-126 flush to 0."""
    f32, i32 = ir.FloatType(), ir.IntType(32)
    vt, it = ir.VectorType(f32, VW), ir.VectorType(i32, VW)
    module = builder.module

    def const(v: float) -> ir.Constant:
        return ir.Constant(vt, [float(np.float32(v))] * VW)

    def intrinsic_fn(name: str, args: int) -> ir.Function:
        full = f"llvm.{name}.v{VW}f32"
        return module.globals.get(full) or ir.Function(module, ir.FunctionType(vt, [vt] * args), name=full)

    fma, floor = intrinsic_fn("fma", 3), intrinsic_fn("floor", 1)
    lo, hi = EXP_CLAMP
    xc = builder.select(builder.fcmp_ordered("<", x, const(lo)), const(lo), x)
    xc = builder.select(builder.fcmp_ordered(">", xc, const(hi)), const(hi), xc)
    n = builder.call(floor, [builder.call(fma, [xc, const(1.4426950408889634), const(0.5)])])
    r = builder.call(fma, [n, const(-0.693359375), xc])
    r = builder.call(fma, [n, const(2.12194440e-4), r])
    p = const(EXP_POLY[0])
    for c in EXP_POLY[1:]:
        p = builder.call(fma, [p, r, const(c)])
    p = builder.fadd(builder.call(fma, [builder.fmul(p, r), r, r]), const(1.0))
    shift = builder.shl(builder.fptosi(n, it), ir.Constant(it, [23] * VW))
    y = builder.bitcast(builder.add(builder.bitcast(p, it), shift), vt)
    y = builder.select(builder.fcmp_ordered("<", x, const(EXP_ZERO_BELOW)), const(0.0), y)
    y = builder.select(builder.fcmp_ordered(">", x, const(EXP_INF_ABOVE)), const(np.inf), y)
    return builder.select(builder.fcmp_unordered("uno", x, x), x, y)


@intrinsic
def exp_minus_accumulate(typingctx, x, x_off, m, m_off, total, t_off, n):  # type: ignore[no-untyped-def]
    """x[x_off + i] = exp(x[x_off + i] - m[m_off + i]); total[t_off + i] += that, for i < n (n a multiple of VW).

    One row of the transposed score tile: m the running max of each query, total its running sum.
    """
    sig = types.void(x, x_off, m, m_off, total, t_off, n)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        st = signature.args
        i64 = ir.IntType(64)
        vt = ir.VectorType(ir.FloatType(), VW)

        def at(idx: int, off: int) -> ir.Value:
            data = context.make_array(st[idx])(context, builder, args[idx]).data
            return builder.gep(data, [context.cast(builder, args[off], st[off], types.intp)])

        px, pm, pt = at(0, 1), at(2, 3), at(4, 5)
        count = context.cast(builder, args[6], st[6], types.intp)
        pre = builder.block
        loop, done = builder.append_basic_block("vexp_loop"), builder.append_basic_block("vexp_done")
        builder.cbranch(builder.icmp_signed(">", count, ir.Constant(i64, 0)), loop, done)
        builder.position_at_end(loop)
        i = builder.phi(i64)
        i.add_incoming(ir.Constant(i64, 0), pre)

        def vec(ptr: ir.Value) -> ir.Value:
            return builder.bitcast(builder.gep(ptr, [i]), vt.as_pointer())

        xv, mv, tv = vec(px), vec(pm), vec(pt)
        e = _vexp(builder, builder.fsub(builder.load(xv, align=4), builder.load(mv, align=4)))
        builder.store(e, xv, align=4)
        builder.store(builder.fadd(builder.load(tv, align=4), e), tv, align=4)
        nxt = builder.add(i, ir.Constant(i64, VW))
        i.add_incoming(nxt, builder.block)
        builder.cbranch(builder.icmp_signed("<", nxt, count), loop, done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return sig, codegen
