"""Pooling kernels (NCHW): max and average pooling with padding, dilation and ceil mode; global average.

Loops run output row by output row; the window taps loop outside the output columns so the
innermost loop is a (strided for stride > 1) vectorizable sweep along a row.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .geometry import DH, DW, KH, KW, PL, PT, SH, SW, W_OUT, ow_range
from .jit import helper, twin
from .mathfn import maximum


@twin
def maxpool(x, out, geo, init):  # type: ignore[no-untyped-def]
    """out[n, c, oh*Wo + ow] = max over the window (cells outside the input never win)."""
    nb, nc, h_in, w_in = x.shape
    w_out = geo[W_OUT]
    h_out = out.shape[2] // max(w_out, 1)
    for t in prange(nb * nc):
        n = t // nc
        c = t - n * nc
        for oh in range(h_out):
            orow = out[n, c, oh * w_out:(oh + 1) * w_out]
            for q in range(w_out):
                orow[q] = init
            for i in range(geo[KH]):
                ih = oh * geo[SH] - geo[PT] + i * geo[DH]
                if ih < 0 or ih >= h_in:
                    continue
                xrow = x[n, c, ih]
                for j in range(geo[KW]):
                    lo, hi = ow_range(j, geo, w_in, w_out)
                    off = j * geo[DW] - geo[PL]
                    for q in range(lo, hi):
                        orow[q] = maximum(orow[q], xrow[q * geo[SW] + off])


@helper
def max_of_row_pairs(top, bottom, dst):  # type: ignore[no-untyped-def]
    """dst[q] = the max of top[2q], top[2q + 1], bottom[2q], bottom[2q + 1] (a NaN wins) for q < len(dst): one output
    row of a 2x2 max pool at stride 2 from its two input rows."""
    for q in range(dst.shape[0]):
        dst[q] = maximum(maximum(top[2 * q], top[2 * q + 1]), maximum(bottom[2 * q], bottom[2 * q + 1]))


@twin
def maxpool2x2(x, out):  # type: ignore[no-untyped-def]
    """2x2 windows at stride 2 without padding or dilation: each output is the max of four inputs."""
    nb, nc = x.shape[0], x.shape[1]
    h_out = out.shape[2]
    for t in prange(nb * nc):
        n = t // nc
        c = t - n * nc
        for oh in range(h_out):
            max_of_row_pairs(x[n, c, 2 * oh], x[n, c, 2 * oh + 1], out[n, c, oh])


@twin
def avgpool(x, out, geo, include_pad, pads_hi):  # type: ignore[no-untyped-def]
    """Average over the window; padded cells count only with include_pad (explicit pads, not ceil)."""
    nb, nc, h_in, w_in = x.shape
    w_out = geo[W_OUT]
    h_out = out.shape[2] // max(w_out, 1)
    pb, pr = pads_hi[0], pads_hi[1]
    for t in prange(nb * nc):
        n = t // nc
        c = t - n * nc
        for oh in range(h_out):
            orow = out[n, c, oh * w_out:(oh + 1) * w_out]
            for q in range(w_out):
                orow[q] = 0
            ch = 0
            for i in range(geo[KH]):
                ih = oh * geo[SH] - geo[PT] + i * geo[DH]
                inside = 0 <= ih < h_in
                if inside or (include_pad and -geo[PT] <= ih < h_in + pb):
                    ch += 1
                if not inside:
                    continue
                xrow = x[n, c, ih]
                for j in range(geo[KW]):
                    lo, hi = ow_range(j, geo, w_in, w_out)
                    off = j * geo[DW] - geo[PL]
                    for q in range(lo, hi):
                        orow[q] += xrow[q * geo[SW] + off]
            for q in range(w_out):
                cw = 0
                for j in range(geo[KW]):
                    iw = q * geo[SW] - geo[PL] + j * geo[DW]
                    if (0 <= iw < w_in) or (include_pad and -geo[PL] <= iw < w_in + pr):
                        cw += 1
                orow[q] = orow[q] / np.float32(ch * cw)


@twin
def mean_rows(x, out):  # type: ignore[no-untyped-def]
    """out[r] = mean(x[r]) for 2-D [R, L] arrays, accumulated in float64."""
    rows, length = x.shape
    for r in prange(rows):
        xr = x[r]
        s = 0.0
        for j in range(length):
            s += xr[j]
        out[r] = s / length


@twin
def maxpool_nhwc(x, geo, out):  # type: ignore[no-untyped-def]
    """out[n, oh, ow, :] = the max over the window of x[n, ih, iw, :], channels last (a NaN wins); cells outside x
    (padding, a window past the edge) count as -inf. x [N, H, W, C] and out [N, Ho, Wo, C] float32, C-contiguous.

    Each output row and each input row it reads is one run of W x C floats, indexed within the run (a view per
    pixel, or flat offsets over the whole tensor, ran 3-4x slower: 4 x 32 x 32 x 16 pooled 2x2 took 34.8 us on two
    threads, now 6.0, the NCHW pool 5.4)."""
    nb, h_in, w_in, nc = x.shape
    h_out, w_out = out.shape[1], out.shape[2]
    kh, kw, sh, sw = geo[KH], geo[KW], geo[SH], geo[SW]
    pt, pl, dh, dw = geo[PT], geo[PL], geo[DH], geo[DW]
    plain = kh == 2 and kw == 2 and sh == 2 and sw == 2 and pt == 0 and pl == 0 and dh == 1 and dw == 1 \
        and 2 * h_out <= h_in and 2 * w_out <= w_in
    for t in prange(nb * h_out):
        n = t // h_out
        oh = t - n * h_out
        o = out[n, oh].reshape(-1)
        if plain:  # 2x2 at stride 2, every window inside: four loads and one store per output
            top = x[n, 2 * oh].reshape(-1)
            bottom = x[n, 2 * oh + 1].reshape(-1)
            for ow in range(w_out):
                for c in range(nc):
                    o[ow * nc + c] = maximum(maximum(top[2 * ow * nc + c], top[(2 * ow + 1) * nc + c]),
                                             maximum(bottom[2 * ow * nc + c], bottom[(2 * ow + 1) * nc + c]))
            continue
        for q in range(w_out * nc):
            o[q] = -np.inf
        for i in range(kh):
            ih = oh * sh - pt + i * dh
            if ih < 0 or ih >= h_in:
                continue
            row = x[n, ih].reshape(-1)
            for ow in range(w_out):
                for j in range(kw):
                    iw = ow * sw - pl + j * dw
                    if 0 <= iw < w_in:
                        for c in range(nc):
                            o[ow * nc + c] = maximum(o[ow * nc + c], row[iw * nc + c])
