"""The softmax's exp at the host's full vector width, in LLVM IR.

Numba's loops over `mathfn.fexp` vectorize, but LLVM picks 256-bit vectors on AVX-512 hosts (its
prefer-256-bit tuning), and the polynomial is compute-bound: about 0.5 ns a value. Here the same
Cody-Waite exp is written on explicit vectors of VW floats (16 on AVX-512, 8 on AVX2), which LLVM keeps
at that width: twice the values per instruction on AVX-512.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .k_microkernel import VW
from .llvm_intrinsics import declare, float_vector_fn, splat
from .llvm_loops import counted_loop

EXP_CLAMP = (-88.0, 88.8)
"""The range the argument is clamped to before the polynomial (as mathfn.fexp)."""
EXP_ZERO_BELOW, EXP_INF_ABOVE = -87.33654, 88.72283
"""Arguments below / above which the result is 0 / inf (as mathfn.fexp)."""
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
"""Coefficients of the polynomial in r = x - n ln 2, highest first (as mathfn.fexp)."""
SCALEF = VW == 16
"""Whether the exp scales by 2**n with AVX-512's vscalefps (on hosts with 16-float vectors)."""
CURRENT_ROUNDING = 4
"""vscalefps's rounding operand: the current rounding mode (_MM_FROUND_CUR_DIRECTION)."""


def _vexp(builder: ir.IRBuilder, x: ir.Value, scalef: bool = SCALEF) -> ir.Value:
    """e**x on a vector of VW floats: NaN stays NaN, overflow gives inf, results below 2**-126 flush to 0.

    With `scalef` (AVX-512) the polynomial is scaled by 2**n in one vscalefps, masked to 0 below the normal
    range; otherwise n is added to the exponent bits and the range ends are selected: the same results, bit for
    bit, in fewer instructions with `scalef`."""
    f32, i32 = ir.FloatType(), ir.IntType(32)
    vt, it = ir.VectorType(f32, VW), ir.VectorType(i32, VW)
    module = builder.module

    def const(v: float) -> ir.Constant:
        return ir.Constant(vt, [float(np.float32(v))] * VW)

    fma = float_vector_fn(module, "fma", VW, 3)
    floor = float_vector_fn(module, "floor", VW, 1)
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
    if scalef:  # 0 where x < EXP_ZERO_BELOW (NaN kept: the unordered compare lets it through); inf from 2**128
        keep = builder.bitcast(builder.fcmp_unordered(">=", x, const(EXP_ZERO_BELOW)), ir.IntType(VW))
        scale = declare(module, "llvm.x86.avx512.mask.scalef.ps.512", vt, [vt, vt, vt, ir.IntType(16), i32])
        return builder.call(scale, [p, n, const(0.0), keep, ir.Constant(i32, CURRENT_ROUNDING)])
    shift = builder.shl(builder.fptosi(n, it), ir.Constant(it, [23] * VW))
    y = builder.bitcast(builder.add(builder.bitcast(p, it), shift), vt)
    y = builder.select(builder.fcmp_ordered("<", x, const(EXP_ZERO_BELOW)), const(0.0), y)
    y = builder.select(builder.fcmp_ordered(">", x, const(EXP_INF_ABOVE)), const(np.inf), y)
    return builder.select(builder.fcmp_unordered("uno", x, x), x, y)


def make_softmax_exp(scalef: bool = SCALEF) -> Any:
    """The intrinsic `softmax_exp(x, x_off, scale, bias, m, m_off, total, t_off, n)`, its exp built with or
    without vscalefps (`scalef` needs AVX-512; tests build both where the host has it)."""
    if scalef and VW != 16:
        raise ValueError(f"vscalefps needs AVX-512's 16-float vectors; this host's vectors hold {VW} floats")

    @intrinsic
    def softmax_exp(typingctx, x, x_off, scale, bias, m, m_off, total, t_off, n):  # type: ignore[no-untyped-def]
        """x[x_off + i] = exp(x[x_off + i] * scale + bias - m[m_off + i]); total[t_off + i] += that, for i < n
        (n a multiple of VW): one row of the transposed score tile, m the running max of each query, total its
        running sum; scale and bias float32 scalars (the attention scale and the key's mask value)."""
        sig = types.void(x, x_off, types.float32, types.float32, m, m_off, total, t_off, n)

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            st = signature.args
            i64 = ir.IntType(64)
            vt = ir.VectorType(ir.FloatType(), VW)

            def at(idx: int, off: int) -> ir.Value:
                data = context.make_array(st[idx])(context, builder, args[idx]).data
                return builder.gep(data, [context.cast(builder, args[off], st[off], types.intp)])

            px, pm, pt = at(0, 1), at(4, 5), at(6, 7)
            vscale, vbias = splat(builder, args[2], VW), splat(builder, args[3], VW)
            fma = float_vector_fn(builder.module, "fma", VW, 3)
            count = context.cast(builder, args[8], st[8], types.intp)

            def vector_step(i: ir.Value) -> None:
                """x[i:i + VW] = exp(x * scale + bias - m) and total[i:i + VW] += it."""

                def vec(ptr: ir.Value) -> ir.Value:
                    return builder.bitcast(builder.gep(ptr, [i]), vt.as_pointer())

                xv, mv, tv = vec(px), vec(pm), vec(pt)
                s = builder.call(fma, [builder.load(xv, align=4), vscale, vbias])
                e = _vexp(builder, builder.fsub(s, builder.load(mv, align=4)), scalef)
                builder.store(e, xv, align=4)
                builder.store(builder.fadd(builder.load(tv, align=4), e), tv, align=4)

            counted_loop(builder, ir.Constant(i64, 0), count, VW, vector_step, "vexp")
            return context.get_dummy_value()

        return sig, codegen

    return softmax_exp


softmax_exp = make_softmax_exp()
"""`make_softmax_exp`'s intrinsic for this host."""
