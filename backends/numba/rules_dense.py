"""Lowering of linear and matmul, alone or with an epilogue applied per output tile (see epilogue.py)."""

from __future__ import annotations

import math

import numpy as np

from ...ir.graph import Node, Value
from ..cost.sparse_kernels import DENSE
from . import k_microkernel
from .epilogue import Epilogue, empty_epilogue, is_gemm_like
from .jit import cdiv
from .k_gemm import bmm_loops, bmm_sgemm, gemm
from .k_gemm_packed import GEMM_CLOSING, gemm_packed, scratch_per_tile, shared_packed
from .matrix_lowering import (
    FLOPS_PER_UNIT,
    constant_data,
    epilogue_args,
    kernel_label,
    own_bias,
    read_by_heads,
    residual_arg,
)
from .plan import Lit, LowerCtx
from .registry import lowers
from .rules_elementwise import emit_binary
from .rules_shape import Transpose
from .rules_sparse import emit_sparse_product, layer_choice, record_choice
from .rules_weight_gemm import lower_weight_gemm, note_f32_fallback
from .tiling import split_rows
from .ukernel_epilogue import register_epilogue


def gemm_tiles(m: int, n: int, threads: int, parallel: bool, w_is_nk: bool) -> tuple[int, int]:
    """Tile shape of the parallel GEMM: one tile per thread, split along rows or columns."""
    m1, n1 = max(m, 1), max(n, 1)
    if not parallel or threads <= 1:
        return m1, n1
    rows = (cdiv(m1, threads), n1)
    if not w_is_nk:
        return rows
    cols = (m1, min(n1, cdiv(cdiv(n1, threads), 16) * 16))
    return rows if (m1 >= threads and min(rows) >= min(cols)) else cols


def packed_tiles(m: int, panels: int, threads: int, parallel: bool, rows: bool = False) -> tuple[int, int]:
    """(rows, NR-panels) per work item of the packed GEMM: an A block of at most 256 rows stays in L2. Up to 256 rows
    the threads split the panels, or with `rows` the rows (`tiling.split_rows`); beyond, always the rows."""
    mr = k_microkernel.MR
    if not parallel or threads <= 1:
        return max(1, min(m, 256)), max(panels, 1)
    if rows and m <= 256:
        return cdiv(m, threads), max(panels, 1)
    if m <= 256 and panels >= threads:
        return max(m, 1), cdiv(panels, threads)
    return max(1, min(cdiv(cdiv(m, threads), mr) * mr, 256)), max(panels, 1)


def _emit_packed(ctx: LowerCtx, x: int, w_nk: np.ndarray, out: int, dims: tuple[int, int, int],
                 epi: Epilogue, res: int, name: str) -> None:
    """The micro-kernel GEMM with weights packed at compile time (once per constant, shared between plans)."""
    m, n_out, k = dims
    packed = ctx.const(shared_packed(w_nk), f"{name}.packed")
    panels = ctx.slots[packed].shape[0]
    work = 2 * m * n_out * max(k, 1) // FLOPS_PER_UNIT
    par = ctx.parallel(work)
    rows = split_rows(m, w_nk.nbytes, ctx.weight_bytes, ctx.threads) and not read_by_heads(ctx, ctx.node)
    tm, tnp = packed_tiles(m, panels, ctx.threads, par, rows)
    items = cdiv(m, tm) * cdiv(panels, tnp)
    scratch = ctx.buffer((items * scratch_per_tile(tm),), np.dtype(np.float32), f"{name}.packA")
    codes, vecs, params = epilogue_args(ctx, epi)
    part = register_epilogue(epi.codes(), epi.vectors(), epi.params(), n_out, residual=epi.residual is not None,
                             closing=GEMM_CLOSING)
    table = ctx.const(part.table.reshape(-1) if part.stages else np.zeros(1, np.float32), f"{name}.epilogue")
    ctx.emit(kernel_label("gemm_uk", epi), gemm_packed, x, packed, out, Lit(tm), Lit(tnp), scratch, codes, vecs,
             params, res, table, Lit(part.mode), Lit(part.stages), Lit(True), writes=(out, scratch), work=work)


def lower_linear(ctx: LowerCtx, node: Node, epi: Epilogue, out_value: Value) -> None:
    """linear(x, W, b) or a 2-D-operand matmul, with epilogue `epi` applied to its [M, N] output `out_value`.

    A weight stored int4 / int8 behind a `dequantize` runs on the weight-only GEMM for M <= 16
    (rules_weight_gemm.py), else dequantized to f32 at compile time (the steps' note says so).
    """
    first_step = len(ctx.steps)
    if lower_weight_gemm(ctx, node, epi, out_value):
        return
    x, wv = node.inputs[0], node.inputs[1]
    epi, bias_value = own_bias(node, epi)
    w_data = constant_data(ctx, wv)  # a constant, or a weight dequantized at compile time
    if node.op == "linear":
        n_out, k = wv.type.shape
        w_is_nk = True
        w = ctx.slot(wv) if w_data is not None else ctx.arg(wv)
    else:
        k, n_out = wv.type.shape
        w_is_nk = w_data is not None
        w = ctx.const(np.ascontiguousarray(w_data.T), f"{wv.name}.T") if w_data is not None else ctx.arg(wv)
    m = x.type.numel // max(k, 1) if k else math.prod(x.type.shape[:-1])
    out = ctx.out(out_value)
    if out_value.type.dtype.name != "f32":
        if epi.stages:
            raise ctx.fail("epilogues need f32")
        _int_product(ctx, x, w, w_is_nk, out, (m, n_out, k))
    elif m * n_out:
        res = residual_arg(ctx, epi, (m, n_out))
        w_nk = (w_data if node.op == "linear" else w_data.T) if w_data is not None else None
        choice = layer_choice(node, w_nk) if wv.is_constant else None  # sparse kernels read the IR constant
        first = len(ctx.steps)
        if choice is not None and choice.kernel != DENSE and k > 0:
            emit_sparse_product(ctx, choice, ctx.reshaped(ctx.arg(x), (m, k)), np.asarray(w_nk, np.float32),
                                ctx.reshaped(out, (m, n_out)), epi, res, wv.name)
        elif k_microkernel.AVAILABLE and w_nk is not None and k > 0:
            _emit_packed(ctx, ctx.reshaped(ctx.arg(x), (m, k)), w_nk, ctx.reshaped(out, (m, n_out)),
                         (m, n_out, k), epi, res, wv.name)
        else:
            codes, vecs, params = epilogue_args(ctx, epi)
            work = 2 * m * n_out * max(k, 1) // FLOPS_PER_UNIT
            par = ctx.parallel(work, needs_blas=True)
            tm, tn = gemm_tiles(m, n_out, ctx.threads, par, w_is_nk)
            ctx.emit(kernel_label("gemm", epi), gemm, ctx.reshaped(ctx.arg(x), (m, k)), w, Lit(w_is_nk),
                     ctx.reshaped(out, (m, n_out)), Lit(tm), Lit(tn), codes, vecs, params, res, writes=(out,),
                     work=work, needs_blas=True)
        if choice is not None:
            record_choice(ctx, node, choice, first)
    if bias_value is not None:
        emit_binary(ctx, "add", out, ctx.arg(bias_value), out)
    note_f32_fallback(ctx, node, first_step)


def _int_product(ctx: LowerCtx, x: Value, w: int, w_is_nk: bool, out: int, dims: tuple[int, int, int]) -> None:
    """Integer linear / 2-D matmul through the loop kernel (wrapping arithmetic, like numpy)."""
    m, n, k = dims
    if m * n == 0:
        return
    zero = np.zeros(1, ctx.slots[out].dtype)[0]
    wf = ctx.flat_of(ctx.arg(w))
    z = ctx.const(np.zeros(1, np.int64), "off0")
    ctx.emit("matmul_loops", bmm_loops, ctx.flat_of(ctx.arg(x)), z, Lit(k), wf, z, Lit(k if w_is_nk else n),
             Lit(w_is_nk), ctx.flat_of(out), z, Lit(n), ctx.const(np.array([m, n, k], np.int64), "dims"),
             Lit(zero), *epilogue_args(ctx, Epilogue(n)), ctx.const(np.zeros((1, 1, 1), np.float32), "no_residual"),
             writes=(out,), work=2 * m * n * k // FLOPS_PER_UNIT)


def _matrix_desc(shape: tuple[int, int], strides: tuple[int, int]) -> tuple[bool, int] | None:
    """(transposed, leading dimension) of a [r, c] matrix view for BLAS, or None."""
    (r, c), (sr, sc) = shape, strides
    if c <= 1:
        sc = 1
    if r <= 1:
        sr = max(c, 1) if sc == 1 else sr
    if sc == 1 and sr >= max(c, 1):
        return False, sr
    if r <= 1:
        sr = 1
    if sr == 1 and sc >= max(r, 1):
        return True, sc
    return None


def _operand(ctx: LowerCtx, slot: int, batch: tuple[int, ...], need_plain: bool = False):  # type: ignore[no-untyped-def]
    """(flat root slot, offsets per batch item, trans, ld) of a matrix operand read in place when possible."""
    for attempt in range(2):
        root, off, strides = ctx.layout(slot)
        shape = ctx.slots[slot].shape
        desc = _matrix_desc(shape[-2:], strides[-2:])
        if desc is not None and not (need_plain and desc[0]):
            rank_b = len(shape) - 2
            bstr = [0] * (len(batch) - rank_b) + [st if d != 1 else 0 for d, st in zip(shape[:-2], strides[:-2])]
            idx = np.indices(batch).reshape(len(batch), -1) if batch else np.zeros((0, 1), np.int64)
            offs = off + (np.array(bstr, np.int64)[:, None] * idx).sum(axis=0) if batch else np.array([off])
            return ctx.flat_of(root), ctx.const(np.asarray(offs, np.int64), "offsets"), desc[0], desc[1]
        if attempt == 0:
            slot = ctx.arg(slot) if not ctx.slots[slot].contiguous else _copy(ctx, slot)
    raise ctx.fail(f"cannot describe operand of shape {ctx.slots[slot].shape} as BLAS matrices")


def _copy(ctx: LowerCtx, slot: int) -> int:
    dst = ctx.buffer(ctx.slots[slot].shape, ctx.slots[slot].dtype, f"{ctx.slots[slot].name}.copy")
    ctx.copy_view(slot, dst)
    return dst


def lower_matmul(ctx: LowerCtx, node: Node, epi: Epilogue, out_value: Value) -> None:
    """Batched matmul (numpy semantics) through BLAS on strided operands, or loops for integers.

    With `epi.out_perm` the product is written straight into that transposed layout (`out_value`).
    """
    a, b = node.inputs
    mv = node.outputs[0]
    sa = ctx.slot(a)
    sb = ctx.slot(b)
    if a.type.rank == 1:
        sa = ctx.reshaped(ctx.arg(sa), (1,) + a.type.shape)
    if b.type.rank == 1:
        sb = ctx.reshaped(ctx.arg(sb), b.type.shape + (1,))
    ash, bsh = ctx.slots[sa].shape, ctx.slots[sb].shape
    m, k, n = ash[-2], ash[-1], bsh[-1]
    batch = tuple(np.broadcast_shapes(ash[:-2], bsh[:-2]))
    out = ctx.out(out_value)
    full = batch + (m, n)
    if epi.out_perm is not None:
        inv = tuple(np.argsort(epi.out_perm))
        c_view = ctx.view(out, Transpose(inv), f"{mv.name}.layout")
    else:
        c_view = ctx.reshaped(out, full)
    count = math.prod(batch) if batch else 1
    if count * m * n == 0:
        return
    is_float = mv.type.dtype.name == "f32"
    if epi.stages and not is_float:
        raise ctx.fail("epilogues need f32")
    fa, a_off, a_t, a_ld = _operand(ctx, sa, batch, need_plain=not is_float)
    fb, b_off, b_t, b_ld = _operand(ctx, sb, batch)
    fc, c_off, c_t, c_ld = _operand(ctx, c_view, batch, need_plain=True)
    dims = ctx.const(np.array([m, n, k], np.int64), "dims")
    work = 2 * count * m * n * max(k, 1) // FLOPS_PER_UNIT
    codes, vecs, params = epilogue_args(ctx, epi)
    res = residual_arg(ctx, epi, (count, m, n))
    if is_float:
        par = ctx.parallel(work, needs_blas=True)
        tm = m if (not par or count >= 2 * ctx.threads) else cdiv(m, cdiv(2 * ctx.threads, count))
        ctx.emit(kernel_label("bmm", epi), bmm_sgemm, fa, a_off, Lit(a_ld), Lit(a_t), fb, b_off, Lit(b_ld), Lit(b_t),
                 fc, c_off, Lit(c_ld), dims, Lit(max(tm, 1)), codes, vecs, params, res, writes=(out,), work=work,
                 needs_blas=True)
    else:
        zero = np.zeros(1, mv.type.dtype.np_dtype)[0]
        ctx.emit("bmm_loops", bmm_loops, fa, a_off, Lit(a_ld), fb, b_off, Lit(b_ld), Lit(b_t), fc, c_off,
                 Lit(c_ld), dims, Lit(zero), codes, vecs, params, res, writes=(out,), work=work)


def lower_product(ctx: LowerCtx, node: Node, epi: Epilogue, out_value: Value) -> None:
    """A linear or matmul with epilogue `epi`, writing `out_value`: one 2-D GEMM or a batched product."""
    if is_gemm_like(node) and epi.out_perm is None:
        lower_linear(ctx, node, epi, out_value)
    else:
        lower_matmul(ctx, node, epi, out_value)


@lowers("linear", "matmul")
def lower_product_alone(ctx: LowerCtx, node: Node) -> None:
    """A linear or matmul on its own (its constant bias still runs in the kernel's epilogue)."""
    lower_product(ctx, node, empty_epilogue(node), node.outputs[0])
