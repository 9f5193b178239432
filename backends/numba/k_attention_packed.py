"""Tiled attention on the fp32 GEMM micro-kernel, computed transposed so that every tile operand is in place.

A work item is (batch, head, share of the query blocks). It packs the head's K once as the
micro-kernel's A panels [D][MR keys] and its V as A panels [keys][MR of D] (contiguous copies), then per
block of TQ queries packs Q^T as B panels [D][NR queries] and runs over blocks of TK
keys:

- S^T = K_blk Q^T on the micro-kernel, then times the scale: a [keys, queries] score tile, each query a
  column;
- the online softmax runs down the columns with vectors along the queries (mask added, running max
  and sum per query, the accumulator's columns rescaled);
- acc^T [D, queries] += V_blk^T P^T on the micro-kernel, P^T being the score tile itself (B rows
  [key][queries], stride the tile's width): no per-tile copy or transpose.

At the end of a block out[q, :] = acc^T[:, q] / l[q]. Rows of the padded panels (keys past the
sequence, D past the head dimension) are zero in the packs and never read back; queries past the last
are zero columns and never written. K^T is packed once per head, not once per query block.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import cdiv, twin
from .k_microkernel import MR, NR, ukernel
from .mathfn import F0, F1, fexp

NEG_INF = np.float32(-np.inf)
DIMS = ("batch", "heads", "sq", "skv", "head_dim", "embed", "tq", "tk", "splits")
"""The order of the `dims` array of `attention_packed`."""


def packed_scratch_per_chunk(tq: int, tk: int, head_dim: int, skv: int) -> int:
    """Floats of scratch one chunk uses: K and V panels of a head, Q^T panels, score tile, accumulator, per-query
    running max, sum, tile max and rescale factor."""
    tqp, tkp, skp, dp = cdiv(tq, NR) * NR, cdiv(tk, MR) * MR, cdiv(skv, MR) * MR, cdiv(head_dim, MR) * MR
    return skp * head_dim + dp * skp + tqp * head_dim + tkp * tqp + dp * tqp + 4 * tqp


@twin
def attention_packed(q, k, v, out, mask, m_str, has_mask, scale, dims, scratch, chunks):  # type: ignore[no-untyped-def]
    """out = attention(q, k, v, mask) on flat [B, S, E] float32 arrays (see the module docstring); mask as in
    `k_attention.attention_tiles`; dims in the order of DIMS; items split into `chunks` runs, chunk c using
    `packed_scratch_per_chunk` floats of scratch from c times that."""
    nb, nh, sq, skv, d, e, tq, tk, splits = dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7], \
        dims[8]
    tqp = (tq + NR - 1) // NR * NR
    tkp = (tk + MR - 1) // MR * MR
    skp = (skv + MR - 1) // MR * MR
    dp = (d + MR - 1) // MR * MR
    size = skp * d + dp * skp + tqp * d + tkp * tqp + dp * tqp + 4 * tqp
    gq = (sq + tq - 1) // tq
    per_split = (gq + splits - 1) // splits
    items = nb * nh * splits
    per = (items + chunks - 1) // chunks
    for c in prange(chunks):
        k_at = c * size
        v_at = k_at + skp * d
        q_at = v_at + dp * skp
        s_at = q_at + tqp * d
        a_at = s_at + tkp * tqp
        m_at = a_at + dp * tqp
        l_at = m_at + tqp
        t_at = l_at + tqp
        f_at = t_at + tqp
        packed_head = -1
        for it in range(c * per, min(items, (c + 1) * per)):
            bh = it // splits
            bi = bh // nh
            h = bh - bi * nh
            if bh != packed_head:  # K as A panels [D][MR keys], V as A panels [keys][MR of D]
                for j in range(skv):
                    dst = k_at + (j // MR) * d * MR + j % MR
                    src = (bi * skv + j) * e + h * d
                    for t in range(d):
                        scratch[dst + t * MR] = k[src + t]
                for j in range(skv, skp):  # keys past the sequence: zero rows of the last panel
                    dst = k_at + (j // MR) * d * MR + j % MR
                    for t in range(d):
                        scratch[dst + t * MR] = F0
                for pd in range(dp // MR):
                    n = min(MR, d - pd * MR)
                    for j in range(skv):
                        dst = v_at + (pd * skp + j) * MR
                        src = (bi * skv + j) * e + h * d + pd * MR
                        scratch[dst:dst + n] = v[src:src + n]
                        scratch[dst + n:dst + MR] = F0
                    scratch[v_at + (pd * skp + skv) * MR:v_at + (pd + 1) * skp * MR] = F0
                packed_head = bh
            s = it - bh * splits
            for g in range(s * per_split, min(gq, (s + 1) * per_split)):
                i0 = g * tq
                qw = min(tq, sq - i0)
                nqp = (qw + NR - 1) // NR
                cw = nqp * NR
                for qi in range(qw):  # Q^T panels [D][NR queries]
                    dst = q_at + (qi // NR) * d * NR + qi % NR
                    src = (bi * sq + i0 + qi) * e + h * d
                    for t in range(d):
                        scratch[dst + t * NR] = q[src + t]
                for qi in range(qw, cw):  # queries past the last: zero columns
                    dst = q_at + (qi // NR) * d * NR + qi % NR
                    for t in range(d):
                        scratch[dst + t * NR] = F0
                scratch[a_at:a_at + dp * tqp] = F0
                scratch[m_at:m_at + tqp] = NEG_INF
                scratch[l_at:l_at + tqp] = F0
                for j0 in range(0, skv, tk):
                    cols = min(tk, skv - j0)
                    nkp = (cols + MR - 1) // MR
                    for kp in range(nkp):
                        for qp in range(nqp):
                            ukernel(d, scratch, k_at + (j0 // MR + kp) * d * MR, scratch, q_at + qp * d * NR, NR,
                                    scratch, s_at + kp * MR * tqp + qp * NR, tqp, False)
                    tmax = scratch[t_at:t_at + cw]
                    tmax[:] = NEG_INF
                    for r in range(cols):
                        row = scratch[s_at + r * tqp:s_at + r * tqp + cw]
                        row *= scale  # after the product, as the reference scales (Q K^T) * scale
                        if has_mask:
                            mo = bi * m_str[0] + h * m_str[1] + i0 * m_str[2] + (j0 + r) * m_str[3]
                            for qi in range(qw):
                                row[qi] += mask[mo + qi * m_str[2]]
                        for qi in range(cw):
                            x = row[qi]
                            tmax[qi] = x if x > tmax[qi] else tmax[qi]
                    mrun = scratch[m_at:m_at + cw]
                    fac = scratch[f_at:f_at + cw]
                    for qi in range(cw):  # tmax becomes the max to subtract: 0 where all is -inf so far
                        mn = tmax[qi] if tmax[qi] > mrun[qi] else mrun[qi]
                        fac[qi] = F1 if mn == NEG_INF else fexp(mrun[qi] - mn)
                        tmax[qi] = F0 if mn == NEG_INF else mn
                        mrun[qi] = mn
                    lsum = scratch[l_at:l_at + cw]
                    for qi in range(cw):
                        lsum[qi] *= fac[qi]
                    for r in range(cols):
                        row = scratch[s_at + r * tqp:s_at + r * tqp + cw]
                        for qi in range(cw):  # exp(-inf - 0) = 0 and NaN stays NaN: no branch, so it vectorizes
                            p = fexp(row[qi] - tmax[qi])
                            row[qi] = p
                            lsum[qi] += p
                    for t in range(d):
                        arow = scratch[a_at + t * tqp:a_at + t * tqp + cw]
                        for qi in range(cw):
                            arow[qi] *= fac[qi]
                    for pd in range(dp // MR):
                        for qp in range(nqp):
                            ukernel(cols, scratch, v_at + (pd * skp + j0) * MR, scratch, s_at + qp * NR, tqp, scratch,
                                    a_at + pd * MR * tqp + qp * NR, tqp, True)
                for qi in range(qw):
                    inv = F1 / scratch[l_at + qi]
                    o = (bi * sq + i0 + qi) * e + h * d
                    for t in range(d):
                        out[o + t] = scratch[a_at + t * tqp + qi] * inv
