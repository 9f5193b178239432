"""2-D convolution kernels (NCHW): tiled im2col + BLAS for dense convolutions, direct loops for groups.

`conv_gemm` splits the output of each image into (pixel block, channel block) tiles over an
outer `prange`. A tile builds its slice of the im2col matrix in scratch (the column block it
needs, nothing more; pointwise convolutions need none), multiplies it with single-threaded BLAS
straight into the output, and the epilogue (bias, batchnorm, activation, residual) runs on the
tile while it is in cache.
`conv_direct` handles grouped and depthwise convolutions (and integer dtypes) in plain loops
vectorized along output columns.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .blas import sgemm
from .geometry import DH, DW, KH, KW, PL, POINTWISE, PT, SH, SW, W_OUT, ow_range
from .jit import subkernel, twin
from .k_epilogue import epi_row
from .mathfn import F0, F1


@subkernel
def _im2col_tile(x, n, ci0, geo, cols, p0, p1, w_out):  # type: ignore[no-untyped-def]
    """cols[r, p - p0] = x[n, ci0 + ci, ih, iw] (0 outside) for rows r = (ci, i, j), pixels p0 <= p < p1."""
    kh, kw = geo[KH], geo[KW]
    h_in, w_in = x.shape[2], x.shape[3]
    for r in range(cols.shape[0]):
        ci = ci0 + r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        lo, hi = ow_range(j, geo, w_in, w_out)
        off = j * geo[DW] - geo[PL]
        sw = geo[SW]
        dst = cols[r]
        p = p0
        while p < p1:
            oh = p // w_out
            ow0 = p - oh * w_out
            ow1 = min(w_out, ow0 + (p1 - p))
            seg = dst[p - p0:p - p0 + (ow1 - ow0)]
            ih = oh * geo[SH] - geo[PT] + i * geo[DH]
            if ih < 0 or ih >= h_in:
                for q in range(ow1 - ow0):
                    seg[q] = 0
            else:
                xrow = x[n, ci, ih]
                a = max(ow0, min(lo, ow1))
                b = max(a, min(hi, ow1))
                for q in range(a - ow0):
                    seg[q] = 0
                if sw == 1:
                    src = xrow[a + off:b + off]
                    mid = seg[a - ow0:b - ow0]
                    for q in range(b - a):
                        mid[q] = src[q]
                else:
                    for q in range(a - ow0, b - ow0):
                        seg[q] = xrow[(q + ow0) * sw + off]
                for q in range(b - ow0, ow1 - ow0):
                    seg[q] = 0
            p += ow1 - ow0


@twin
def conv_gemm(x, wm, out, scratch, geo, groups, pb, cb, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    """out[n] = epilogue(wm @ im2col(x[n])) per group, float32; out is [N, Co, P], wm [Co, Ci/groups*kh*kw].

    Work items are (image, group, pixel block of pb, channel block of cb within the group). A pointwise convolution
    (geo[POINTWISE] == 1: 1x1, stride 1, no padding) reads x[n] in place as the [Ci, P] column matrix;
    otherwise the item builds its im2col block in its scratch region (rows * pb floats). BLAS
    writes the tile straight into `out`, and the epilogue runs on it per channel row.
    """
    nb, co_all, p_all = out.shape
    rows = wm.shape[1]
    ci_all = x.shape[1]
    cg = ci_all // groups
    cog = co_all // groups
    w_out = geo[W_OUT]
    pointwise = geo[POINTWISE] == 1
    gp = (p_all + pb - 1) // pb
    gc = (cog + cb - 1) // cb
    per_image = groups * gp * gc
    for t in prange(nb * per_image):
        n = t // per_image
        rest = t - n * per_image
        g = rest // (gp * gc)
        rest = rest - g * gp * gc
        ip = rest // gc
        ic = rest - ip * gc
        p0 = ip * pb
        p1 = min(p_all, p0 + pb)
        c0 = g * cog + ic * cb
        c1 = min(g * cog + cog, c0 + cb)
        o_off = (n * co_all + c0) * p_all + p0
        if rows == 0:
            for c in range(c0, c1):
                out[n, c][p0:p1] = 0
        elif pointwise:
            sgemm(False, False, c1 - c0, p1 - p0, rows, F1, wm, c0 * rows, rows, x, (n * ci_all + g * cg) * p_all + p0,
                  p_all, F0, out, o_off, p_all)
        else:
            base = t * rows * pb
            cols = scratch[base:base + rows * (p1 - p0)].reshape((rows, p1 - p0))
            _im2col_tile(x, n, g * cg, geo, cols, p0, p1, w_out)
            sgemm(False, False, c1 - c0, p1 - p0, rows, F1, wm, c0 * rows, rows, scratch, base, p1 - p0,
                  F0, out, o_off, p_all)
        if stages.shape[0] > 0:
            rn = min(n, res.shape[0] - 1)
            for c in range(c0, c1):
                row = out[n, c][p0:p1]
                epi_row(row, row, False, stages, vecs, params, np.int64(0), c, res[rn, min(c, res.shape[1] - 1)][p0:p1])


@twin
def conv_direct(x, w, out, geo, groups, zero, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    """Direct convolution for any groups (depthwise included); out is [N, Co, Ho*Wo]."""
    nb, co_all, _ = out.shape
    cg = w.shape[1]
    kh, kw = geo[KH], geo[KW]
    w_out = geo[W_OUT]
    h_out = out.shape[2] // max(w_out, 1)
    h_in, w_in = x.shape[2], x.shape[3]
    co_per_g = co_all // groups
    for t in prange(nb * co_all):
        n = t // co_all
        co = t - n * co_all
        g = co // co_per_g
        for oh in range(h_out):
            orow = out[n, co, oh * w_out:(oh + 1) * w_out]
            for q in range(w_out):
                orow[q] = zero
            for cl in range(cg):
                ci = g * cg + cl
                for i in range(kh):
                    ih = oh * geo[SH] - geo[PT] + i * geo[DH]
                    if ih < 0 or ih >= h_in:
                        continue
                    xrow = x[n, ci, ih]
                    for j in range(kw):
                        wv = w[co, cl, i, j]
                        lo, hi = ow_range(j, geo, w_in, w_out)
                        off = j * geo[DW] - geo[PL]
                        if geo[SW] == 1:
                            src = xrow[lo + off:hi + off]
                            dst = orow[lo:hi]
                            for q in range(hi - lo):
                                dst[q] += wv * src[q]
                        else:
                            for q in range(lo, hi):
                                orow[q] += wv * xrow[q * geo[SW] + off]
        if stages.shape[0] > 0:
            rn = min(n, res.shape[0] - 1)
            rc = min(co, res.shape[1] - 1)
            epi_row(out[n, co], out[n, co], False, stages, vecs, params, np.int64(0), co, res[rn, rc])
