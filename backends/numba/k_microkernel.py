"""A register-blocked fp32 GEMM micro-kernel in LLVM IR, in variants by rows and by how A and B are read.

The micro-kernel computes an MR x NR block of C from A (a packed panel of MR values per k, or rows
read in place) and B (a packed panel of NR values per k, or rows read in place through an offset
table) with vector FMAs held in registers: 12 x 32 on AVX-512 hosts (24 zmm accumulators), 6 x 16
on AVX2 + FMA hosts (12 ymm). The packed GEMM built on it is k_gemm_packed.py; convolutions and
attention call it too. On hosts without FMA, `AVAILABLE` is False and GEMMs go through BLAS instead.
"""

from __future__ import annotations

from typing import Any

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .jit import helper
from .llvm_intrinsics import float_vector_fn, splat
from .llvm_loops import carried_loop, counted_loop
from .llvm_prefetch import L2, prefetch
from .ukernel_epilogue_ir import EPI_MODES, fixed_mode_epilogue, runtime_mode_epilogue, store_pooled

_FEATURES = llvm.get_host_cpu_features()
VW = 16 if _FEATURES.get("avx512f") else 8
"""Vector width in floats: 16 with AVX-512, 8 with AVX2."""
MR = 12 if VW == 16 else 6
NR = 2 * VW
KC = 256
"""K block: an A panel (MR x KC) and a B panel (KC x NR) stay in L1 while a block is computed."""
AVAILABLE = bool(_FEATURES.get("fma")) and bool(_FEATURES.get("avx2") or _FEATURES.get("avx512f"))


def make_fp32_ukernel(rows: int, a_stride: int = MR, b_pieces: int = 0,  # type: ignore[no-untyped-def]
                 strided_a: bool = False, a_step: int = 0, vectors: int = 2, pool_pairs: bool = False,
                 epilogue: bool = False):
    """The micro-kernel intrinsic for the first `rows` (<= MR) rows of an A panel whose k-th values are
    `a_stride` floats apart (MR: a packed panel; 1 with one row: a row of x read in place).

    With `strided_a` the strides of A are arguments instead: A[i, k] at a[a_off + k * a_k + i * a_i], so that
    A is read in place from any matrix (attention's K rows, a_k = 1, and V^T, a_i = 1).

    With `b_pieces` > 0 the B rows are read in place through a table instead of a packed panel: row k is
    2 * b_pieces runs of VW / b_pieces floats, run i at b[offs[k] + starts[i]] (a convolution's K rows in
    the padded input planes, each run a run of output pixels of one row).

    With `a_step` > 0 A is read in place through a table instead: A[i, k] at a[a_off + offs[k] + i * a_step] (a
    convolution's output pixels, a_step floats apart in its input; K its (channel, tap) pairs). The step is a
    constant, so the rows' addresses are immediates (a step argument would hold a register per row). C's
    second vector of each row is then c_next floats after its first (two blocks of a blocked-channel layout);
    with `vectors` 1 the tile is rows x VW (one block, B rows of VW floats), up to MR_ONE rows. With `pool_pairs`
    the rows are two output rows of rows / 2 pixels each (the second rows_delta floats after the first in A), and
    the tile is stored after its epilogue as the max of each 2x2 window: rows / 4 pooled pixels, ldc apart.

    With `epilogue` (packed or strided A) ten arguments follow `accumulate`: the epilogue table ep at ep_off
    (EPI_ROWS x NR) and its mode (EPI_*), applied to the stored tile row by row in a loop (EPI_NONE: the sums
    stay), a residual res at res_off, row stride ldr, added after the affine stages when `residual` is true (C's
    layout; not read otherwise), and a prefetch stream: iteration k asks for the line at pf[pf_off + k * pf_step]
    (the next block of packed weights, while this one is multiplied; pf_step 0 asks for one line again and again).
    """

    def ukernel_typer(typingctx, kc, a, a_off, b, b_off, ldb, c, c_off, ldc, accumulate):  # type: ignore
        """C[rows, NR] (row stride ldc, at c_off) (+)= A panel [kc][MR] (first rows) @ B rows [kc][NR]."""
        sig = types.void(kc, a, a_off, b, b_off, ldb, c, c_off, ldc, accumulate)
        return sig, _codegen

    def ukernel_epilogue_typer(typingctx, kc, a, a_off, b, b_off, ldb, c, c_off, ldc,  # type: ignore
                               accumulate, ep, ep_off, mode, res, res_off, ldr, residual, pf, pf_off, pf_step):
        """C[rows, NR] (+)= A panel [kc][MR] (first rows) @ B rows [kc][NR], then the epilogue `mode` (EPI_*) with
        the table ep[ep_off:ep_off + EPI_ROWS * NR] and, when `residual`, res's rows (at res_off, stride ldr);
        prefetching pf[pf_off + k * pf_step] per k."""
        sig = types.void(kc, a, a_off, b, b_off, ldb, c, c_off, ldc, accumulate, ep, ep_off, mode, res, res_off,
                         ldr, residual, pf, pf_off, pf_step)
        return sig, _codegen

    def ukernel_strided_epilogue_typer(typingctx, kc, a, a_off, a_k, a_i, b, b_off, ldb,  # type: ignore
                                       c, c_off, ldc, accumulate, ep, ep_off, mode, res, res_off, ldr, residual,
                                       pf, pf_off, pf_step):
        """The strided-A micro-kernel (A[i, k] at a[a_off + k * a_k + i * a_i]) with the epilogue and prefetch of
        ukernel_epilogue_typer."""
        sig = types.void(kc, a, a_off, a_k, a_i, b, b_off, ldb, c, c_off, ldc, accumulate, ep, ep_off, mode, res,
                         res_off, ldr, residual, pf, pf_off, pf_step)
        return sig, _codegen

    def ukernel_offsets_typer(typingctx, kc, a, a_off, b, offs, starts, c, c_off, ldc, accumulate):  # type: ignore
        """C[rows, NR] (row stride ldc, at c_off) (+)= A panel [kc][MR] (first rows) @ B rows read through offs."""
        sig = types.void(kc, a, a_off, b, offs, starts, c, c_off, ldc, accumulate)
        return sig, _codegen

    def ukernel_a_offsets_typer(typingctx, kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc,  # type: ignore
                                c_next, ep, ep_off, mode, accumulate):
        """C[rows, NR] (row stride ldc, at c_off; its second vector c_next after the first) (+)= A [rows, kc]
        (A[i, k] at a_off + offs[k] + i * a_step) @ B rows [kc][NR], then the epilogue `mode` (EPI_*) with the
        per-column table ep[ep_off:ep_off + EPI_ROWS * NR]."""
        sig = types.void(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode, accumulate)
        return sig, _codegen

    def ukernel_pool_typer(typingctx, kc, a, a_off, offs, rows_delta, b, b_off, ldb, c, c_off, ldc,  # type: ignore
                           c_next, ep, ep_off, mode, accumulate):
        """The table-A micro-kernel over two output rows (the second rows_delta floats after the first in A), stored
        after its epilogue as the 2x2 max pool of the tile (accumulate must be False)."""
        sig = types.void(kc, a, a_off, offs, rows_delta, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode,
                         accumulate)
        return sig, _codegen

    def ukernel_strided_typer(typingctx, kc, a, a_off, a_k, a_i, b, b_off, ldb, c, c_off, ldc,  # type: ignore
                              accumulate):
        """C[rows, NR] (row stride ldc, at c_off) (+)= A [rows, kc] (A[i, k] at a_off + k * a_k + i * a_i) @ B rows
        [kc][NR]."""
        sig = types.void(kc, a, a_off, a_k, a_i, b, b_off, ldb, c, c_off, ldc, accumulate)
        return sig, _codegen

    def _codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        st = signature.args
        sh = 2 if strided_a or pool_pairs else 1 if a_step else 0  # B and C follow A's strides (or table, delta)
        f32, i64 = ir.FloatType(), ir.IntType(64)
        vt = ir.VectorType(f32, VW)

        def data(idx):  # type: ignore[no-untyped-def]
            return context.make_array(st[idx])(context, builder, args[idx]).data

        def scalar(idx):  # type: ignore[no-untyped-def]
            return context.cast(builder, args[idx], st[idx], types.intp)

        pa = builder.gep(data(1), [scalar(2)])
        kcv = scalar(0)
        if b_pieces:
            pb, p_offs = data(3), data(4)
            starts = [builder.load(builder.gep(data(5), [ir.Constant(i64, i)]), align=8) for i in range(2 * b_pieces)]
            pc, ldc_v, acc_arg = builder.gep(data(6), [scalar(7)]), scalar(8), 9
        else:
            pb, ldb_v = builder.gep(data(3 + sh), [scalar(4 + sh)]), scalar(5 + sh)
            pc, ldc_v, acc_arg = builder.gep(data(6 + sh), [scalar(7 + sh)]), scalar(8 + sh), 9 + sh
        second = ir.Constant(i64, VW)  # where a C row's second vector starts
        if a_step:
            second, acc_arg = scalar(acc_arg), acc_arg + 4
            ep_ptr, ep_mode = builder.gep(data(acc_arg - 3), [scalar(acc_arg - 2)]), scalar(acc_arg - 1)
        if epilogue:
            pf_base, pf_step = builder.gep(data(acc_arg + 8), [scalar(acc_arg + 9)]), scalar(acc_arg + 10)
        a_k = scalar(3) if strided_a else ir.Constant(i64, a_stride)
        a_i = scalar(4) if strided_a else ir.Constant(i64, a_step or 1)
        a_rows = [builder.mul(a_i, ir.Constant(i64, i)) for i in range(rows)]  # offsets of A's rows
        if pool_pairs:  # the second half of the rows: the next output row
            half = rows // 2
            a_rows = a_rows[:half] + [builder.add(scalar(4), builder.mul(a_i, ir.Constant(i64, i)))
                                      for i in range(half)]
        fma = float_vector_fn(builder.module, "fma", VW, 3)
        zero = ir.Constant(vt, [0.0] * VW)

        def k_step(k: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
            """One k: the B row's vectors times each A row's value, added to the accumulators."""
            if b_pieces:
                bptr = builder.gep(pb, [builder.load(builder.gep(p_offs, [k]), align=8)])
                bvec = [_load_pieces(builder, bptr, starts[j * b_pieces:(j + 1) * b_pieces]) for j in range(2)]
            else:
                bptr = builder.gep(pb, [builder.mul(k, ldb_v)])
                bvec = [builder.load(builder.bitcast(builder.gep(bptr, [ir.Constant(i64, j * VW)]), vt.as_pointer()),
                                     align=4) for j in range(vectors)]
            if a_step:
                aptr = builder.gep(pa, [builder.load(builder.gep(data(3), [k]), align=8)])
            else:
                aptr = builder.gep(pa, [builder.mul(k, a_k)])
            if epilogue:  # the prefetch stream
                prefetch(builder, builder.gep(pf_base, [builder.mul(k, pf_step)]), L2)
            new = []
            for i in range(rows):
                s = builder.load(builder.gep(aptr, [a_rows[i]]), align=4)
                sv = splat(builder, s, VW)
                for j in range(vectors):
                    new.append(builder.call(fma, [sv, bvec[j], accs[i * vectors + j]]))
            return new

        fins = carried_loop(builder, ir.Constant(i64, 0), kcv, 1, [zero] * (rows * vectors), k_step, "uk")
        if pool_pairs:
            store_pooled(builder, fma, fins, rows // 2, vectors, pc, ldc_v, second, ep_ptr, ep_mode)
            return context.get_dummy_value()
        acc_flag = context.cast(builder, args[acc_arg], st[acc_arg], types.boolean)

        def store(ep_table: ir.Value | None) -> None:
            for i in range(rows):
                row = builder.gep(pc, [builder.mul(ldc_v, ir.Constant(i64, i))])
                for j in range(vectors):
                    fin = fins[i * vectors + j]
                    ptr = builder.bitcast(builder.gep(row, [second]) if j else row, vt.as_pointer())
                    old = builder.load(ptr, align=4)
                    val = builder.select(acc_flag, builder.fadd(fin, old), fin)
                    if ep_table is not None:
                        val = runtime_mode_epilogue(builder, fma, val, ep_table, j, ep_mode)
                    builder.store(val, ptr, align=4)

        store(ep_ptr if a_step else None)
        if epilogue:  # the stored tile (in L1) once more, row by row in a loop: one copy of each mode's code
            e0 = acc_arg + 1
            ep_ptr, ep_mode = builder.gep(data(e0), [scalar(e0 + 1)]), scalar(e0 + 2)
            res_base, ldr_v = builder.gep(data(e0 + 3), [scalar(e0 + 4)]), scalar(e0 + 5)
            with_res = context.cast(builder, args[e0 + 6], st[e0 + 6], types.boolean)
            stored = builder.append_basic_block("uk_stored")
            switch = builder.switch(ep_mode, stored)  # EPI_NONE: the sums stay as stored
            for fixed in EPI_MODES:
                entry = builder.append_basic_block(f"uk_epi{fixed}")
                switch.add_case(ir.Constant(ep_mode.type, fixed), entry)
                builder.position_at_end(entry)

                def epilogue_row(i: ir.Value, fixed: int = fixed) -> None:
                    """Row i of the stored tile through epilogue mode `fixed`."""
                    row = builder.gep(pc, [builder.mul(ldc_v, i)])
                    res_row = builder.select(with_res, builder.gep(res_base, [builder.mul(ldr_v, i)]), row)
                    for j in range(vectors):
                        ptr = builder.bitcast(builder.gep(row, [second]) if j else row, vt.as_pointer())
                        rp = builder.bitcast(builder.gep(res_row, [second]) if j else res_row, vt.as_pointer())
                        val = fixed_mode_epilogue(builder, fma, builder.load(ptr, align=4), ep_ptr, j, fixed,
                                              (with_res, builder.load(rp, align=4)))
                        builder.store(val, ptr, align=4)

                counted_loop(builder, ir.Constant(i64, 0), ir.Constant(i64, rows), 1, epilogue_row,
                             f"uk_epi{fixed}_row")
                builder.branch(stored)
            builder.position_at_end(stored)
        return context.get_dummy_value()

    if epilogue:
        typer = ukernel_strided_epilogue_typer if strided_a else ukernel_epilogue_typer
    else:
        typer = (ukernel_offsets_typer if b_pieces else ukernel_strided_typer if strided_a
                 else ukernel_pool_typer if pool_pairs else ukernel_a_offsets_typer if a_step else ukernel_typer)
    a_name = ("strided" if strided_a else f"offsets{a_step}x{vectors}{'pool' if pool_pairs else ''}" if a_step
              else a_stride)
    typer.__name__ = typer.__qualname__ = (f"ukernel_{rows}x{NR}_a{a_name}{f'_b{b_pieces}' if b_pieces else ''}"
                                           f"{'_epi' if epilogue else ''}")
    return intrinsic(typer)


def _load_pieces(builder: ir.IRBuilder, ptr: ir.Value, starts: list[ir.Value]) -> ir.Value:
    """One VW-float vector from len(starts) equal runs of floats, run i at ptr + starts[i] (concatenated)."""
    width = VW // len(starts)
    parts = [builder.load(builder.bitcast(builder.gep(ptr, [s]), ir.VectorType(ir.FloatType(), width).as_pointer()),
                          align=4) for s in starts]
    while len(parts) > 1:  # concatenate pairs: a vector of twice the width each round
        n = parts[0].type.count
        mask = ir.Constant(ir.VectorType(ir.IntType(32), 2 * n), list(range(2 * n)))
        parts = [builder.shuffle_vector(parts[i], parts[i + 1], mask) for i in range(0, len(parts), 2)]
    return parts[0]


ukernel = make_fp32_ukernel(MR)
"""C[MR, NR] (row stride ldc, at c_off) (+)= A panel [kc][MR] @ B rows [kc][NR] (row stride ldb)."""
ukernel_third = make_fp32_ukernel(MR // 3)
"""The same for the first MR/3 rows of the A panel (a ragged last panel of channels)."""
ukernel_two_thirds = make_fp32_ukernel(2 * MR // 3)
"""The same for the first 2*MR/3 rows of the A panel."""
ukernel_one = make_fp32_ukernel(1)
"""The same for the first row only of a packed panel."""
_B1 = [make_fp32_ukernel(r, b_pieces=1) for r in (1, MR // 3, 2 * MR // 3, MR)]
_B2 = [make_fp32_ukernel(r, b_pieces=2) for r in (1, MR // 3, 2 * MR // 3, MR)]
ukernel_offsets_one, ukernel_offsets_third, ukernel_offsets_two_thirds, ukernel_offsets = _B1
"""C[rows, NR] (row stride ldc, at c_off) (+)= A panel [kc][MR] (its first 1, MR/3, 2*MR/3 or MR rows) @ B rows
read in place: row k's two vectors at b[offs[k] + starts[0]] and b[offs[k] + starts[1]]."""
ukernel_halves_one, ukernel_halves_third, ukernel_halves_two_thirds, ukernel_halves = _B2
"""The same with each B vector from two runs of VW / 2 floats, at offs[k] + starts[2j] and offs[k] + starts[2j + 1]."""
ukernel_strided = make_fp32_ukernel(MR, strided_a=True)
"""C[MR, NR] (row stride ldc, at c_off) (+)= A [MR, kc] read in place, A[i, k] at a[a_off + k * a_k + i * a_i], @ B
rows [kc][NR] (row stride ldb)."""
ukernel_strided_third = make_fp32_ukernel(MR // 3, strided_a=True)
"""The same for MR/3 rows of A read in place."""
ukernel_strided_two_thirds = make_fp32_ukernel(2 * MR // 3, strided_a=True)
"""The same for 2*MR/3 rows of A read in place."""
_A_OFFSETS = {step: [make_fp32_ukernel(r, a_step=step) for r in (1, MR // 3, 2 * MR // 3, MR)] for step in (1, VW)}
ukernel_a_runs_one, ukernel_a_runs_third, ukernel_a_runs_two_thirds, ukernel_a_runs = _A_OFFSETS[1]
"""C[rows, NR] (row stride ldc, at c_off) (+)= A [rows, kc] read in place through a table, A[i, k] at
a[a_off + offs[k] + i] (1, MR/3, 2*MR/3 or MR rows: consecutive pixels of a padded plane) @ B rows [kc][NR]."""
ukernel_a_blocks_one, ukernel_a_blocks_third, ukernel_a_blocks_two_thirds, ukernel_a_blocks = _A_OFFSETS[VW]
"""The same with A[i, k] at a[a_off + offs[k] + i * VW]: consecutive pixels of a blocked-channel image."""
MR_ONE = 24 if VW == 16 else 12
"""Rows of the one-vector table-A micro-kernels (rows x VW tiles: 24 of the 32 zmm registers, 12 of 16 ymm)."""
ONE_ROWS = (MR_ONE // 6, MR_ONE // 3, 2 * MR_ONE // 3, MR_ONE)
"""Their row counts: a row of pixels is split into these (and a ragged rest run by the next larger one)."""
_A_ONE = {step: [make_fp32_ukernel(r, a_step=step, vectors=1) for r in ONE_ROWS] for step in (1, VW)}
uk1_runs_sixth, uk1_runs_third, uk1_runs_two_thirds, uk1_runs = _A_ONE[1]
"""C[rows, VW] (row stride ldc, at c_off) (+)= A [rows, kc] read through a table, A[i, k] at a[a_off + offs[k] + i]
(padded planes) @ B rows [kc][VW] (MR_ONE / 6, / 3, 2 / 3 or all MR_ONE rows), then the epilogue."""
uk1_blocks_sixth, uk1_blocks_third, uk1_blocks_two_thirds, uk1_blocks = _A_ONE[VW]
"""The same with A[i, k] at a[a_off + offs[k] + i * VW]: consecutive pixels of a blocked-channel image."""
def _pair_pixels(rows: int) -> tuple[int, int, int, int]:
    """Even pixel counts per output row of pooling micro-kernels of at most `rows` rows (two output rows each):
    2, 4, two thirds and all of rows / 2, each rounded down to even; the largest repeated to fill four."""
    half = rows // 2
    sizes = sorted({p for p in (2, 4, 2 * half // 3 - (2 * half // 3) % 2, half - half % 2) if 2 <= p <= half})
    return tuple(sizes + [sizes[-1]] * (4 - len(sizes)))  # type: ignore[return-value]


POOL_PAIR_PIXELS = {2: _pair_pixels(MR), 1: _pair_pixels(MR_ONE)}
"""Pixels per output row of the pooling table-A micro-kernels, by vectors of channels (rows are two output rows:
up to MR, or MR_ONE with one vector): (2, 4, 6, 6) and (2, 4, 8, 12) on AVX-512."""


def _pooling_family(vectors: int, step: int) -> list[Any]:
    """The pooling micro-kernels for POOL_PAIR_PIXELS[vectors], one intrinsic per distinct size."""
    made: dict[int, Any] = {}
    for px in POOL_PAIR_PIXELS[vectors]:
        if px not in made:
            made[px] = make_fp32_ukernel(2 * px, a_step=step, vectors=vectors, pool_pairs=True)
    return [made[px] for px in POOL_PAIR_PIXELS[vectors]]


ukp2_runs_a, ukp2_runs_b, ukp2_runs_c, ukp2_runs_d = _pooling_family(2, 1)
"""C[px / 2 pooled pixels, NR] = 2x2 max pool of the epilogue of A [2 output rows of px pixels, kc] @ B [kc][NR],
A read through a table, pixels 1 float apart (padded planes); px = POOL_PAIR_PIXELS[2][0..3]."""
ukp2_blocks_a, ukp2_blocks_b, ukp2_blocks_c, ukp2_blocks_d = _pooling_family(2, VW)
"""The same with pixels VW floats apart (a blocked-channel image)."""
ukp1_runs_a, ukp1_runs_b, ukp1_runs_c, ukp1_runs_d = _pooling_family(1, 1)
"""The same for one vector of channels (px = POOL_PAIR_PIXELS[1][0..3]), pixels 1 float apart."""
ukp1_blocks_a, ukp1_blocks_b, ukp1_blocks_c, ukp1_blocks_d = _pooling_family(1, VW)
"""The same for one vector of channels, pixels VW floats apart."""
ukernel_row = make_fp32_ukernel(1, a_stride=1)
"""C[1, NR] (+)= a row of x (kc consecutive values, read in place) @ B rows [kc][NR]: a one-row product needs
no packed A panel."""


@helper
def microkernel_offsets_rows(cw, halves, kc, ap, a_off, b, offs, starts, c, c_off, ldc,  # type: ignore[no-untyped-def]
                             accumulate):
    """The in-place-B micro-kernel (B vectors of whole runs, or of two halves with `halves`) on the first cw rows of
    an A panel: 1, MR/3, 2*MR/3 or all MR rows, the fewest that cover cw."""
    if halves:
        if cw == 1:
            ukernel_halves_one(kc, ap, a_off, b, offs, starts, c, c_off, ldc, accumulate)
        elif cw <= MR // 3:
            ukernel_halves_third(kc, ap, a_off, b, offs, starts, c, c_off, ldc, accumulate)
        elif cw <= 2 * MR // 3:
            ukernel_halves_two_thirds(kc, ap, a_off, b, offs, starts, c, c_off, ldc, accumulate)
        else:
            ukernel_halves(kc, ap, a_off, b, offs, starts, c, c_off, ldc, accumulate)
    elif cw == 1:
        ukernel_offsets_one(kc, ap, a_off, b, offs, starts, c, c_off, ldc, accumulate)
    elif cw <= MR // 3:
        ukernel_offsets_third(kc, ap, a_off, b, offs, starts, c, c_off, ldc, accumulate)
    elif cw <= 2 * MR // 3:
        ukernel_offsets_two_thirds(kc, ap, a_off, b, offs, starts, c, c_off, ldc, accumulate)
    else:
        ukernel_offsets(kc, ap, a_off, b, offs, starts, c, c_off, ldc, accumulate)


@helper
def microkernel_pixel_rows(cw, blocks, kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc,  # type: ignore[no-untyped-def]
                           c_next, ep, ep_off, mode, accumulate):
    """The micro-kernel with A (cw consecutive output pixels) read through a table of K offsets: pixels 1 float
    apart (padded planes) or, with `blocks`, VW floats apart (a blocked-channel image). It runs 1, MR/3, 2*MR/3 or
    MR rows, the fewest that cover cw: rows past cw are read and their C rows written (callers give room). C's
    second vector of each row is c_next floats after its first; epilogue `mode` (EPI_*) reads its table at
    ep[ep_off:] (its last K block only: with `accumulate` the stored sum gets it)."""
    if blocks:
        if cw == 1:
            ukernel_a_blocks_one(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode,
                                 accumulate)
        elif cw <= MR // 3:
            ukernel_a_blocks_third(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode,
                                   accumulate)
        elif cw <= 2 * MR // 3:
            ukernel_a_blocks_two_thirds(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode,
                                        accumulate)
        else:
            ukernel_a_blocks(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode, accumulate)
    elif cw == 1:
        ukernel_a_runs_one(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode, accumulate)
    elif cw <= MR // 3:
        ukernel_a_runs_third(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode, accumulate)
    elif cw <= 2 * MR // 3:
        ukernel_a_runs_two_thirds(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode,
                                  accumulate)
    else:
        ukernel_a_runs(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode, accumulate)


@helper
def microkernel_pixel_rows_one(cw, blocks, kc, a, a_off, offs, b, b_off, ldb, c, c_off,  # type: ignore[no-untyped-def]
                               ldc, ep, ep_off, mode):
    """`microkernel_pixel_rows` for tiles of one vector of channels (a panel of VW): MR_ONE / 6, / 3, 2 / 3 or all
    MR_ONE rows, the fewest that cover cw (rows past cw are read and their C rows written)."""
    if blocks:
        if cw <= MR_ONE // 6:
            uk1_blocks_sixth(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, 0, ep, ep_off, mode, False)
        elif cw <= MR_ONE // 3:
            uk1_blocks_third(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, 0, ep, ep_off, mode, False)
        elif cw <= 2 * MR_ONE // 3:
            uk1_blocks_two_thirds(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, 0, ep, ep_off, mode, False)
        else:
            uk1_blocks(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, 0, ep, ep_off, mode, False)
    elif cw <= MR_ONE // 6:
        uk1_runs_sixth(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, 0, ep, ep_off, mode, False)
    elif cw <= MR_ONE // 3:
        uk1_runs_third(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, 0, ep, ep_off, mode, False)
    elif cw <= 2 * MR_ONE // 3:
        uk1_runs_two_thirds(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, 0, ep, ep_off, mode, False)
    else:
        uk1_runs(kc, a, a_off, offs, b, b_off, ldb, c, c_off, ldc, 0, ep, ep_off, mode, False)


_P2, _P1 = POOL_PAIR_PIXELS[2], POOL_PAIR_PIXELS[1]


@helper
def microkernel_pooled_pairs(px, vectors, blocks, kc, a, a_off, offs, delta, b, b_off, ldb,  # type: ignore[no-untyped-def]
                             c, c_off, ldc, c_next, ep, ep_off, mode):
    """The pooling table-A micro-kernel for two output rows of px pixels (one of POOL_PAIR_PIXELS[vectors]: the
    caller splits rows so), the second row `delta` floats after the first in A: px / 2 pooled pixels stored."""
    if vectors == 2 and blocks:
        if px == _P2[0]:
            ukp2_blocks_a(kc, a, a_off, offs, delta, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode, False)
        elif px == _P2[1]:
            ukp2_blocks_b(kc, a, a_off, offs, delta, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode, False)
        elif px == _P2[2]:
            ukp2_blocks_c(kc, a, a_off, offs, delta, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode, False)
        else:
            ukp2_blocks_d(kc, a, a_off, offs, delta, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode, False)
    elif vectors == 2:
        if px == _P2[0]:
            ukp2_runs_a(kc, a, a_off, offs, delta, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode, False)
        elif px == _P2[1]:
            ukp2_runs_b(kc, a, a_off, offs, delta, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode, False)
        elif px == _P2[2]:
            ukp2_runs_c(kc, a, a_off, offs, delta, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode, False)
        else:
            ukp2_runs_d(kc, a, a_off, offs, delta, b, b_off, ldb, c, c_off, ldc, c_next, ep, ep_off, mode, False)
    elif blocks:
        if px == _P1[0]:
            ukp1_blocks_a(kc, a, a_off, offs, delta, b, b_off, ldb, c, c_off, ldc, 0, ep, ep_off, mode, False)
        elif px == _P1[1]:
            ukp1_blocks_b(kc, a, a_off, offs, delta, b, b_off, ldb, c, c_off, ldc, 0, ep, ep_off, mode, False)
        elif px == _P1[2]:
            ukp1_blocks_c(kc, a, a_off, offs, delta, b, b_off, ldb, c, c_off, ldc, 0, ep, ep_off, mode, False)
        else:
            ukp1_blocks_d(kc, a, a_off, offs, delta, b, b_off, ldb, c, c_off, ldc, 0, ep, ep_off, mode, False)
    elif px == _P1[0]:
        ukp1_runs_a(kc, a, a_off, offs, delta, b, b_off, ldb, c, c_off, ldc, 0, ep, ep_off, mode, False)
    elif px == _P1[1]:
        ukp1_runs_b(kc, a, a_off, offs, delta, b, b_off, ldb, c, c_off, ldc, 0, ep, ep_off, mode, False)
    elif px == _P1[2]:
        ukp1_runs_c(kc, a, a_off, offs, delta, b, b_off, ldb, c, c_off, ldc, 0, ep, ep_off, mode, False)
    else:
        ukp1_runs_d(kc, a, a_off, offs, delta, b, b_off, ldb, c, c_off, ldc, 0, ep, ep_off, mode, False)


@helper
def microkernel_rows(cw, kc, ap, a_off, b, b_off, ldb, c, c_off, ldc, accumulate):  # type: ignore[no-untyped-def]
    """The micro-kernel on the first cw rows of an A panel: 1, MR/3, 2*MR/3 or all MR rows, the fewest that cover
    cw."""
    if cw == 1:
        ukernel_one(kc, ap, a_off, b, b_off, ldb, c, c_off, ldc, accumulate)
    elif cw <= MR // 3:
        ukernel_third(kc, ap, a_off, b, b_off, ldb, c, c_off, ldc, accumulate)
    elif cw <= 2 * MR // 3:
        ukernel_two_thirds(kc, ap, a_off, b, b_off, ldb, c, c_off, ldc, accumulate)
    else:
        ukernel(kc, ap, a_off, b, b_off, ldb, c, c_off, ldc, accumulate)


@helper
def exact_rows(cw):  # type: ignore[no-untyped-def]
    """Whether a micro-kernel variant computes exactly cw rows (1, MR/3, 2*MR/3 or MR): it then reads and writes no
    row past them."""
    return cw == 1 or cw == MR // 3 or cw == 2 * MR // 3 or cw == MR


@helper
def microkernel_in_place(cw, kc, x, x_off, ldx, b, b_off, ldb, c, c_off, ldc, accumulate):  # type: ignore[no-untyped-def]
    """The micro-kernel on cw rows of a matrix read in place, row i's k-th value at x[x_off + i * ldx + k]: cw is 1,
    MR/3, 2*MR/3 or MR (`exact_rows`), so no row past them is read."""
    if cw == 1:
        ukernel_row(kc, x, x_off, b, b_off, ldb, c, c_off, ldc, accumulate)
    elif cw == MR // 3:
        ukernel_strided_third(kc, x, x_off, 1, ldx, b, b_off, ldb, c, c_off, ldc, accumulate)
    elif cw == 2 * MR // 3:
        ukernel_strided_two_thirds(kc, x, x_off, 1, ldx, b, b_off, ldb, c, c_off, ldc, accumulate)
    else:
        ukernel_strided(kc, x, x_off, 1, ldx, b, b_off, ldb, c, c_off, ldc, accumulate)
