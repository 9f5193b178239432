"""Data movement around the int8 GEMM: activations to padded u8 rows, zero points, u8 im2col, NHWC -> NCHW.

The int8 GEMM (int8_gemm.py) reads u8 activations [M, Kp] (K padded to a multiple of 4; the padding
columns meet zero weight columns, so their contents do not matter). s8 activations become u8 by
flipping the sign bit (x + 128), their zero point moving by 128 with them: x - zp is unchanged.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .geometry import DH, DW, KH, KW, SH, SW, W_OUT
from .jit import twin
from .k_epilogue import epi_channel_rows
from .vector_runs import copy_run, fill_run

SIGN_FLIP = 128
"""What an s8 value and its zero point gain on the way to u8."""


@twin
def activations_u8(src, dst, flip):  # type: ignore[no-untyped-def]
    """dst[m, :K] = src[m, :] as u8 (+128 when `flip`: src is s8); src [M, K] u8 or s8, dst [M, Kp] u8."""
    k = src.shape[1]
    for m in prange(src.shape[0]):
        s = src[m]
        d = dst[m]
        if flip:
            for j in range(k):
                d[j] = np.uint8(np.int32(s[j]) + 128)
        else:
            for j in range(k):
                d[j] = np.uint8(s[j])


@twin
def row_sums_u8(x, k, zp, out):  # type: ignore[no-untyped-def]
    """out[m] = sum_{j < k} (x[m, j] - zp[m]) as i32 (zp one per row, or one for all): what a weight zero point
    multiplies in an int8 product (x [M, Kp] u8, the K real columns first)."""
    per_row = zp.shape[0] > 1
    for m in prange(x.shape[0]):
        row = x[m]
        s = 0
        for j in range(k):
            s += row[j]
        z = zp[m] if per_row else zp[0]
        out[m] = np.int32(s - k * z)


@twin
def shift_zero_points(zp, out, delta):  # type: ignore[no-untyped-def]
    """out = zp + delta (i32)."""
    for i in prange(zp.shape[0]):
        out[i] = zp[i] + delta


@twin
def padded_nhwc_u8(x, zp, flip, pt, pl, xp):  # type: ignore[no-untyped-def]
    """xp[g, n, pt + h, pl + w, c] = x[n, g * Cg + c, h, w] as u8 (+128 when `flip`: x is s8), every other cell zp[0].

    x [N, C, H, W] u8 or s8; xp [G, N, Hq, Wq, Cp] u8 (contiguous), group-major: the channels of each of the G
    groups (Cg = C / G of them, Cp >= Cg, the channels from Cg on padding) are one NHWC image set, whose runs
    im2col_nhwc_u8 copies (or which a pointwise product reads as its rows).
    """
    n_img, c_in, h_in, w_in = x.shape
    groups, hq, wq, cp = xp.shape[0], xp.shape[2], xp.shape[3], xp.shape[4]
    cg = c_in // groups
    pad = np.uint8(zp[0])
    shift = np.int32(SIGN_FLIP if flip else 0)
    for t in prange(groups * n_img * hq):
        g = t // (n_img * hq)
        n = t // hq - g * n_img
        ih = t % hq - pt
        row = xp[g, n, t % hq]
        if ih < 0 or ih >= h_in:
            fill_run(row, 0, pad, wq * cp)
            continue
        fill_run(row, 0, pad, pl * cp)
        fill_run(row, (pl + w_in) * cp, pad, (wq - pl - w_in) * cp)
        if cp > cg:
            for w in range(w_in):
                fill_run(row[pl + w], cg, pad, cp - cg)
        for c in range(cg):
            src = x[n, g * cg + c, ih]
            for w in range(w_in):
                row[pl + w, c] = np.uint8(np.int32(src[w]) + shift)


@twin
def pad_nhwc_u8(xn, zp, pt, pl, xp):  # type: ignore[no-untyped-def]
    """xp[0, n, pt + h, pl + w, :C] = xn[n, h, w, :] for u8 activations already channels last, every other cell zp[0].

    xn [N, H, W, C] u8 (contiguous), xp [1, N, Hq, Wq, Cp] u8 as padded_nhwc_u8 writes it (Cp >= C): whole rows
    are single runs when Cp == C.
    """
    n_img, h_in, w_in, c_in = xn.shape
    hq, wq, cp = xp.shape[2], xp.shape[3], xp.shape[4]
    pad = np.uint8(zp[0])
    for t in prange(n_img * hq):
        n = t // hq
        ih = t - n * hq - pt
        row = xp[0, n, t - n * hq]
        if ih < 0 or ih >= h_in:
            fill_run(row, 0, pad, wq * cp)
            continue
        fill_run(row, 0, pad, pl * cp)
        fill_run(row, (pl + w_in) * cp, pad, (wq - pl - w_in) * cp)
        src = xn[n, ih]
        if cp == c_in:
            copy_run(row, pl * cp, src, 0, w_in * c_in)
        else:
            for w in range(w_in):
                copy_run(row, (pl + w) * cp, src, w * c_in, c_in)
                fill_run(row, (pl + w) * cp + c_in, pad, cp - c_in)


@twin
def im2col_nhwc_u8(xp, geo, cols):  # type: ignore[no-untyped-def]
    """cols[(n, oh, ow), (i, j, c)] = xp[n, oh*sh + i*dh, ow*sw + j*dw, c]: K ordered (tap row, tap column, channel).

    xp from padded_nhwc_u8 (the padding is in it), cols [N * Ho * Wo, Kp] u8 (columns from K on are not
    written: they meet zero weights). With dw == 1 each tap row is one run of kw * C bytes.
    """
    n_img, hq, wq, c_in = xp.shape
    kh, kw, w_out = geo[KH], geo[KW], geo[W_OUT]
    sh, sw, dh, dw = geo[SH], geo[SW], geo[DH], geo[DW]
    h_out = cols.shape[0] // max(n_img * w_out, 1)
    kp = cols.shape[1]
    runs = 1 if dw == 1 else kw
    run = kw * c_in if dw == 1 else c_in
    for t in prange(n_img * h_out):
        n = t // h_out
        oh = t - n * h_out
        for ow in range(w_out):
            d = (t * w_out + ow) * kp
            for i in range(kh):
                s = ((n * hq + oh * sh + i * dh) * wq + ow * sw) * c_in
                for j in range(runs):
                    copy_run(cols, d + (i * kw + j) * c_in, xp, s + j * dw * c_in, run)


@twin
def im2col_channel_major_u8(xp, geo, cols):  # type: ignore[no-untyped-def]
    """cols[(n, oh, ow), (c, i, j)] = xp[n, oh*sh + i*dh, ow*sw + j*dw, c]: K ordered (channel, tap row, tap column),
    the order block-pruned weights keep (their blocks were pruned in it).

    xp from padded_nhwc_u8 (the padding is in it), cols [N * Ho * Wo, Kp] u8 (columns from K on are not written:
    they meet zero weights). Each tap's C bytes are one run of xp, written kh * kw apart; at flat offsets, with no
    bounds test per byte (2x the per-byte gather from NCHW with its border tests, 4 x 32 x 8 x 8 input).
    """
    n_img, hq, wq, c_in = xp.shape
    kh, kw, w_out = geo[KH], geo[KW], geo[W_OUT]
    sh, sw, dh, dw = geo[SH], geo[SW], geo[DH], geo[DW]
    h_out = cols.shape[0] // max(n_img * w_out, 1)
    kp = cols.shape[1]
    taps = kh * kw
    src = xp.reshape(-1)
    dst = cols.reshape(-1)
    for t in prange(n_img * h_out):
        n = t // h_out
        oh = t - n * h_out
        for ow in range(w_out):
            d = (t * w_out + ow) * kp
            for i in range(kh):
                for j in range(kw):
                    s = ((n * hq + oh * sh + i * dh) * wq + ow * sw + j * dw) * c_in
                    tap = d + i * kw + j
                    for c in range(c_in):
                        dst[tap + c * taps] = src[s + c]


TRANSPOSE_PIXELS = 64
"""Pixels of one `pixels_to_nchw` work item: their rows of every channel stay in L1 while it gathers."""


@twin
def pixels_to_nchw(src, dst, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    """dst [N, G*Cg, P] = src [G, N, P, Cg] transposed per image and group (the GEMM of each group writes one row
    per output pixel), then epilogue `stages` on each block of pixels of all channels (what the GEMM could not
    apply: a residual, res [N, C, P], and the stages after it; none when `stages` is empty).

    Work items are blocks of TRANSPOSE_PIXELS pixels, each gathered channel by channel (a [4, 1024, 16] transpose
    38 -> 21 us against one item per channel over all pixels, whose strided reads left L1 for every channel).
    """
    groups, n_img, p_all, c_group = src.shape
    blocks = (p_all + TRANSPOSE_PIXELS - 1) // TRANSPOSE_PIXELS
    for t in prange(n_img * blocks):
        n = t // blocks
        p0 = (t - n * blocks) * TRANSPOSE_PIXELS
        p1 = min(p_all, p0 + TRANSPOSE_PIXELS)
        for g in range(groups):
            s = src[g, n, p0:p1]
            for c in range(c_group):
                d = dst[n, g * c_group + c, p0:p1]
                for p in range(p1 - p0):
                    d[p] = s[p, c]
        if stages.shape[0] > 0:
            epi_channel_rows(dst[n], p0, p1 - p0, 0, stages, vecs, params, res, n, p0)


QADD_CHUNK = 4096
"""Elements of one `qadd` work item."""


@twin(fastmath=False)
def qadd(a, za, sa, b, zb, sb, s_out, z_out, lo, hi, out):  # type: ignore[no-untyped-def]
    """out = clip(rint((sa * f32(a - za) + sb * f32(b - zb)) / s_out) + z_out, lo, hi) on flat arrays.

    za, sa, zb, sb are one-element arrays (i32, f32, i32, f32), s_out an f32 and z_out, lo, hi integers.
    Compiled without fast-math (no multiply-add contraction, a true division): the reference's float32 steps bit
    for bit. A NaN (from a NaN scale) becomes z_out.
    """
    n = a.shape[0]
    fz = np.float32(z_out)
    flo = np.float32(lo)
    fhi = np.float32(hi)
    so = np.float32(s_out)
    qa, fsa, qb, fsb = np.int32(za[0]), np.float32(sa[0]), np.int32(zb[0]), np.float32(sb[0])  # hoisted: out may alias
    for c in prange((n + QADD_CHUNK - 1) // QADD_CHUNK):
        i0 = c * QADD_CHUNK
        i1 = min(n, i0 + QADD_CHUNK)
        av = a[i0:i1]
        bv = b[i0:i1]
        ov = out[i0:i1]
        for i in range(i1 - i0):  # over slices, not indices offset by i0: 4-5x faster here
            fa = np.float32(np.int32(av[i]) - qa) * fsa
            fb = np.float32(np.int32(bv[i]) - qb) * fsb
            q = np.float32(np.rint(np.float32((fa + fb) / so))) + fz
            q = fz if q != q else q
            ov[i] = min(max(q, flo), fhi)
