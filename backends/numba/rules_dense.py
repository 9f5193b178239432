"""Lowering of linear, matmul and conv2d (see rules_conv.py), alone or fused with their epilogue (fusion.py)."""

from __future__ import annotations

import math

import numpy as np

from ...ir.graph import Node, Value
from . import k_microkernel
from .fusion import FusedGroup, Stage, describe, is_gemm_like
from .jit import cdiv
from .k_gemm import ADD_RES, ADD_VEC, DIV_VEC, GELU, GELU_TANH, MUL_VEC, RELU, bmm_loops, bmm_sgemm, gemm
from .k_microkernel import gemm_packed, pack_weights, scratch_per_tile
from .plan import Lit, LowerCtx
from .registry import lowers
from .rules_elementwise import emit_binary
from .rules_shape import Transpose

FLOPS_PER_UNIT = 32
"""Products count their flops / 32 as work (a GEMM flop costs far less than an elementwise element)."""

CODES = {"add_vec": ADD_VEC, "mul_vec": MUL_VEC, "div_vec": DIV_VEC, "residual": ADD_RES, "relu": RELU,
         "gelu": GELU, "gelu_tanh": GELU_TANH}


class Epilogue:
    """Stage codes, the per-channel vectors (one row each) and the residual value of a fused kernel."""

    def __init__(self, stages: list[Stage], channels: int) -> None:
        self.codes = np.array([CODES[s.kind] for s in stages], np.int64)
        vecs = [s.vec for s in stages if s.vec is not None]
        self.vecs = np.stack(vecs).astype(np.float32) if vecs else np.zeros((1, max(channels, 1)), np.float32)
        res = [s.value for s in stages if s.kind == "residual"]
        self.residual: Value | None = res[0] if res else None

    def slots(self, ctx: LowerCtx) -> tuple[int, int]:
        """Const slots of the stage codes and vectors."""
        return ctx.const(self.codes, "stages"), ctx.const(self.vecs, "vecs")


def _bias_stage(ctx: LowerCtx, bias: Value | None) -> tuple[list[Stage], Value | None]:
    """A constant bias becomes an epilogue stage; any other bias is added by a separate kernel."""
    if bias is None:
        return [], None
    if bias.is_constant and bias.type.dtype.name == "f32":
        return [Stage("add_vec", np.ascontiguousarray(bias.data, np.float32))], None
    return [], bias


def _dummy(ctx: LowerCtx, rank: int) -> int:
    return ctx.const(np.zeros((1,) * rank, np.float32), "no_residual")


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


def packed_tiles(m: int, panels: int, threads: int, parallel: bool) -> tuple[int, int]:
    """(rows, NR-panels) per work item of the packed GEMM: an A block of at most 256 rows stays in L2."""
    mr = k_microkernel.MR
    if not parallel or threads <= 1:
        return max(1, min(m, 256)), max(panels, 1)
    if m <= 256 and panels >= threads:
        return max(m, 1), cdiv(panels, threads)
    return max(1, min(cdiv(cdiv(m, threads), mr) * mr, 256)), max(panels, 1)


def _emit_packed(ctx: LowerCtx, x: int, w_nk: np.ndarray, out: int, dims: tuple[int, int, int],
                 stages: list[Stage], epi: Epilogue, res: int, name: str) -> None:
    """The micro-kernel GEMM with weights packed now, at compile time."""
    m, n_out, k = dims
    packed = ctx.const(pack_weights(np.ascontiguousarray(w_nk, np.float32)), f"{name}.packed")
    panels = ctx.slots[packed].shape[0]
    work = 2 * m * n_out * max(k, 1) // FLOPS_PER_UNIT
    par = ctx.parallel(work)
    tm, tnp = packed_tiles(m, panels, ctx.threads, par)
    items = cdiv(m, tm) * cdiv(panels, tnp)
    scratch = ctx.buffer((items * scratch_per_tile(tm),), np.dtype(np.float32), f"{name}.packA")
    codes, vecs = epi.slots(ctx)
    label = "gemm_uk" + ("+" + "+".join(s.kind.replace("_vec", "") for s in stages) if stages else "")
    ctx.emit(label, gemm_packed, x, packed, out, Lit(tm), Lit(tnp), scratch, codes, vecs, res,
             writes=(out, scratch), work=work)


def lower_linear(ctx: LowerCtx, node: Node, stages: list[Stage], out_value: Value) -> None:
    """linear(x, W, b) or a 2-D-operand matmul, with `stages` applied to its [M, N] output."""
    x, wv = node.inputs[0], node.inputs[1]
    if node.op == "linear":
        n_out, k = wv.type.shape
        extra, bias_value = _bias_stage(ctx, node.inputs[2] if len(node.inputs) > 2 else None)
        stages = extra + stages
        w_is_nk = True
        w = ctx.slot(wv) if wv.is_constant else ctx.arg(wv)
    else:
        k, n_out = wv.type.shape
        bias_value = None
        w_is_nk = wv.is_constant
        w = ctx.const(np.ascontiguousarray(wv.data.T), f"{wv.name}.T") if wv.is_constant else ctx.arg(wv)
    m = x.type.numel // max(k, 1) if k else math.prod(x.type.shape[:-1])
    out = ctx.out(out_value)
    if out_value.type.dtype.name != "f32":
        if stages:
            raise ctx.fail("epilogues need f32")
        _int_product(ctx, node, x, w, w_is_nk, out, (m, n_out, k))
    elif m * n_out:
        epi = Epilogue(stages, n_out)
        res = ctx.reshaped(ctx.arg(epi.residual), (m, n_out)) if epi.residual is not None else _dummy(ctx, 2)
        if k_microkernel.AVAILABLE and wv.is_constant and m >= 4 and k > 0:
            w_nk = wv.data if node.op == "linear" else wv.data.T
            _emit_packed(ctx, ctx.reshaped(ctx.arg(x), (m, k)), w_nk, ctx.reshaped(out, (m, n_out)),
                         (m, n_out, k), stages, epi, res, wv.name)
            if bias_value is not None:
                emit_binary(ctx, "add", out, ctx.arg(bias_value), out)
            return
        codes, vecs = epi.slots(ctx)
        work = 2 * m * n_out * max(k, 1) // FLOPS_PER_UNIT
        par = ctx.parallel(work, needs_blas=True)
        tm, tn = gemm_tiles(m, n_out, ctx.threads, par, w_is_nk)
        label = "gemm" + ("+" + "+".join(s.kind.replace("_vec", "") for s in stages) if stages else "")
        ctx.emit(label, gemm, ctx.reshaped(ctx.arg(x), (m, k)), w, Lit(w_is_nk), ctx.reshaped(out, (m, n_out)),
                 Lit(tm), Lit(tn), codes, vecs, res, writes=(out,), work=work, needs_blas=True)
    if bias_value is not None:
        emit_binary(ctx, "add", out, ctx.arg(bias_value), out)


def _int_product(ctx: LowerCtx, node: Node, x: Value, w: int, w_is_nk: bool, out: int,
                 dims: tuple[int, int, int]) -> None:
    """Integer linear / 2-D matmul through the loop kernel (wrapping arithmetic, like numpy)."""
    m, n, k = dims
    if m * n == 0:
        return
    zero = np.zeros(1, ctx.slots[out].dtype)[0]
    wf = ctx.flat_of(ctx.arg(w))
    z = ctx.const(np.zeros(1, np.int64), "off0")
    ctx.emit("matmul_loops", bmm_loops, ctx.flat_of(ctx.arg(x)), z, Lit(k), wf, z, Lit(k if w_is_nk else n),
             Lit(w_is_nk), ctx.flat_of(out), z, Lit(n), ctx.const(np.array([m, n, k], np.int64), "dims"),
             Lit(zero), ctx.const(np.zeros(0, np.int64), "stages"), ctx.const(np.zeros((1, 1), np.float32), "vecs"),
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


def lower_matmul(ctx: LowerCtx, node: Node, stages: list[Stage], out_value: Value,
                 out_perm: tuple[int, ...] | None) -> None:
    """Batched matmul (numpy semantics) through BLAS on strided operands, or loops for integers."""
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
    if out_perm is not None:
        inv = tuple(np.argsort(out_perm))
        c_view = ctx.view(out, Transpose(inv), f"{mv.name}.layout")
    else:
        c_view = ctx.reshaped(out, full)
    count = math.prod(batch) if batch else 1
    if count * m * n == 0:
        return
    is_float = mv.type.dtype.name == "f32"
    fa, a_off, a_t, a_ld = _operand(ctx, sa, batch, need_plain=not is_float)
    fb, b_off, b_t, b_ld = _operand(ctx, sb, batch)
    fc, c_off, c_t, c_ld = _operand(ctx, c_view, batch, need_plain=True)
    dims = ctx.const(np.array([m, n, k], np.int64), "dims")
    work = 2 * count * m * n * max(k, 1) // FLOPS_PER_UNIT
    epi = Epilogue(stages, n)
    codes, vecs = epi.slots(ctx)
    if is_float:
        par = ctx.parallel(work, needs_blas=True)
        tm = m if (not par or count >= 2 * ctx.threads) else cdiv(m, cdiv(2 * ctx.threads, count))
        label = "bmm" + ("+" + describe_stages(stages, out_perm) if stages or out_perm else "")
        ctx.emit(label, bmm_sgemm, fa, a_off, Lit(a_ld), Lit(a_t), fb, b_off, Lit(b_ld), Lit(b_t), fc, c_off,
                 Lit(c_ld), dims, Lit(max(tm, 1)), codes, vecs, writes=(out,), work=work, needs_blas=True)
    else:
        zero = np.zeros(1, mv.type.dtype.np_dtype)[0]
        ctx.emit("bmm_loops", bmm_loops, fa, a_off, Lit(a_ld), fb, b_off, Lit(b_ld), Lit(b_t), fc, c_off,
                 Lit(c_ld), dims, Lit(zero), codes, vecs, writes=(out,), work=work)


def describe_stages(stages: list[Stage], out_perm: tuple[int, ...] | None) -> str:
    """'add+gelu' style label of stages (and a final transpose)."""
    parts = [s.kind.replace("_vec", "") for s in stages] + (["transpose"] if out_perm is not None else [])
    return "+".join(parts)


@lowers("linear", "matmul", "conv2d")
def _dense(ctx: LowerCtx, node: Node) -> None:
    lower_fused(ctx, FusedGroup(node, [node]))


def lower_fused(ctx: LowerCtx, group: FusedGroup) -> None:
    """Lower a product with its epilogue as one kernel at the group's last node."""
    node = group.anchor
    first = len(ctx.steps)
    if node.op == "conv2d":
        from .rules_conv import lower_conv

        lower_conv(ctx, node, group.stages, group.output)
    elif is_gemm_like(node) and group.out_perm is None:
        lower_linear(ctx, node, group.stages, group.output)
    else:
        lower_matmul(ctx, node, group.stages, group.output, group.out_perm)
    if len(group.nodes) > 1:
        for step in ctx.steps[first:]:
            if not step.is_view:
                step.name = "+".join(group.names)
                step.op = "+".join(n.op for n in group.nodes)


__all__ = ["describe", "lower_fused"]
