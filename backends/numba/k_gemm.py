"""Matrix-product kernels with fused epilogues.

`gemm` splits C = A @ B into tiles over an outer `prange`; each tile is one single-threaded BLAS
call (scipy's BLAS through `blas.sgemm`, kept at one thread while a plan runs) followed by the
epilogue applied to that tile while it is still in cache. The parallelism is Numba's alone: BLAS
threads never run beside Numba threads. `bmm_sgemm` is the batched float32 product; it reads
operands through (offset, leading dimension, transposed) descriptors, so transposed views of
reshaped tensors (attention heads) need no copy. `bmm_loops` is the same in plain loops for
integer dtypes.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .blas import sgemm
from .jit import twin, work_item_tile
from .k_epilogue import epi_row, epi_tile
from .mathfn import F0, F1


@twin
def gemm(x, w, w_is_nk, out, tm, tn, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    """out = epilogue(x @ W) with W = w.T (w is [N, K]) or W = w (w is [K, N]) in tm x tn tiles.

    Each tile is one BLAS call writing straight into `out` (leading dimension N), then the
    epilogue runs over the tile's rows while they are in cache.
    """
    m_all, k_all = x.shape
    n_all = out.shape[1]
    gm = (m_all + tm - 1) // tm
    gn = (n_all + tn - 1) // tn
    for t in prange(gm * gn):
        m0, m1, n0, n1 = work_item_tile(t, gn, tm, tn, m_all, n_all)
        if k_all == 0:
            for r in range(m0, m1):
                out[r][n0:n1] = 0
        elif w_is_nk:
            sgemm(False, True, m1 - m0, n1 - n0, k_all, F1, x, m0 * k_all, k_all, w, n0 * k_all, k_all,
                  F0, out, m0 * n_all + n0, n_all)
        else:
            sgemm(False, False, m1 - m0, n1 - n0, k_all, F1, x, m0 * k_all, k_all, w, n0, n_all,
                  F0, out, m0 * n_all + n0, n_all)
        if stages.shape[0] > 0:
            epi_tile(out, m0, m1, n0, n1, stages, vecs, params, res)


@twin
def bmm_loops(a, a_off, a_rs, b, b_off, b_rs, b_nk, c, c_off, c_rs, dims, zero,  # type: ignore[no-untyped-def]
              stages, vecs, params, res):
    """C[i] = A[i] @ B[i] for a batch of small matrices given by flat arrays and descriptors.

    Row m of A[i] starts at a[a_off[i] + m*a_rs] (K contiguous values); B[i] is read as [N, K]
    rows (b_nk, dot-product form) or [K, N] rows; row m of C[i] starts at c[c_off[i] + m*c_rs].
    dims = (M, N, K); the epilogue runs on each finished row (res: [batch, M, N] residual rows or a dummy).
    """
    m_all, n_all, k_all = dims[0], dims[1], dims[2]
    mb = 4
    gm = (m_all + mb - 1) // mb
    for t in prange(a_off.shape[0] * gm):
        bi = t // gm
        m0 = (t - bi * gm) * mb
        m1 = min(m_all, m0 + mb)
        ao = a_off[bi]
        bo = b_off[bi]
        co = c_off[bi]
        for m in range(m0, m1):
            arow = a[ao + m * a_rs:ao + m * a_rs + k_all]
            crow = c[co + m * c_rs:co + m * c_rs + n_all]
            if b_nk:
                n = 0
                while n + 4 <= n_all:
                    r0 = b[bo + n * b_rs:bo + n * b_rs + k_all]
                    r1 = b[bo + (n + 1) * b_rs:bo + (n + 1) * b_rs + k_all]
                    r2 = b[bo + (n + 2) * b_rs:bo + (n + 2) * b_rs + k_all]
                    r3 = b[bo + (n + 3) * b_rs:bo + (n + 3) * b_rs + k_all]
                    s0 = zero
                    s1 = zero
                    s2 = zero
                    s3 = zero
                    for k in range(k_all):
                        av = arow[k]
                        s0 += av * r0[k]
                        s1 += av * r1[k]
                        s2 += av * r2[k]
                        s3 += av * r3[k]
                    crow[n] = s0
                    crow[n + 1] = s1
                    crow[n + 2] = s2
                    crow[n + 3] = s3
                    n += 4
                while n < n_all:
                    r0 = b[bo + n * b_rs:bo + n * b_rs + k_all]
                    s0 = zero
                    for k in range(k_all):
                        s0 += arow[k] * r0[k]
                    crow[n] = s0
                    n += 1
            else:
                for j in range(n_all):
                    crow[j] = zero
                k = 0
                while k + 4 <= k_all:
                    a0 = arow[k]
                    a1 = arow[k + 1]
                    a2 = arow[k + 2]
                    a3 = arow[k + 3]
                    r0 = b[bo + k * b_rs:bo + k * b_rs + n_all]
                    r1 = b[bo + (k + 1) * b_rs:bo + (k + 1) * b_rs + n_all]
                    r2 = b[bo + (k + 2) * b_rs:bo + (k + 2) * b_rs + n_all]
                    r3 = b[bo + (k + 3) * b_rs:bo + (k + 3) * b_rs + n_all]
                    for j in range(n_all):
                        crow[j] += a0 * r0[j] + a1 * r1[j] + a2 * r2[j] + a3 * r3[j]
                    k += 4
                while k < k_all:
                    a0 = arow[k]
                    r0 = b[bo + k * b_rs:bo + k * b_rs + n_all]
                    for j in range(n_all):
                        crow[j] += a0 * r0[j]
                    k += 1
            if stages.shape[0] > 0:
                rrow = res[min(bi, res.shape[0] - 1), min(m, res.shape[1] - 1)]
                epi_row(crow, crow, False, stages, vecs, params, np.int64(0), np.int64(-1), rrow)


@twin
def bmm_sgemm(a, a_off, a_ld, a_t, b, b_off, b_ld, b_t, c, c_off, c_ld, dims, tm,  # type: ignore[no-untyped-def]
              stages, vecs, params, res):
    """C[i] = epilogue(op(A[i]) @ op(B[i])) in float32 through BLAS, one call per (matrix, row block).

    Matrix i of an operand starts at flat offset *_off[i] with leading dimension *_ld; *_t says
    it is stored transposed. Strided views (transposes of reshapes) are read in place. The epilogue
    runs on each row block after its BLAS call (res: [batch, M, N] residual rows or a dummy).
    """
    m_all, n_all, k_all = dims[0], dims[1], dims[2]
    gm = (m_all + tm - 1) // tm
    for t in prange(a_off.shape[0] * gm):
        bi = t // gm
        m0 = (t - bi * gm) * tm
        m1 = min(m_all, m0 + tm)
        ao = a_off[bi] + (m0 if a_t else m0 * a_ld)
        co = c_off[bi] + m0 * c_ld
        if k_all == 0:
            for r in range(m1 - m0):
                c[co + r * c_ld:co + r * c_ld + n_all] = 0
        else:
            sgemm(a_t, b_t, m1 - m0, n_all, k_all, F1, a, ao, a_ld, b, b_off[bi], b_ld, F0, c, co, c_ld)
        if stages.shape[0] > 0:
            rb = res[min(bi, res.shape[0] - 1)]
            for r in range(m1 - m0):
                row = c[co + r * c_ld:co + r * c_ld + n_all]
                rrow = rb[min(m0 + r, rb.shape[0] - 1)]
                epi_row(row, row, False, stages, vecs, params, np.int64(0), np.int64(-1), rrow)
