"""The fp32 GEMM with weights packed at compile time, on the register-blocked micro-kernel (k_microkernel.py).

Weights (B = W^T) are packed once per constant into NR-column panels. The driver follows BLIS's loop
order (K block, then N panels, then M row groups) inside an outer `prange` over (row block, panel
block) tiles, and applies the fused epilogue to each finished tile while it is in cache. Tiles
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
from .jit import helper, subkernel, twin
from .k_epilogue import epi_tile
from .k_microkernel import KC, MR, NR, exact_rows, microkernel_in_place, microkernel_rows

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
def _groups_in_place(x, bp, out, ctmp, m0, m1, nmp, p, nw, pc, kc):  # type: ignore[no-untyped-def]
    """The nmp row groups from m0 (to m1) of panel p (nw columns of out) over K block pc..pc+kc, A read in place
    (every row group of an exact height)."""
    k_all = x.shape[1]
    n_all = out.shape[1]
    n0 = p * NR
    for mp in range(nmp):
        r0 = m0 + mp * MR
        mw = min(MR, m1 - r0)
        if nw == NR:
            microkernel_in_place(mw, kc, x, r0 * k_all + pc, k_all, bp, (p * k_all + pc) * NR, NR, out,
                                 r0 * n_all + n0, n_all, pc > 0)
        else:  # columns past out's edge: through ctmp
            microkernel_in_place(mw, kc, x, r0 * k_all + pc, k_all, bp, (p * k_all + pc) * NR, NR, ctmp, 0, NR,
                                 False)
            _edge_into(out, ctmp, r0, mw, n0, nw, pc > 0)


@twin
def gemm_packed(x, bp, out, tm, tnp, scratch, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    """out = epilogue(x @ W) with W packed by pack_weights; tiles of tm rows x tnp panels of NR columns."""
    m_all, k_all = x.shape
    n_all = out.shape[1]
    panels = bp.shape[0]
    gm = (m_all + tm - 1) // tm
    gn = (panels + tnp - 1) // tnp
    per = ((tm + MR - 1) // MR) * MR * KC + MR * NR
    few_rows = tm <= IN_PLACE_ROWS
    rows_in_place = x.flags.c_contiguous and (few_rows or tnp * NR <= IN_PLACE_COLUMNS)
    for t in prange(gm * gn):
        i = t // gn
        jj = t - i * gn
        m0 = i * tm
        m1 = min(m_all, m0 + tm)
        p0 = jj * tnp
        p1 = min(panels, p0 + tnp)
        ap = scratch[t * per:t * per + per - MR * NR]
        ctmp = scratch[t * per + per - MR * NR:t * per + per]
        nmp = (m1 - m0 + MR - 1) // MR
        if k_all == 0:
            for r in range(m0, m1):
                out[r][p0 * NR:min(n_all, p1 * NR)] = 0
        if rows_in_place and exact_rows(m1 - m0 - (nmp - 1) * MR):
            if few_rows:  # panel by panel over all of K, C hot (the loop spelled out: through _groups_in_place
                # 4-8-row products ran 3-6% slower, A/B in one process)
                for p in range(p0, p1):
                    n0 = p * NR
                    nw = min(NR, n_all - n0)
                    for pc in range(0, k_all, KC):
                        kc = min(KC, k_all - pc)
                        for mp in range(nmp):
                            r0 = m0 + mp * MR
                            mw = min(MR, m1 - r0)
                            if nw == NR:
                                microkernel_in_place(mw, kc, x, r0 * k_all + pc, k_all, bp, (p * k_all + pc) * NR, NR,
                                                     out, r0 * n_all + n0, n_all, pc > 0)
                            else:  # columns past out's edge: through ctmp
                                microkernel_in_place(mw, kc, x, r0 * k_all + pc, k_all, bp, (p * k_all + pc) * NR, NR,
                                                     ctmp, 0, NR, False)
                                _edge_into(out, ctmp, r0, mw, n0, nw, pc > 0)
            else:  # K block by K block: each panel's block of B stays in L1 across the row groups
                for pc in range(0, k_all, KC):
                    for p in range(p0, p1):
                        _groups_in_place(x, bp, out, ctmp, m0, m1, nmp, p, min(NR, n_all - p * NR), pc,
                                         min(KC, k_all - pc))
            nmp = 0
        for pc in range(0, k_all if nmp > 0 else 0, KC):  # rows packed per K block
            kc = min(KC, k_all - pc)
            pack_rows(x, m0, m1, pc, kc, ap)
            for p in range(p0, p1):
                n0 = p * NR
                nw = min(NR, n_all - n0)
                for mp in range(nmp):
                    r0 = m0 + mp * MR
                    mw = min(MR, m1 - r0)
                    if nw == NR and exact_rows(mw):
                        # the micro-kernel writes exactly these rows: straight into out, adding after the first K block
                        microkernel_rows(mw, kc, ap, mp * kc * MR, bp, (p * k_all + pc) * NR, NR, out, r0 * n_all + n0,
                                         n_all, pc > 0)
                    else:  # rows or columns past out's edge: through ctmp
                        microkernel_rows(mw, kc, ap, mp * kc * MR, bp, (p * k_all + pc) * NR, NR, ctmp, 0, NR, False)
                        _edge_into(out, ctmp, r0, mw, n0, nw, pc > 0)
        if stages.shape[0] > 0:
            epi_tile(out, m0, m1, p0 * NR, min(n_all, p1 * NR), stages, vecs, params, res)
