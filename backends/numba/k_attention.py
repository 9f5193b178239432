"""FlashAttention-style multi-head attention: score tiles on chip, online softmax, BLAS per tile.

Work items are (batch, head, block of TQ queries). For each block of TK keys an item computes the
score tile S = scale * Q_blk @ K_blk^T (one single-threaded sgemm reading q and k in place: head h
is columns h*D..(h+1)*D of the [B, S, E] rows, leading dimension E), adds the mask, and updates
each row's running max m and sum l: the accumulator row is rescaled by exp(m_old - m_new) and the
tile's probabilities exp(s - m_new) are added through a second sgemm, acc += P @ V_blk. At the end
out = acc / l. Only a TQ x TK score tile and a TQ x D accumulator per thread exist; the [Sq, Skv]
score matrix never does.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .blas import sgemm
from .jit import twin
from .mathfn import F0, F1, fexp, key_value, order_key

NEG_INF = np.float32(-np.inf)
DIMS = ("batch", "heads", "sq", "skv", "head_dim", "embed", "tq", "tk")
"""The order of the `dims` array of `attention_tiles`."""


def scratch_per_chunk(tq: int, tk: int, head_dim: int) -> int:
    """Floats of scratch one chunk of work items uses: score tile, accumulator, running max and sum."""
    return tq * tk + tq * head_dim + 2 * tq


@twin
def attention_tiles(q, k, v, out, mask, m_str, has_mask, causal, scale, dims, scratch,  # type: ignore[no-untyped-def]
                    chunks):
    """out = attention(q, k, v, mask) on flat [B, S, E] float32 arrays; see the module docstring.

    mask is read at b*m_str[0] + h*m_str[1] + i*m_str[2] + j*m_str[3] (zero strides broadcast) when
    has_mask (m_str[3] is 1, or 0 for one value per row). With `causal` query i sees keys 0..i only (key
    tiles past a block's last query are skipped). Items are split into `chunks` equal runs; chunk c uses
    scratch[c * per_chunk:].
    """
    nb, nh, sq, skv, d, e, tq, tk = dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7]
    gq = (sq + tq - 1) // tq
    items = nb * nh * gq
    per = (items + chunks - 1) // chunks
    tile = tq * tk + tq * d + 2 * tq
    for c in prange(chunks):
        s_off = c * tile
        a_off = s_off + tq * tk
        m_off = a_off + tq * d
        l_off = m_off + tq
        for it in range(c * per, min(items, (c + 1) * per)):
            bi = it // (nh * gq)
            h = (it - bi * nh * gq) // gq
            i0 = (it - bi * nh * gq - h * gq) * tq
            rows = min(tq, sq - i0)
            q_off = (bi * sq + i0) * e + h * d
            for r in range(rows):
                scratch[m_off + r] = NEG_INF
                scratch[l_off + r] = F0
                scratch[a_off + r * d:a_off + (r + 1) * d] = F0
            kend = min(skv, i0 + rows) if causal else skv
            for j0 in range(0, kend, tk):
                cols = min(tk, kend - j0)
                kv_off = (bi * skv + j0) * e + h * d
                sgemm(False, True, rows, cols, d, scale, q, q_off, e, k, kv_off, e, F0, scratch, s_off, tk)
                for r in range(rows):
                    srow = scratch[s_off + r * tk:s_off + r * tk + cols]
                    if has_mask:
                        mo = bi * m_str[0] + h * m_str[1] + (i0 + r) * m_str[2] + j0 * m_str[3]
                        if m_str[3] == 1:
                            srow += mask[mo:mo + cols]
                        else:  # one mask value for the whole row
                            srow += mask[mo]
                    if causal:  # query i0 + r sees the keys up to itself
                        for j in range(max(0, i0 + r + 1 - j0), cols):
                            srow[j] = NEG_INF
                    m_old = scratch[m_off + r]
                    mk = order_key(m_old)
                    for j in range(cols):  # an integer max vectorizes; a NaN score makes its row NaN via exp
                        mk = max(mk, order_key(srow[j]))
                    mx = key_value(mk)
                    if mx == NEG_INF:  # nothing but -inf so far: no weight yet, keep acc, l at zero
                        srow[:] = F0
                        continue
                    total = F0
                    for j in range(cols):
                        p = fexp(srow[j] - mx)
                        srow[j] = p
                        total += p
                    alpha = fexp(m_old - mx)
                    scratch[m_off + r] = mx
                    scratch[l_off + r] = scratch[l_off + r] * alpha + total
                    if alpha != F1:
                        arow = scratch[a_off + r * d:a_off + (r + 1) * d]
                        for t in range(d):
                            arow[t] *= alpha
                sgemm(False, False, rows, d, cols, F1, scratch, s_off, tk, v, kv_off, e, F1, scratch, a_off, d)
            for r in range(rows):
                inv = F1 / scratch[l_off + r]
                o = q_off + r * e
                for t in range(d):
                    out[o + t] = scratch[a_off + r * d + t] * inv
