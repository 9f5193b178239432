"""Tiled attention on the fp32 GEMM micro-kernel: K and V read in place, the score tile feeding both products.

A work item is (batch, head, share of the query blocks). Per block of TQ queries it packs Q^T as the
micro-kernel's B panels [D][NR queries] and runs over blocks of TK keys:

- S^T = K_blk Q^T on the micro-kernel, K's rows read in place (A[key, d] at stride E): a [keys, queries] score
  tile, each query a column; the last keys of a block, fewer than MR, are packed as a zero-padded A panel;
- the online softmax runs down the columns with vectors along the queries (mask added, running max
  and sum per query, the accumulator's rows rescaled);
- acc [queries, D] += P V_blk on the micro-kernel: A = P read from the score tile in place (A[query, key] at
  stride 1 along queries, the tile's width along keys), B = V's rows in place (NR of D at stride E); a last panel
  of D narrower than NR is packed once per head as [keys][NR], zero-padded.

At the end of a block out[q, :] = acc[q, :D] / l[q], row by row. Padded rows and columns (keys past the block,
queries past the last, D past the head dimension) are zero in the packs and never written out.

The score tiles, accumulators, per-query vectors and packed panels are four arrays, not views of one: LLVM does
not vectorize a loop that stores through one view and reads another of the same array (the softmax ran at
about 1 ns a score that way, scalar speed).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import prange

from .jit import cdiv, twin
from .k_microkernel import MR, NR, ukernel, ukernel_strided
from .mathfn import F0, F1, fexp
from .vector_exp import softmax_exp

NEG_INF = np.float32(-np.inf)
DIMS = ("batch", "heads", "sq", "skv", "head_dim", "embed", "tq", "tk", "splits")
"""The order of the `dims` array of `attention_packed`."""
QUERY_VECTORS = 4
"""Vectors along the queries per chunk: running max, running sum, tile max, rescale factor."""


class PackedScratch(NamedTuple):
    """Floats of each scratch array that one chunk of `attention_packed` uses."""

    panels: int
    """Q^T panels, the last keys' K panel, V's last panel of D."""
    scores: int
    """The score tile: keys x tile width."""
    accs: int
    """The accumulator: queries (rounded up to MR) x D (rounded up to NR)."""
    qvecs: int
    """QUERY_VECTORS vectors of the tile width."""


def tile_width(tq: int) -> int:
    """Columns of the score tile: a multiple of NR (the QK^T product's C tiles) covering whole MR-query panels
    (the PV product's A panels)."""
    return cdiv(cdiv(tq, MR) * MR, NR) * NR


def packed_scratch(tq: int, tk: int, head_dim: int, skv: int) -> PackedScratch:
    """Floats of scratch one chunk uses, per array."""
    tqp, tw = cdiv(tq, NR) * NR, tile_width(tq)
    return PackedScratch(tqp * head_dim + MR * head_dim + skv * NR, cdiv(tk, MR) * MR * tw,
                         cdiv(tq, MR) * MR * cdiv(head_dim, NR) * NR, QUERY_VECTORS * tw)


@twin
def attention_packed(q, k, v, out, mask, m_str, has_mask, causal, scale, dims,  # type: ignore[no-untyped-def]
                     panels, scores, accs, qvecs, chunks):
    """out = attention(q, k, v, mask) on flat [B, S, E] float32 arrays (see the module docstring); mask and
    `causal` as in `k_attention.attention_tiles` (causal: the key blocks past a query block's last query are
    skipped, the block across the diagonal masked); dims in the order of DIMS; items split into `chunks` runs,
    chunk c using the c-th equal share of each scratch array (sizes from `packed_scratch`)."""
    nb, nh, sq, skv, d, e, tq, tk, splits = dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7], \
        dims[8]
    tqp = (tq + NR - 1) // NR * NR
    tw = ((tq + MR - 1) // MR * MR + NR - 1) // NR * NR
    dn = (d + NR - 1) // NR * NR  # accumulator row length
    dfull = d // NR  # panels of D whose V columns are read in place
    p_size, s_size = panels.shape[0] // chunks, scores.shape[0] // chunks
    a_size, v_size = accs.shape[0] // chunks, qvecs.shape[0] // chunks
    k_at = tqp * d  # in a chunk's panels: Q^T panels, then the last keys' K panel, then V's last panel of D
    v_at = k_at + MR * d
    gq = (sq + tq - 1) // tq
    per_split = (gq + splits - 1) // splits
    items = nb * nh * splits
    per = (items + chunks - 1) // chunks
    for c in prange(chunks):
        pan = panels[c * p_size:(c + 1) * p_size]
        sc = scores[c * s_size:(c + 1) * s_size]
        acc = accs[c * a_size:(c + 1) * a_size]
        qv = qvecs[c * v_size:(c + 1) * v_size]
        mrun, lsum, tmax, fac = qv[:tw], qv[tw:2 * tw], qv[2 * tw:3 * tw], qv[3 * tw:4 * tw]
        sc[:] = F0  # columns past the queries are read (into accumulator rows never written out), never written
        packed_head = -1
        for it in range(c * per, min(items, (c + 1) * per)):
            bh = it // splits
            bi = bh // nh
            h = bh - bi * nh
            kv0 = bi * skv * e + h * d  # key 0, dimension 0 of this head in k and v
            if bh != packed_head and dfull * NR < d:  # V's last panel of D: [keys][NR], zero-padded
                n = d - dfull * NR
                for j in range(skv):
                    vrow = pan[v_at + j * NR:v_at + (j + 1) * NR]
                    vrow[:n] = v[kv0 + j * e + dfull * NR:kv0 + j * e + d]
                    vrow[n:] = F0
            packed_head = bh
            s = it - bh * splits
            for g in range(s * per_split, min(gq, (s + 1) * per_split)):
                i0 = g * tq
                qw = min(tq, sq - i0)
                nqp = (qw + NR - 1) // NR
                cw = nqp * NR
                nmp = (qw + MR - 1) // MR  # MR-query panels of the PV product
                for qp in range(nqp):  # Q^T panels [D][NR queries]: rows of NR gathered at stride E
                    nq = min(NR, qw - qp * NR)
                    q0 = (bi * sq + i0 + qp * NR) * e + h * d
                    for t in range(d):
                        prow = pan[(qp * d + t) * NR:(qp * d + t + 1) * NR]
                        qcol = q[q0 + t:q0 + t + (nq - 1) * e + 1:e]
                        for j in range(nq):
                            prow[j] = qcol[j]
                        prow[nq:] = F0  # queries past the last: zero columns
                acc[:nmp * MR * dn] = F0
                mrun[:cw] = NEG_INF
                lsum[:cw] = F0
                kend = min(skv, i0 + qw) if causal else skv  # keys past the last query: masked out, skipped
                for j0 in range(0, kend, tk):
                    cols = min(tk, kend - j0)
                    full = cols // MR
                    for kp in range(full):  # whole panels of MR keys: K rows in place
                        for qp in range(nqp):
                            ukernel_strided(d, k, kv0 + (j0 + kp * MR) * e, 1, e, pan, qp * d * NR, NR,
                                            sc, kp * MR * tw + qp * NR, tw, False)
                    if full * MR < cols:  # the last keys, fewer than MR: a packed [D][MR] panel, zero-padded
                        for jj in range(MR):
                            kpan = pan[k_at + jj:k_at + jj + (d - 1) * MR + 1]
                            if full * MR + jj < cols:
                                krow = k[kv0 + (j0 + full * MR + jj) * e:kv0 + (j0 + full * MR + jj) * e + d]
                                for t in range(d):
                                    kpan[t * MR] = krow[t]
                            else:
                                for t in range(d):
                                    kpan[t * MR] = F0
                        for qp in range(nqp):
                            ukernel(d, pan, k_at, pan, qp * d * NR, NR, sc, full * MR * tw + qp * NR, tw, False)
                    tm = tmax[:cw]
                    tm[:] = NEG_INF
                    # one mask value per key (a padding mask) or none: scaled in the exp; a block across the
                    # causal diagonal is masked per query
                    per_key = m_str[2] == 0 and not (causal and j0 + cols - 1 > i0)
                    for r in range(cols):  # scaled after the product, as the reference scales (Q K^T) * scale
                        row = sc[r * tw:r * tw + cw]
                        mo = bi * m_str[0] + h * m_str[1] + i0 * m_str[2] + (j0 + r) * m_str[3]
                        if per_key:  # the max only: the exp pass scales and masks again, in registers
                            mv = mask[mo] if has_mask else F0
                            for qi in range(cw):
                                x = row[qi] * scale + mv
                                tm[qi] = x if x > tm[qi] else tm[qi]
                        else:
                            for qi in range(cw):
                                row[qi] *= scale
                            if has_mask:
                                for qi in range(qw):
                                    row[qi] += mask[mo + qi * m_str[2]]
                            if causal:  # key j0 + r is after queries i0 .. j0 + r - 1
                                for qi in range(min(cw, max(0, j0 + r - i0))):
                                    row[qi] = NEG_INF
                            for qi in range(cw):
                                x = row[qi]
                                tm[qi] = x if x > tm[qi] else tm[qi]
                    for qi in range(cw):  # tmax becomes the max to subtract: 0 where all is -inf so far
                        mn = tmax[qi] if tmax[qi] > mrun[qi] else mrun[qi]
                        fac[qi] = F1 if mn == NEG_INF else fexp(mrun[qi] - mn)
                        tmax[qi] = F0 if mn == NEG_INF else mn
                        mrun[qi] = mn
                        lsum[qi] *= fac[qi]
                    for r in range(cols):  # p = exp(s - max) at full vector width (exp(-inf - 0) = 0), summed
                        if per_key:
                            mv = mask[bi * m_str[0] + h * m_str[1] + (j0 + r) * m_str[3]] if has_mask else F0
                            softmax_exp(sc, r * tw, scale, mv, tmax, 0, lsum, 0, cw)
                        else:
                            softmax_exp(sc, r * tw, F1, F0, tmax, 0, lsum, 0, cw)
                    for qi in range(qw if j0 > 0 else 0):  # rescaled from the second block: the first's acc is 0
                        f = fac[qi]
                        if f != F1:
                            arow = acc[qi * dn:qi * dn + d]
                            for t in range(d):
                                arow[t] *= f
                    for mp in range(nmp):  # acc += P V: P from the score tile, V's rows in place
                        for pd in range(dfull):
                            ukernel_strided(cols, sc, mp * MR, tw, 1, v, kv0 + j0 * e + pd * NR, e,
                                            acc, mp * MR * dn + pd * NR, dn, True)
                        if dfull * NR < d:
                            ukernel_strided(cols, sc, mp * MR, tw, 1, pan, v_at + j0 * NR, NR,
                                            acc, mp * MR * dn + dfull * NR, dn, True)
                for qi in range(qw):
                    inv = F1 / lsum[qi]
                    arow = acc[qi * dn:qi * dn + d]
                    orow = out[(bi * sq + i0 + qi) * e + h * d:(bi * sq + i0 + qi) * e + h * d + d]
                    for t in range(d):
                        orow[t] = arow[t] * inv
