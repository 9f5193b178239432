"""The fp32 GEMM with weights packed at compile time, on the register-blocked micro-kernel (k_microkernel.py).

Weights (B = W^T) are packed once per constant into NR-column panels. The driver follows BLIS's loop
order (K block, then N panels, then M row groups) inside an outer `prange` over (row block, panel
block) tiles, and applies the fused epilogue: its leading stages in the micro-kernel on the last K block, to the
micro-tile it has just stored (`ukernel_epilogue.register_epilogue`), the rest to each finished tile while it is in
cache. The row groups
of each block of weights prefetch the next block (`prefetch_plan`): in a model the weights come from memory. Tiles
whose row groups each have a micro-kernel of exactly their height (`exact_rows`) read the activations
(A) in place where packing would not pay: tiles of at most IN_PLACE_ROWS rows (a few rows of batch
inference, where packing cost as much as the products, and every thread of a split by columns packed
the same rows), panel by panel, and tiles of at most IN_PLACE_COLUMNS columns (packing amortized over
too few panels), K block by K block. Other tiles pack their rows per K block into MR-row panels.
"""

from __future__ import annotations

import weakref

import numpy as np
from numba import prange

from ..aligned import aligned_empty
from .jit import helper, subkernel, twin, work_item_tile
from .k_epilogue import CLIP, GELU, RELU, RESIDUAL, epi_tile, is_vector_stage
from .k_gemm_ukernels import microkernel_in_place_epilogue, microkernel_rows_epilogue
from .k_microkernel import KC, MR, NR, exact_rows, microkernel_in_place, microkernel_rows
from .llvm_prefetch import LINE_FLOATS
from .ukernel_epilogue_ir import EPI_NONE, EPI_ROWS

GEMM_CLOSING = (RELU, CLIP, GELU)
"""The activations gemm_packed's micro-kernels apply themselves (`register_epilogue`'s `closing`)."""
NO_REGISTER_EPILOGUE = (np.zeros(1, np.float32), EPI_NONE, 0, True)
"""gemm_packed's last four arguments (ep, mode, done, prefetch) when no epilogue stage runs in the micro-kernel."""
IN_PLACE_ROWS = 2 * MR
"""Tiles of at most this many rows read A in place (when A is C-contiguous): packing them does not pay."""
IN_PLACE_COLUMNS = 384
"""Tiles of at most this many columns read A in place too: packing a K block of A is amortized over the tile's
panels, and over 12 panels of 32 it cost 4-14% (MiniLM's 128 x 384 x 384 products), over 24 or more it pays."""


def pack_weights(w: np.ndarray) -> np.ndarray:
    """W [N, K] (a linear weight, B = W^T) as NR-column panels [ceil(N/NR), K, NR], zero-padded."""
    n, k = w.shape
    panels = -(-n // NR)
    out = aligned_empty((panels, k, NR), np.float32)
    out[...] = 0
    for p in range(panels):
        blk = w[p * NR:(p + 1) * NR]
        out[p, :, :blk.shape[0]] = blk.T
    return out


_PACKED: dict[tuple[int, int, tuple[int, ...], tuple[int, ...]], tuple[weakref.ref, np.ndarray]] = {}
"""Packed weights by the read-only array they were packed from (dropped when that array is freed)."""


def shared_packed(w: np.ndarray) -> np.ndarray:
    """pack_weights(w), computed once per read-only constant array (or view of one) and shared by every plan
    that packs it: the plans of one segment for several row counts hold one packed copy."""
    owner = w if w.base is None else w.base
    if not isinstance(owner, np.ndarray) or owner.flags.writeable:
        return pack_weights(np.ascontiguousarray(w, np.float32))
    key = (id(owner), w.ctypes.data, w.shape, w.strides)
    hit = _PACKED.get(key)
    if hit is not None and hit[0]() is owner:
        return hit[1]
    packed = pack_weights(np.ascontiguousarray(w, np.float32))
    _PACKED[key] = (weakref.ref(owner, lambda _ref, k=key: _PACKED.pop(k, None)), packed)
    return packed


@subkernel
def pack_rows(x, m0, m1, k0, kc, ap):  # type: ignore[no-untyped-def]
    """Pack rows m0..m1 (zero-padded to MR) and columns k0..k0+kc of x into MR-row panels ap[p][k][i]."""
    panels = (m1 - m0 + MR - 1) // MR
    for mp in range(panels):
        for i in range(MR):
            r = m0 + mp * MR + i
            base = mp * kc * MR + i
            if r < m1:
                xr = x[r, k0:k0 + kc]
                for kk in range(kc):
                    ap[base + kk * MR] = xr[kk]
            else:
                for kk in range(kc):
                    ap[base + kk * MR] = 0.0


def scratch_per_tile(tm: int) -> int:
    """Floats of scratch one work item of `gemm_packed` needs for tiles of tm rows."""
    return -(-tm // MR) * MR * KC + MR * NR


@helper
def _edge_into(out, ctmp, r0, mw, n0, nw, accumulate):  # type: ignore[no-untyped-def]
    """Rows r0..r0+mw, columns n0..n0+nw of out (+)= the first mw rows and nw columns of the scratch tile ctmp."""
    for r in range(mw):
        o = out[r0 + r, n0:n0 + nw]
        c = ctmp[r * NR:r * NR + nw]
        if accumulate:
            for z in range(nw):
                o[z] += c[z]
        else:
            for z in range(nw):
                o[z] = c[z]


@helper
def _register_stages(stages, done):  # type: ignore[no-untyped-def]
    """(vector rows read, whether a residual is added) by the first `done` stages (those the micro-kernel applies)."""
    vectors = 0
    residual = False
    for s in range(done):
        vectors += is_vector_stage(stages[s])
        residual = residual or stages[s] == RESIDUAL
    return vectors, residual


@helper
def _next_block(p, pc, p0, p1, k_all, prefetch):  # type: ignore[no-untyped-def]
    """Offset in the packed weights of the block after (K block pc, panel p) in the order K block, then panels
    p0..p1 (-1 after the last, or without `prefetch`)."""
    if not prefetch:
        return -1
    if p + 1 < p1:
        return ((p + 1) * k_all + pc) * NR
    if pc + KC < k_all:
        return (p0 * k_all + pc + KC) * NR
    return -1


@helper
def _next_block_of_panel(p, pc, p1, k_all, prefetch):  # type: ignore[no-untyped-def]
    """The same in the order panel, then its K blocks."""
    if not prefetch:
        return -1
    if pc + KC < k_all:
        return (p * k_all + pc + KC) * NR
    if p + 1 < p1:
        return (p + 1) * k_all * NR
    return -1


@helper
def prefetch_plan(nxt, own, mp, nmp, kc):  # type: ignore[no-untyped-def]
    """(offset, step) in the packed weights of the lines row group mp of nmp prefetches, one per k of its K block of
    kc: the next block's (at `nxt`; -1: none) lines mp * kc .. (mp + 1) * kc - 1, so that the groups between them
    ask for its first nmp * kc lines (all of it when there are that many; a tail beyond them, with one or two
    groups, is left to the hardware's prefetcher, which follows the stream by then). Groups past the block's end
    repeat one line of their own block at `own`."""
    block_lines = (kc * NR + LINE_FLOATS - 1) // LINE_FLOATS
    first = mp * kc
    if nxt >= 0 and first < block_lines:
        return nxt + first * LINE_FLOATS, LINE_FLOATS
    return own, 0


@helper
def _group_in_place(x, bp, out, ctmp, r0, mw, p, nw, pc, kc, ep, mode, res, residual,  # type: ignore
                    stages, vecs, params, done, vectors, pf_off, pf_step):
    """Row group r0..r0+mw of panel p (nw columns of out) over K block pc..pc+kc, A read in place (mw an exact
    height); mode != EPI_NONE on the last K block: the first `done` epilogue stages are applied to the group;
    bp[pf_off + k * pf_step] prefetched per k."""
    k_all = x.shape[1]
    n_all = out.shape[1]
    n0 = p * NR
    if nw == NR:
        microkernel_in_place_epilogue(mw, kc, x, r0 * k_all + pc, k_all, bp, (p * k_all + pc) * NR, NR, out,
                                      r0 * n_all + n0, n_all, pc > 0, ep, p * EPI_ROWS * NR, mode, res,
                                      r0 * n_all + n0, n_all, residual, bp, pf_off, pf_step)
    else:  # columns past out's edge: through ctmp (the plain micro-kernel: one copy less of the epilogue variants
        # in the compiled driver), the micro-kernel's stages then run on the group's columns
        microkernel_in_place(mw, kc, x, r0 * k_all + pc, k_all, bp, (p * k_all + pc) * NR, NR, ctmp, 0, NR, False)
        _edge_into(out, ctmp, r0, mw, n0, nw, pc > 0)
        if mode != EPI_NONE:
            epi_tile(out, r0, r0 + mw, n0, n0 + nw, stages[:done], vecs[:vectors], params[:done], res)


@helper
def _group_packed(ap, a_off, bp, out, ctmp, r0, mw, p, nw, pc, kc, ep, mode, res, residual,  # type: ignore
                  stages, vecs, params, done, vectors, pf_off, pf_step):
    """Row group r0..r0+mw of panel p (nw columns of out) over K block pc..pc+kc from the packed A panel at a_off;
    mode and prefetch as `_group_in_place`."""
    k_all = bp.shape[1]
    n_all = out.shape[1]
    n0 = p * NR
    if nw == NR and exact_rows(mw):  # the micro-kernel writes exactly these rows: straight into out
        microkernel_rows_epilogue(mw, kc, ap, a_off, bp, (p * k_all + pc) * NR, NR, out, r0 * n_all + n0, n_all,
                                  pc > 0, ep, p * EPI_ROWS * NR, mode, res, r0 * n_all + n0, n_all, residual, bp,
                                  pf_off, pf_step)
    else:  # rows or columns past out's edge: through ctmp (the plain micro-kernel, as in _group_in_place)
        microkernel_rows(mw, kc, ap, a_off, bp, (p * k_all + pc) * NR, NR, ctmp, 0, NR, False)
        _edge_into(out, ctmp, r0, mw, n0, nw, pc > 0)
        if mode != EPI_NONE:
            epi_tile(out, r0, r0 + mw, n0, n0 + nw, stages[:done], vecs[:vectors], params[:done], res)


@twin
def gemm_packed(x, bp, out, tm, tnp, scratch, stages, vecs, params, res, ep, mode,  # type: ignore[no-untyped-def]
                done, prefetch):
    """out = epilogue(x @ W) with W packed by pack_weights; tiles of tm rows x tnp panels of NR columns.

    The epilogue's first `done` stages run in the micro-kernel on the last K block (mode and table ep
    from `register_epilogue`; done 0 and EPI_NONE: none do), the rest over each finished tile. With `prefetch` the
    row groups of each block of weights ask for the next block's lines (`prefetch_plan`).
    """
    m_all, k_all = x.shape
    n_all = out.shape[1]
    panels = bp.shape[0]
    gm = (m_all + tm - 1) // tm
    gn = (panels + tnp - 1) // tnp
    per = ((tm + MR - 1) // MR) * MR * KC + MR * NR
    few_rows = tm <= IN_PLACE_ROWS
    rows_in_place = x.flags.c_contiguous and (few_rows or tnp * NR <= IN_PLACE_COLUMNS)
    if k_all == 0:  # no K block to apply it: the whole epilogue runs on the zeros
        done = 0
    vectors, residual = _register_stages(stages, done)
    if residual and not (res.flags.c_contiguous and res.shape[0] == m_all and res.shape[1] == n_all):
        done = 0  # the micro-kernel reads the residual in out's layout only
        vectors, residual = _register_stages(stages, done)
    for t in prange(gm * gn):
        m0, m1, p0, p1 = work_item_tile(t, gn, tm, tnp, m_all, panels)
        ap = scratch[t * per:t * per + per - MR * NR]
        ctmp = scratch[t * per + per - MR * NR:t * per + per]
        nmp = (m1 - m0 + MR - 1) // MR
        if k_all == 0:
            for r in range(m0, m1):
                out[r][p0 * NR:min(n_all, p1 * NR)] = 0
        if rows_in_place and exact_rows(m1 - m0 - (nmp - 1) * MR):
            if few_rows:  # panel by panel over all of K, C hot (the loop spelled out: through a helper over the
                # groups 4-8-row products ran 3-6% slower, A/B in one process)
                for p in range(p0, p1):
                    nw = min(NR, n_all - p * NR)
                    for pc in range(0, k_all, KC):
                        kc = min(KC, k_all - pc)
                        md = mode if done > 0 and pc + kc == k_all else EPI_NONE
                        nxt = _next_block_of_panel(p, pc, p1, k_all, prefetch)
                        for mp in range(nmp):
                            r0 = m0 + mp * MR
                            pf_off, pf_step = prefetch_plan(nxt, (p * k_all + pc) * NR, mp, nmp, kc)
                            _group_in_place(x, bp, out, ctmp, r0, min(MR, m1 - r0), p, nw, pc, kc, ep, md, res,
                                            residual, stages, vecs, params, done, vectors, pf_off, pf_step)
            else:  # K block by K block: each panel's block of B stays in L1 across the row groups
                for pc in range(0, k_all, KC):
                    kc = min(KC, k_all - pc)
                    md = mode if done > 0 and pc + kc == k_all else EPI_NONE
                    for p in range(p0, p1):
                        nw = min(NR, n_all - p * NR)
                        nxt = _next_block(p, pc, p0, p1, k_all, prefetch)
                        for mp in range(nmp):
                            r0 = m0 + mp * MR
                            pf_off, pf_step = prefetch_plan(nxt, (p * k_all + pc) * NR, mp, nmp, kc)
                            _group_in_place(x, bp, out, ctmp, r0, min(MR, m1 - r0), p, nw, pc, kc, ep, md, res,
                                            residual, stages, vecs, params, done, vectors, pf_off, pf_step)
            nmp = 0
        for pc in range(0, k_all if nmp > 0 else 0, KC):  # rows packed per K block
            kc = min(KC, k_all - pc)
            md = mode if done > 0 and pc + kc == k_all else EPI_NONE
            pack_rows(x, m0, m1, pc, kc, ap)
            for p in range(p0, p1):
                nw = min(NR, n_all - p * NR)
                nxt = _next_block(p, pc, p0, p1, k_all, prefetch)
                for mp in range(nmp):
                    r0 = m0 + mp * MR
                    pf_off, pf_step = prefetch_plan(nxt, (p * k_all + pc) * NR, mp, nmp, kc)
                    _group_packed(ap, mp * kc * MR, bp, out, ctmp, r0, min(MR, m1 - r0), p, nw, pc, kc, ep, md, res,
                                  residual, stages, vecs, params, done, vectors, pf_off, pf_step)
        if stages.shape[0] > done:
            epi_tile(out, m0, m1, p0 * NR, min(n_all, p1 * NR), stages[done:], vecs[vectors:], params[done:], res)
