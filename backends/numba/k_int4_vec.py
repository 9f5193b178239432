"""The vector inner loop of the weight-only GEMM (int4, and int8), in LLVM IR (as k_microkernel.py's micro-kernel).

`col_dot_rows(R)` makes an intrinsic that computes, for R rows of x and one output column,
sum over the column's full groups g of scale[g] * sum_{k in g} x[r, k] * q[k], reading the packed
nibbles of k_wgemm.py's int4 layout: VW bytes at a time are widened to i32 lanes, split into the low
(k = j) and high (k = G/2 + j) nibbles, converted to f32 (minus the stored offset 8) and multiplied
into one vector accumulator per row (two FMAs); each group's sum is scaled into a per-row vector
accumulator, reduced once per column. The nibbles of one load are unpacked once for all R rows.
Numba's own loops do not vectorize these short groups (16 bytes for G = 32) nor keep the lanes in
i32, so the kernel spells the vectors out. It needs G / 2 to be a multiple of VW (`vector_groups`).
`col_dot8_rows` does the same for int8 weights (one signed byte per weight, k order; G a multiple of VW).
"""

from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .llvm_intrinsics import float_vector_fn, splat

_FEATURES = llvm.get_host_cpu_features()
VW = 16 if _FEATURES.get("avx512f") else 8
"""Bytes (and f32 lanes) per vector step: 16 with AVX-512, 8 with AVX2."""
AVAILABLE = bool(_FEATURES.get("fma")) and bool(_FEATURES.get("avx2") or _FEATURES.get("avx512f"))
"""Whether this host has the vector FMA the intrinsic is written for."""


def vector_groups(group_size: int, bits: int = 4) -> bool:
    """Whether groups of `group_size` weights run on the vector intrinsic (a group's bytes are whole vectors)."""
    step = 2 * VW if bits == 4 else VW
    return AVAILABLE and group_size >= step and group_size % step == 0


def _make(rows: int, bits: int = 4):  # type: ignore[no-untyped-def]
    """The intrinsic for `rows` rows of x and weights of `bits` (4: nibbles, nvec vectors per half group;
    8: signed bytes in k order, nvec vectors per group)."""

    def col_dot_typer(typingctx, x, xo, ldx, p, po, s, so, ngroups, nvec, out, oo, ldo, accumulate):  # type: ignore
        """out[oo + r*ldo] (+)= sum_g s[so + g] * dot(x[xo + r*ldx + g*G:...], nibbles of p[po + g*G/2:...]),
        r < rows; added to what out holds when `accumulate`."""
        sig = types.void(x, xo, ldx, p, po, s, so, ngroups, nvec, out, oo, ldo, accumulate)
        return sig, _codegen

    def _codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        st = signature.args
        f32, i64, i32, i8 = ir.FloatType(), ir.IntType(64), ir.IntType(32), ir.IntType(8)
        vt, vi, vb = ir.VectorType(f32, VW), ir.VectorType(i32, VW), ir.VectorType(i8, VW)

        def data(idx):  # type: ignore[no-untyped-def]
            return context.make_array(st[idx])(context, builder, args[idx]).data

        def intp(idx):  # type: ignore[no-untyped-def]
            return context.cast(builder, args[idx], st[idx], types.intp)

        px, pp, ps, pout = data(0), data(3), data(5), data(9)
        xo, ldx, po, so, ng, nv, oo, ldo = (intp(i) for i in (1, 2, 4, 6, 7, 8, 10, 11))
        flag = context.cast(builder, args[12], st[12], types.boolean)
        fma = float_vector_fn(builder.module, "fma", VW, 3)
        zero = ir.Constant(vt, [0.0] * VW)
        fifteen, four, eight = (ir.Constant(vi, [c] * VW) for c in (15, 4, 8))
        half = builder.mul(nv, ir.Constant(i64, VW))  # bytes per group: G / 2 for int4, G for int8
        group = builder.mul(half, ir.Constant(i64, 2 if bits == 4 else 1))
        acc = [cgutils.alloca_once_value(builder, zero) for _ in range(rows)]
        gl = [cgutils.alloca_once_value(builder, zero) for _ in range(rows)]
        rowx = [builder.gep(px, [builder.add(xo, builder.mul(ldx, ir.Constant(i64, r)))]) for r in range(rows)]
        with cgutils.for_range(builder, ng) as gloop:
            g = gloop.index
            for r in range(rows):
                builder.store(zero, gl[r])
            gbytes = builder.gep(pp, [builder.add(po, builder.mul(g, half))])
            goff = builder.mul(g, group)
            with cgutils.for_range(builder, nv) as vloop:
                j = builder.mul(vloop.index, ir.Constant(i64, VW))
                raw = builder.load(builder.bitcast(builder.gep(gbytes, [j]), vb.as_pointer()), align=1)
                kl = builder.add(goff, j)
                if bits == 8:  # one signed weight per byte, k = j
                    wv = builder.sitofp(builder.sext(raw, vi), vt)
                    for r in range(rows):
                        xl = builder.load(builder.bitcast(builder.gep(rowx[r], [kl]), vt.as_pointer()), align=4)
                        builder.store(builder.call(fma, [xl, wv, builder.load(gl[r])]), gl[r])
                else:
                    w = builder.zext(raw, vi)
                    lo = builder.sitofp(builder.sub(builder.and_(w, fifteen), eight), vt)
                    hi = builder.sitofp(builder.sub(builder.lshr(w, four), eight), vt)
                    kh = builder.add(kl, half)
                    for r in range(rows):
                        xl = builder.load(builder.bitcast(builder.gep(rowx[r], [kl]), vt.as_pointer()), align=4)
                        xh = builder.load(builder.bitcast(builder.gep(rowx[r], [kh]), vt.as_pointer()), align=4)
                        part = builder.call(fma, [xl, lo, builder.load(gl[r])])
                        builder.store(builder.call(fma, [xh, hi, part]), gl[r])
            sc = builder.load(builder.gep(ps, [builder.add(so, g)]), align=4)
            sv = splat(builder, sc, VW)
            for r in range(rows):
                builder.store(builder.call(fma, [sv, builder.load(gl[r]), builder.load(acc[r])]), acc[r])
        for r in range(rows):
            v = builder.load(acc[r])
            width = VW
            while width > 1:  # pairwise halving: log2(VW) shuffles
                width //= 2
                u = ir.Constant(v.type, ir.Undefined)
                lo_half = builder.shuffle_vector(v, u, ir.Constant(ir.VectorType(i32, width), list(range(width))))
                hi_half = builder.shuffle_vector(v, u, ir.Constant(ir.VectorType(i32, width),
                                                                   list(range(width, 2 * width))))
                v = builder.fadd(lo_half, hi_half)
            total = builder.extract_element(v, ir.Constant(i32, 0))
            ptr = builder.gep(pout, [builder.add(oo, builder.mul(ldo, ir.Constant(i64, r)))])
            old = builder.load(ptr, align=4)
            builder.store(builder.select(flag, builder.fadd(old, total), total), ptr, align=4)
        return context.get_dummy_value()

    col_dot_typer.__name__ = col_dot_typer.__qualname__ = f"i{bits}_col_dot_{rows}"
    return intrinsic(col_dot_typer)


col_dot_4 = _make(4)
"""Four rows of x against one int4 column (full vector groups)."""
col_dot_2 = _make(2)
"""Two rows."""
col_dot_1 = _make(1)
"""One row."""
col_dot8_4 = _make(4, 8)
"""Four rows of x against one int8 column."""
col_dot8_2 = _make(2, 8)
"""Two rows, int8."""
col_dot8_1 = _make(1, 8)
"""One row, int8."""
