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

from numba import prange

from .blas import sgemm
from .jit import helper, subkernel, twin
from .mathfn import F0, F1, fgelu, fgelu_tanh, frelu

ADD_VEC, MUL_VEC, DIV_VEC, ADD_RES, RELU, GELU, GELU_TANH = range(7)
SHORT_ROW = 256
"""Tiles with rows shorter than this and no GELU run their epilogue in one `epi_block` call (a
450x32 linear with bias: 72 -> 46 us); the others call `epi_row` per row, which measured faster for
GELU (a 128x768x3072 linear+GELU: 2.0 ms against 3.5 ms with the block call)."""
STAGE_NAMES = {ADD_VEC: "add", MUL_VEC: "mul", DIV_VEC: "div", ADD_RES: "residual", RELU: "relu",
               GELU: "gelu", GELU_TANH: "gelu_tanh"}


@subkernel
def epi_row(dst, src, copy, stages, vecs, c0, chan, res):  # type: ignore[no-untyped-def]
    """Apply epilogue `stages` to one output row.

    dst = src (when `copy`), then each stage in order: vector stages read vecs[k, c0 + j]
    (row layout: the channel is the column) or vecs[k, chan] when chan >= 0 (one channel per
    row); ADD_RES adds the row `res`.
    """
    n = dst.shape[0]
    if copy:
        for j in range(n):
            dst[j] = src[j]
    vi = 0
    for s in range(stages.shape[0]):
        code = stages[s]
        if code == ADD_VEC or code == MUL_VEC or code == DIV_VEC:
            if chan >= 0:
                v = vecs[vi, chan]
                if code == ADD_VEC:
                    for j in range(n):
                        dst[j] += v
                elif code == MUL_VEC:
                    for j in range(n):
                        dst[j] *= v
                else:
                    for j in range(n):
                        dst[j] /= v
            else:
                vv = vecs[vi, c0:c0 + n]
                if code == ADD_VEC:
                    for j in range(n):
                        dst[j] += vv[j]
                elif code == MUL_VEC:
                    for j in range(n):
                        dst[j] *= vv[j]
                else:
                    for j in range(n):
                        dst[j] /= vv[j]
            vi += 1
        elif code == ADD_RES:
            for j in range(n):
                dst[j] += res[j]
        elif code == RELU:
            for j in range(n):
                dst[j] = frelu(dst[j])
        elif code == GELU:
            for j in range(n):
                dst[j] = fgelu(dst[j])
        else:
            for j in range(n):
                dst[j] = fgelu_tanh(dst[j])


@helper
def short_cheap_rows(n, stages):  # type: ignore[no-untyped-def]
    """Whether rows of n columns are short and their stages cheap enough for one `epi_block` call."""
    if n >= SHORT_ROW:
        return False
    for s in range(stages.shape[0]):
        if stages[s] == GELU or stages[s] == GELU_TANH:
            return False
    return True


@helper
def epi_tile(out, m0, m1, c0, c1, stages, vecs, res):  # type: ignore[no-untyped-def]
    """The epilogue of the tile out[m0:m1, c0:c1]: one `epi_block` call for short cheap rows, else per row."""
    if short_cheap_rows(c1 - c0, stages):
        epi_block(out, m0, m1, c0, c1, stages, vecs, res)
    else:
        for r in range(m0, m1):
            row = out[r][c0:c1]
            epi_row(row, row, False, stages, vecs, c0, -1, res[min(r, res.shape[0] - 1)][c0:c1])


@subkernel
def epi_block(out, m0, m1, c0, c1, stages, vecs, res):  # type: ignore[no-untyped-def]
    """Apply epilogue `stages` to out[m0:m1, c0:c1] (vectors run along the columns).

    The same arithmetic as `epi_row` per row. Short rows run with the row loop inside one call: a
    call per row would cost more than the row's arithmetic.
    """
    n = c1 - c0
    for r in range(m0, m1):
        o = out[r][c0:c1]
        rr = res[min(r, res.shape[0] - 1)][c0:c1]
        vi = 0
        for s in range(stages.shape[0]):
            code = stages[s]
            if code == ADD_VEC or code == MUL_VEC or code == DIV_VEC:
                vv = vecs[vi][c0:c1]
                if code == ADD_VEC:
                    for j in range(n):
                        o[j] += vv[j]
                elif code == MUL_VEC:
                    for j in range(n):
                        o[j] *= vv[j]
                else:
                    for j in range(n):
                        o[j] /= vv[j]
                vi += 1
            elif code == ADD_RES:
                for j in range(n):
                    o[j] += rr[j]
            elif code == RELU:
                for j in range(n):
                    o[j] = frelu(o[j])
            elif code == GELU:
                for j in range(n):
                    o[j] = fgelu(o[j])
            else:
                for j in range(n):
                    o[j] = fgelu_tanh(o[j])


@twin
def gemm(x, w, w_is_nk, out, tm, tn, stages, vecs, res):  # type: ignore[no-untyped-def]
    """out = epilogue(x @ W) with W = w.T (w is [N, K]) or W = w (w is [K, N]) in tm x tn tiles.

    Each tile is one BLAS call writing straight into `out` (leading dimension N), then the
    epilogue runs over the tile's rows while they are in cache.
    """
    m_all, k_all = x.shape
    n_all = out.shape[1]
    gm = (m_all + tm - 1) // tm
    gn = (n_all + tn - 1) // tn
    for t in prange(gm * gn):
        i = t // gn
        jj = t - i * gn
        m0 = i * tm
        m1 = min(m_all, m0 + tm)
        n0 = jj * tn
        n1 = min(n_all, n0 + tn)
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
            epi_tile(out, m0, m1, n0, n1, stages, vecs, res)


@twin
def epilogue_rows(src, out, stages, vecs, res):  # type: ignore[no-untyped-def]
    """out[r] = epilogue(src[r]) for 2-D [R, C] arrays; vectors run along the columns."""
    rows = out.shape[0]
    for r in prange(rows):
        rr = min(r, res.shape[0] - 1)
        epi_row(out[r], src[r], True, stages, vecs, 0, -1, res[rr])


@twin
def epilogue_channels(src, out, stages, vecs, res):  # type: ignore[no-untyped-def]
    """out[n, c] = epilogue(src[n, c]) for 3-D [N, C, S] arrays; vectors are per channel c."""
    nb, nc, _ = out.shape
    for t in prange(nb * nc):
        n = t // nc
        c = t - n * nc
        rn = min(n, res.shape[0] - 1)
        epi_row(out[n, c], src[n, c], True, stages, vecs, 0, c, res[rn, min(c, res.shape[1] - 1)])


@twin
def bmm_loops(a, a_off, a_rs, b, b_off, b_rs, b_nk, c, c_off, c_rs, dims, zero,  # type: ignore[no-untyped-def]
              stages, vecs):
    """C[i] = A[i] @ B[i] for a batch of small matrices given by flat arrays and descriptors.

    Row m of A[i] starts at a[a_off[i] + m*a_rs] (K contiguous values); B[i] is read as [N, K]
    rows (b_nk, dot-product form) or [K, N] rows; row m of C[i] starts at c[c_off[i] + m*c_rs].
    dims = (M, N, K); the epilogue runs on each finished row.
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
                epi_row(crow, crow, False, stages, vecs, 0, -1, crow)


@twin
def bmm_sgemm(a, a_off, a_ld, a_t, b, b_off, b_ld, b_t, c, c_off, c_ld, dims, tm,  # type: ignore[no-untyped-def]
              stages, vecs):
    """C[i] = epilogue(op(A[i]) @ op(B[i])) in float32 through BLAS, one call per (matrix, row block).

    Matrix i of an operand starts at flat offset *_off[i] with leading dimension *_ld; *_t says
    it is stored transposed. Strided views (transposes of reshapes) are read in place.
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
            for r in range(m1 - m0):
                row = c[co + r * c_ld:co + r * c_ld + n_all]
                epi_row(row, row, False, stages, vecs, 0, -1, row)
