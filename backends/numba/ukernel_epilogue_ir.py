"""The LLVM IR of the fp32 micro-kernels' in-register epilogue: per-column affine stages, then ReLU, clip or GELU.

A micro-kernel applies it to its accumulators (or to the tile it has just stored) with a per-column table of
EPI_ROWS rows of NR floats (NR = two vectors); `ukernel_epilogue.register_epilogue` writes that table. Vector
widths come from the values' types.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir

from .llvm_intrinsics import float_vector_fn
from .mathfn import ERF_DENOMINATOR, ERF_LIMIT, ERF_NUMERATOR

EPI_NONE, EPI_AFFINE, EPI_RELU, EPI_CLIP, EPI_GELU = range(5)
"""In-register epilogues: none, up to three per-column affine stages ((v * m0 + a0) * m1 + a1) * m2 + a2, the
same then ReLU (a NaN stays NaN), or then clamped to [lo, hi], or then GELU (erf form; the GEMM's micro-kernels
only)."""
EPI_MODES = (EPI_AFFINE, EPI_RELU, EPI_CLIP, EPI_GELU)
"""The modes a GEMM micro-kernel with `epilogue` compiles a store for (EPI_NONE stores the sums)."""
EPI_ROWS = 8
"""Rows of NR floats in an epilogue table: m0, a0, m1, a1, m2, a2, lo, hi (lo and hi repeated per column)."""


def affine_stages(builder: ir.IRBuilder, fma: ir.Function, v: ir.Value, table: ir.Value, half: int,
            residual: tuple[ir.Value, ir.Value] | None) -> ir.Value:
    """v (columns half * VW..) after the three affine stages of `table` (EPI_ROWS x NR), then + the residual vector
    where its flag is true (residual: (flag, vector))."""
    t = v
    for r in range(3):
        t = builder.call(fma, [t, table_row(builder, table, 2 * r, half, v.type),
                               table_row(builder, table, 2 * r + 1, half, v.type)])
    if residual is None:
        return t
    flag, vec = residual
    return builder.select(flag, builder.fadd(t, vec), t)


def table_row(builder: ir.IRBuilder, table: ir.Value, r: int, half: int, vt: ir.VectorType) -> ir.Value:
    """Row r of an epilogue table, the vector of columns half * VW.."""
    ptr = builder.gep(table, [ir.Constant(ir.IntType(64), (2 * r + half) * vt.count)])  # rows of NR = 2 vectors
    return builder.load(builder.bitcast(ptr, vt.as_pointer()), align=4)


def relu_keeping_nan(builder: ir.IRBuilder, t: ir.Value) -> ir.Value:
    """max(t, 0) that keeps a NaN."""
    zero = ir.Constant(t.type, [0.0] * t.type.count)
    return builder.select(builder.fcmp_unordered(">", t, zero), t, zero)


def clip_to_table(builder: ir.IRBuilder, t: ir.Value, table: ir.Value, half: int) -> ir.Value:
    """t clamped to the table's [lo, hi] rows (a NaN stays NaN)."""
    lo, hi = table_row(builder, table, 6, half, t.type), table_row(builder, table, 7, half, t.type)
    low = builder.select(builder.fcmp_ordered("<", t, lo), lo, t)
    return builder.select(builder.fcmp_ordered(">", low, hi), hi, low)


def gelu_erf(builder: ir.IRBuilder, fma: ir.Function, t: ir.Value) -> ir.Value:
    """0.5 t (1 + erf(t / sqrt 2)), erf as `mathfn.ferf` (its rational approximation, +-1 beyond the limit)."""
    vt = t.type

    def const(c: float) -> ir.Constant:
        return ir.Constant(vt, [float(np.float32(c))] * vt.count)

    u = builder.fmul(t, const(0.7071067811865476))
    lim, neg = const(ERF_LIMIT), const(-ERF_LIMIT)
    xc = builder.select(builder.fcmp_ordered(">", u, lim), lim, u)
    xc = builder.select(builder.fcmp_ordered("<", xc, neg), neg, xc)
    x2 = builder.fmul(xc, xc)
    p = const(ERF_NUMERATOR[0])
    for c in ERF_NUMERATOR[1:]:
        p = builder.call(fma, [p, x2, const(c)])
    q = const(ERF_DENOMINATOR[0])
    for c in ERF_DENOMINATOR[1:]:
        q = builder.call(fma, [q, x2, const(c)])
    erf = builder.fdiv(builder.fmul(p, xc), q)
    erf = builder.select(builder.fcmp_ordered(">=", u, lim), const(1.0), erf)
    erf = builder.select(builder.fcmp_ordered("<=", u, neg), const(-1.0), erf)
    return builder.fmul(builder.fmul(const(0.5), t), builder.fadd(const(1.0), erf))


def fixed_mode_epilogue(builder: ir.IRBuilder, fma: ir.Function, v: ir.Value, table: ir.Value, half: int, mode: int,
                    residual: tuple[ir.Value, ir.Value] | None) -> ir.Value:
    """v after epilogue `mode` (one of EPI_MODES, known when compiling): only that mode's instructions."""
    t = affine_stages(builder, fma, v, table, half, residual)
    if mode == EPI_RELU:
        return relu_keeping_nan(builder, t)
    if mode == EPI_CLIP:
        return clip_to_table(builder, t, table, half)
    if mode == EPI_GELU:
        return gelu_erf(builder, fma, t)
    return t


def runtime_mode_epilogue(builder: ir.IRBuilder, fma: ir.Function, v: ir.Value, table: ir.Value, half: int,
                   mode: ir.Value) -> ir.Value:
    """Vector v (columns half * VW..) after epilogue `mode` (a run-time EPI_NONE, AFFINE, RELU or CLIP) with
    per-column rows of `table` (EPI_ROWS x NR): every result computed, the mode's selected."""
    t = affine_stages(builder, fma, v, table, half, None)

    def is_mode(m: int) -> ir.Value:
        return builder.icmp_signed("==", mode, ir.Constant(mode.type, m))

    out = builder.select(is_mode(EPI_CLIP), clip_to_table(builder, t, table, half), relu_keeping_nan(builder, t))
    out = builder.select(is_mode(EPI_AFFINE), t, out)
    return builder.select(is_mode(EPI_NONE), v, out)


def store_pooled(builder: ir.IRBuilder, fma: ir.Function, fins: list[ir.Value], width: int, vectors: int,
                  pc: ir.Value, ldc: ir.Value, second: ir.Value, table: ir.Value, mode: ir.Value) -> None:
    """Store accumulators of two output rows of `width` pixels (fins: row-major, `vectors` per pixel) after the
    epilogue as the max of each 2x2 window (a NaN wins, as numpy's max): pooled pixel q at pc + q * ldc."""
    vt = fins[0].type
    vmax = float_vector_fn(builder.module, "maximum", vt.count, 2)
    vals = [runtime_mode_epilogue(builder, fma, fins[idx], table, idx % vectors, mode) for idx in range(len(fins))]
    for q in range(width // 2):
        dst = builder.gep(pc, [builder.mul(ldc, ir.Constant(ir.IntType(64), q))])
        for j in range(vectors):
            top = builder.call(vmax, [vals[(2 * q) * vectors + j], vals[(2 * q + 1) * vectors + j]])
            bottom = builder.call(vmax, [vals[(width + 2 * q) * vectors + j], vals[(width + 2 * q + 1) * vectors + j]])
            ptr = builder.bitcast(builder.gep(dst, [second]) if j else dst, vt.as_pointer())
            builder.store(builder.call(vmax, [top, bottom]), ptr, align=4)
