"""Kernel templates of the weight-only GEMM (int4_gemm.py): f32 x [M, K] times narrow weights with group scales.

`wgemm` and `wgemm_vec` are templates: `jit.specialized` makes one copy per weight format whose
globals bind GROUP_DOT, TAIL_DOT, GROUP_BYTES (the format's dot products of one group of x with one
group of packed weights, its bytes per group) and, for `wgemm_vec`, COL_DOT_4 / _2 / _1 (the
format's vector intrinsics), so that each format compiles to its own code and its own cache entries.

Formats (one row of bytes per output channel n, groups of G consecutive k, one f32 scale each):
- int4: two weights per byte, stored + 8 (0..15). In a full group the low nibble of byte j is
  k = j, the high nibble k = G/2 + j, so the unpacked nibbles meet contiguous x and the loop over
  j vectorizes. A short last group of L < G weights uses ceil(L/2) bytes the same way (half L' =
  ceil(L/2); an odd L leaves the last high nibble 8, i.e. zero).
- int8: one signed weight per byte, k = j.
"""

# ruff: noqa: F821

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import helper
from .k_epilogue import epi_tile
from .k_int4_vec import VW

X_CHUNK_BYTES = 32768
"""Bytes of x (all rows) one K chunk of the vector int4 kernel reads: they stay in L1 while its columns pass."""
SUB_COLUMNS = 64
"""Columns that pass over one K chunk of x before the next chunk (their weights, 64 x K/2 bytes, span few pages)."""
ROW_PAD = 16
"""Floats between the rows of the kernel's copy of x (64 bytes: consecutive rows land in different L1 sets)."""


@helper
def dot_i4(xa, xb, pb, nb):  # type: ignore[no-untyped-def]
    """sum_j xa[j] * lo(pb[j]) + xb[j] * hi(pb[j]) over nb bytes (nibbles stored + 8).

    The operands are slices, so that every index is a loop counter: numba then knows it is not negative
    (no wraparound select) and LLVM loads contiguous vectors instead of gathering.
    """
    a = np.float32(0.0)
    b = np.float32(0.0)
    for j in range(nb):
        v = np.int32(pb[j])
        a += xa[j] * np.float32((v & 15) - 8)
        b += xb[j] * np.float32((v >> 4) - 8)
    return a + b


@helper
def full_i4(x, xo, p, po, g):  # type: ignore[no-untyped-def]
    """The dot product of x[xo:xo + g] with one full group of g int4 weights (g / 2 bytes from p[po])."""
    h = g // 2
    return dot_i4(x[xo:xo + h], x[xo + h:xo + g], p[po:po + h], h)


@helper
def tail_i4(x, xo, p, po, length):  # type: ignore[no-untyped-def]
    """The dot product of a short last group of `length` int4 weights (ceil(length / 2) bytes)."""
    h = (length + 1) // 2
    nb = length - h  # bytes holding two weights: k = j and k = h + j
    a = dot_i4(x[xo:xo + nb], x[xo + h:xo + length], p[po:po + nb], nb)
    if length % 2 == 1:  # the last byte holds one weight, in its low nibble
        a += x[xo + h - 1] * np.float32((np.int32(p[po + h - 1]) & 15) - 8)
    return a


@helper
def dot_i8(x, xo, p, po, length):  # type: ignore[no-untyped-def]
    """sum_j x[xo + j] * p[po + j] over `length` int8 weights."""
    xa = x[xo:xo + length]
    pb = p[po:po + length]
    a = np.float32(0.0)
    for j in range(length):
        a += xa[j] * np.float32(pb[j])
    return a


@helper
def bytes_i4(g):  # type: ignore[no-untyped-def]
    """Bytes of one group of g int4 weights."""
    return (g + 1) // 2


@helper
def bytes_i8(g):  # type: ignore[no-untyped-def]
    """Bytes of one group of g int8 weights."""
    return g


def wgemm(x, wp, scales, out, gsize, tn, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    """out [M, N] = epilogue(x [M, K] @ W^T), W[n, k] = w_q[n, k] * scales[n, k // gsize], w_q packed in wp.

    Work items are blocks of tn output columns (the outer prange); within one, each column's packed row
    (K/2 bytes for int4) stays in L1 while every row of x passes over it, and the epilogue runs on the
    block while it is in cache.
    """
    m_all, k = x.shape
    n_all = out.shape[1]
    nfull = k // gsize
    tail = k - nfull * gsize
    gb = GROUP_BYTES(gsize)
    blocks = (n_all + tn - 1) // tn
    for t in prange(blocks):
        c0 = t * tn
        c1 = min(n_all, c0 + tn)
        for n in range(c0, c1):
            pn = wp[n]
            sn = scales[n]
            for r in range(m_all):
                xr = x[r]
                acc = np.float32(0.0)
                for g in range(nfull):
                    acc += sn[g] * GROUP_DOT(xr, g * gsize, pn, g * gb, gsize)
                if tail > 0:
                    acc += sn[nfull] * TAIL_DOT(xr, nfull * gsize, pn, nfull * gb, tail)
                out[r, n] = acc
        if stages.shape[0] > 0:
            epi_tile(out, 0, m_all, c0, c1, stages, vecs, params, res)


def wgemm_vec(x, wp, scales, out, gsize, tn, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    """`wgemm` for weights whose groups are whole vectors (k_int4_vec.py): the full groups of each column run
    on the LLVM IR intrinsic (COL_DOT_4 / _2 / _1), four rows at a time (each load of weights unpacked once for
    the four), K in chunks whose rows of x stay in L1 (X_CHUNK_BYTES), a short last group on TAIL_DOT."""
    m_all, k = x.shape
    n_all = out.shape[1]
    nfull = k // gsize
    tail = k - nfull * gsize
    gb = GROUP_BYTES(gsize)
    nvec = gb // VW
    chunk = max(1, X_CHUNK_BYTES // (4 * max(m_all, 1) * gsize))  # groups per K chunk
    # rows of x at a stride of K floats fall in the same L1 sets when K is a multiple of 1024 (16 KiB apart):
    # more rows than the cache has ways would evict each other, so they are copied ROW_PAD floats apart
    ldx = k + ROW_PAD if m_all > 1 else k
    xp = np.empty((m_all, ldx), np.float32)
    for r in range(m_all):
        xp[r, :k] = x[r]
    xf = xp.reshape(-1)
    pf = wp.reshape(-1)
    sf = scales.reshape(-1)
    of = out.reshape(-1)
    bpc = wp.shape[1]
    ns = scales.shape[1]
    blocks = (n_all + tn - 1) // tn
    for t in prange(blocks):
        c0 = t * tn
        c1 = min(n_all, c0 + tn)
        for s0 in range(c0, c1, SUB_COLUMNS):
            for g0 in range(0, max(nfull, 1), chunk):
                ng = min(chunk, nfull - g0)
                more = g0 > 0
                for n in range(s0, min(c1, s0 + SUB_COLUMNS)):
                    po = n * bpc + g0 * gb
                    xo = g0 * gsize
                    so = n * ns + g0
                    r = 0
                    while r + 4 <= m_all:
                        COL_DOT_4(xf, r * ldx + xo, ldx, pf, po, sf, so, ng, nvec, of, r * n_all + n, n_all, more)
                        r += 4
                    if r + 2 <= m_all:
                        COL_DOT_2(xf, r * ldx + xo, ldx, pf, po, sf, so, ng, nvec, of, r * n_all + n, n_all, more)
                        r += 2
                    if r < m_all:
                        COL_DOT_1(xf, r * ldx + xo, ldx, pf, po, sf, so, ng, nvec, of, r * n_all + n, n_all, more)
        if tail > 0:
            for n in range(c0, c1):
                pn = wp[n]
                s = scales[n, nfull]
                for rr in range(m_all):
                    out[rr, n] += s * TAIL_DOT(x[rr], nfull * gsize, pn, nfull * gb, tail)
        if stages.shape[0] > 0:
            epi_tile(out, 0, m_all, c0, c1, stages, vecs, params, res)
