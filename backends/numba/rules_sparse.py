"""Pruned constant weights on the block-sparse (BSR) or N:M kernel, when the measured break-even says they win.

`layer_choice` takes the decision of `backends/cost/sparse_kernels.choose_sparse_kernel` (the one the
cost model prices) with the block density measured on the weight's data; `record_choice` files it
(kernel and reason) for the executable's stats and profile. `emit_sparse_product` runs a [M, K] x
W[N, K]^T product with the region's epilogue on the chosen kernel; `lower_sparse_conv` runs a
convolution through its GEMM view [O, C*kh*kw]: im2col with one row per output pixel, the sparse
kernel into a [pixels, O] scratch (the epilogue's channel is then the column), and a transposing
copy into NCHW.
"""

from __future__ import annotations

import numpy as np

from ...ir.graph import Node
from ..cost.sparse_kernels import BSR, KernelChoice, choose_sparse_kernel, sparse_blocker, with_copies
from .bsr_gemm import bsr_from_dense, bsr_gemm, bsr_schedule
from .epilogue import Epilogue
from .geometry import window_geometry
from .jit import cdiv
from .k_im2col import im2col_rows
from .matrix_lowering import FLOPS_PER_UNIT, epilogue_args, kernel_label
from .nm_gemm import nm_from_dense, nm_gemm, nm_schedule
from .plan import Lit, LowerCtx
from .rules_shape import Transpose
from .sparse_ukernels import HOST_ISAS

F32 = np.dtype(np.float32)


def measured_block_density(w_nk: np.ndarray, block: tuple[int, int]) -> float:
    """Fraction of the bh x bw blocks of W [N, K] (edges padded with zeros) that hold a nonzero."""
    bh, bw = block
    n, k = w_nk.shape
    nbr, nbc = cdiv(n, bh), cdiv(k, bw)
    if nbr * nbc == 0:
        return 0.0
    padded = np.zeros((nbr * bh, nbc * bw), bool)
    padded[:n, :k] = w_nk != 0
    return float(padded.reshape(nbr, bh, nbc, bw).any(axis=(1, 3)).mean())


def layer_choice(node: Node, w_nk: np.ndarray | None) -> KernelChoice:
    """The kernel `node`'s weight (its GEMM view `w_nk`, None when not constant) runs on, and why."""
    info = node.inputs[1].type.sparsity
    blocked = sparse_blocker(node)
    if info is not None and blocked is None:
        if w_nk is None:
            blocked = "the weight is not a constant"
        elif not HOST_ISAS:
            blocked = "this CPU has no AVX2 or AVX-512 path for the sparse kernels"
    measured = (lambda b: measured_block_density(w_nk, b)) if w_nk is not None else None
    return with_copies(node, choose_sparse_kernel(info, measured, blocked))


def int8_layer_choice(node: Node, w_q: np.ndarray) -> KernelChoice:
    """The kernel an integer product's constant s8 weight (GEMM view `w_q` [N, K]) runs on: block-sparse int8 when
    its annotation and measured block density beat the int8 break-even, else the dense int8 GEMM."""
    measured = choose_sparse_kernel(node.inputs[3].type.sparsity, lambda b: measured_block_density(w_q, b),
                                    sparse_blocker(node), precision="int8")
    return with_copies(node, measured)


def record_choice(ctx: LowerCtx, node: Node, choice: KernelChoice, first_step: int) -> None:
    """File `choice` under the layer's name and note its reason on the kernel steps emitted since `first_step`."""
    ctx.layer_kernels[node.name] = {"kernel": choice.label, "reason": choice.reason}
    for step in ctx.steps[first_step:]:
        if not step.is_view:
            step.note = choice.reason


def emit_sparse_product(ctx: LowerCtx, choice: KernelChoice, x: int, w_nk: np.ndarray, out: int,
                        epi: Epilogue, res: int, name: str) -> None:
    """out [M, N] = epilogue(x [M, K] @ W^T) on the BSR or N:M kernel of `choice` (weights converted now)."""
    m, k = ctx.slots[x].shape
    n = w_nk.shape[0]
    work = max(1, int(2 * m * n * k * choice.density) // FLOPS_PER_UNIT)
    threads = ctx.threads if ctx.parallel(work) else 1
    codes, vecs, params = epilogue_args(ctx, epi)
    if choice.kernel == BSR and choice.block is not None:
        bsr = bsr_from_dense(w_nk, choice.block, name)
        sched = bsr_schedule(bsr, m, threads)
        c = bsr.config
        scratch = ctx.buffer((max(1, sched.scratch_floats),), F32, f"{name}.bsr_scratch")
        ctx.emit(kernel_label(f"bsr{choice.block[0]}x{choice.block[1]}", epi), bsr_gemm, x, Lit(c.code), Lit(c.mr),
                 Lit(c.np_), ctx.const(bsr.pptr, f"{name}.pptr"), ctx.const(bsr.kidx, f"{name}.kidx"),
                 ctx.const(bsr.vals, f"{name}.vals"), ctx.const(sched.groups, f"{name}.groups"), out, Lit(sched.tm),
                 scratch, codes, vecs, params, res, writes=(out, scratch), work=work)
    elif choice.nm is not None:
        nm = nm_from_dense(w_nk, choice.nm[0], choice.nm[1], name)
        sched_nm = nm_schedule(nm, m, threads)
        c_nm = nm.config
        scratch = ctx.buffer((max(1, sched_nm.scratch_floats),), F32, f"{name}.nm_scratch")
        ctx.emit(kernel_label(f"nm{choice.nm[0]}of{choice.nm[1]}", epi), nm_gemm, x, Lit(c_nm.code), Lit(c_nm.r),
                 Lit(c_nm.mv), ctx.const(nm.pidx, f"{name}.pidx"), ctx.const(nm.pvals, f"{name}.pvals"),
                 ctx.const(sched_nm.groups, f"{name}.groups"), out, Lit(sched_nm.tm), scratch, codes, vecs, params,
                 res, writes=(out, scratch), work=work)
    else:
        raise ctx.fail(f"{name}: {choice.kernel} is not a sparse kernel")


def lower_sparse_conv(ctx: LowerCtx, node: Node, choice: KernelChoice, src: int, o3: int,
                      out_hw: tuple[int, int], epi: Epilogue) -> None:
    """conv2d (groups 1, constant filters) through im2col and the sparse kernel of `choice`, into o3 [N, O, P]."""
    w = node.inputs[1].data
    co = w.shape[0]
    nb = ctx.slots[src].shape[0]
    ho, wo = out_hw
    rows = nb * ho * wo
    kdim = int(np.prod(w.shape[1:]))
    patches = ctx.buffer((rows, kdim), F32, f"{node.name}.patches")
    ctx.emit("im2col_rows", im2col_rows, src, Lit(window_geometry(node, wo)), Lit(ho), patches, writes=(patches,),
             work=rows * kdim)
    res = ctx.const(np.zeros((1, 1), F32), "no_residual")
    if epi.residual is not None:
        nhwc = ctx.view(ctx.arg(epi.residual), Transpose((0, 2, 3, 1)), f"{node.name}.residual_nhwc")
        res_rows = ctx.buffer((nb, ho, wo, co), F32, f"{node.name}.residual_rows")
        ctx.copy_view(nhwc, res_rows)
        res = ctx.reshaped(res_rows, (rows, co))
    tmp = ctx.buffer((nb, ho * wo, co), F32, f"{node.name}.pixels_by_channel")
    emit_sparse_product(ctx, choice, patches, np.ascontiguousarray(w.reshape(co, kdim), np.float32),
                        ctx.reshaped(tmp, (rows, co)), epi, res, node.name)
    ctx.copy_view(ctx.view(tmp, Transpose((0, 2, 1)), f"{node.name}.channels_first"), o3)
