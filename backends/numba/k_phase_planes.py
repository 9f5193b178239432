"""Window operations (depthwise convolution, max and average pooling) as whole-plane runs per tap.

A depthwise convolution or a pooling window does kh*kw operations per output element from one input
channel, so looping over output rows leaves loops of 7 to 56 columns, too short to pay for the loops around
them. Here each work item is one channel of one image: it copies the channel into its scratch as `sh * sw`
phase planes (plane (a, b) holds the padded input's rows a, a + sh, ... and columns b, b + sw, ..., the
padding filled with a value that cannot change the result: 0 for sums, -inf for max), each
`w_out + ((kw - 1) * dw) // sw` columns wide. In a phase plane every tap's inputs for the whole output lie
at one offset, so a tap is one contiguous run over all output rows at once (the columns past w_out in each
row are computed and dropped), three taps of a row per run. The valid columns go to the output, and a
convolution's epilogue runs on the channel's plane while it is in cache.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .geometry import DH, DW, KH, KW, PL, PT, SH, SW, W_OUT
from .jit import helper, twin
from .k_epilogue import epi_row
from .mathfn import maximum


def phase_shape(geo: np.ndarray, h_out: int) -> tuple[int, int]:
    """(rows, columns) of each phase plane of a depthwise convolution with geometry `geo`."""
    return (h_out + ((int(geo[KH]) - 1) * int(geo[DH])) // int(geo[SH]),
            int(geo[W_OUT]) + ((int(geo[KW]) - 1) * int(geo[DW])) // int(geo[SW]))


def plane_scratch(geo: np.ndarray, h_out: int) -> int:
    """f32 elements of scratch one work item needs: its phase planes and the wide output."""
    hq, wq = phase_shape(geo, h_out)
    return int(geo[SH]) * int(geo[SW]) * hq * wq + h_out * wq


@helper
def fill_phase_planes(xc, buf, sh, sw, pt, pl, hq, wq, pad, shift):  # type: ignore[no-untyped-def]
    """buf[(a*sw + b)*hq*wq + r*wq + q] = xc[r*sh + a - pt, q*sw + b - pl] - shift, or `pad` outside the image."""
    h_in, w_in = xc.shape
    plane = hq * wq
    for a in range(sh):
        for b in range(sw):
            ph = buf[(a * sw + b) * plane:(a * sw + b + 1) * plane]
            q_lo = min(wq, max(0, (pl - b + sw - 1) // sw))  # columns q whose q*sw + b - pl is inside
            q_hi = max(q_lo, min(wq, (w_in - 1 - b + pl) // sw + 1))
            for r in range(hq):
                ih = r * sh + a - pt
                prow = ph[r * wq:(r + 1) * wq]
                if ih < 0 or ih >= h_in:
                    for q in range(wq):
                        prow[q] = pad
                    continue
                for q in range(q_lo):
                    prow[q] = pad
                # loops index with their own counters only: computed indices get wraparound checks
                dst = prow[q_lo:q_hi]
                src = xc[ih, q_lo * sw + b - pl::sw]  # one loop for every stride: a branch here cost 2x
                for q in range(q_hi - q_lo):
                    dst[q] = src[q] - shift
                for q in range(q_hi, wq):
                    prow[q] = pad


@helper
def copy_valid_columns(acc, orow, h_out, w_out, wq):  # type: ignore[no-untyped-def]
    """orow[oh*w_out + ow] = acc[oh*wq + ow]: the wide output's valid columns."""
    for oh in range(h_out):
        dst = orow[oh * w_out:(oh + 1) * w_out]
        src = acc[oh * wq:oh * wq + w_out]
        for q in range(w_out):
            dst[q] = src[q]


@helper
def tap_offset(a, ro, j, dw, sw, wq, plane):  # type: ignore[no-untyped-def]
    """Where tap column j of a tap row in phase row a (offset ro rows) starts in the phase planes."""
    b, qo = (j * dw) % sw, (j * dw) // sw
    return (a * sw + b) * plane + ro * wq + qo


MULTIPLY_ADD, MAXIMUM, SUM = range(3)
"""How `accumulate_taps` combines each tap's run into the accumulator: weighted sum, max, plain sum."""


@helper
def plane_dims(geo, h_out):  # type: ignore[no-untyped-def]
    """(rows, columns, elements of one phase plane, length of a tap's run) for an output of h_out rows."""
    hq = h_out + ((geo[KH] - 1) * geo[DH]) // geo[SH]
    wq = geo[W_OUT] + ((geo[KW] - 1) * geo[DW]) // geo[SW]
    return hq, wq, hq * wq, (h_out - 1) * wq + geo[W_OUT]


@helper
def accumulate_taps(buf, acc, wt, c, geo, wq, plane, run, mode):  # type: ignore[no-untyped-def]
    """Every tap's run of the phase planes into acc (`mode`: MULTIPLY_ADD by wt[c, tap], MAXIMUM or SUM), three
    taps of a window row per pass over the output: a third of the accumulator traffic."""
    kh, kw, sh, sw, dh, dw = geo[KH], geo[KW], geo[SH], geo[SW], geo[DH], geo[DW]
    for i in range(kh):
        a, ro = (i * dh) % sh, (i * dh) // sh
        j = 0
        while j < kw:
            if j + 3 <= kw:
                s0 = buf[tap_offset(a, ro, j, dw, sw, wq, plane):]
                s1 = buf[tap_offset(a, ro, j + 1, dw, sw, wq, plane):]
                s2 = buf[tap_offset(a, ro, j + 2, dw, sw, wq, plane):]
                if mode == MULTIPLY_ADD:
                    w0, w1, w2 = wt[c, i * kw + j], wt[c, i * kw + j + 1], wt[c, i * kw + j + 2]
                    for q in range(run):
                        acc[q] += w0 * s0[q] + w1 * s1[q] + w2 * s2[q]
                elif mode == MAXIMUM:
                    for q in range(run):
                        acc[q] = maximum(acc[q], maximum(maximum(s0[q], s1[q]), s2[q]))
                else:
                    for q in range(run):
                        acc[q] += s0[q] + s1[q] + s2[q]
                j += 3
            else:
                s0 = buf[tap_offset(a, ro, j, dw, sw, wq, plane):]
                if mode == MULTIPLY_ADD:
                    w0 = wt[c, i * kw + j]
                    for q in range(run):
                        acc[q] += w0 * s0[q]
                elif mode == MAXIMUM:
                    for q in range(run):
                        acc[q] = maximum(acc[q], s0[q])
                else:
                    for q in range(run):
                        acc[q] += s0[q]
                j += 1


@twin
def conv_depthwise(x, wt, out, geo, scratch, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    """out[n, c] = sum over taps of wt[c, tap] * x[n, c // m] at the tap's offset, then the epilogue, with m
    = C / C_in output channels per input channel; out is [N, C, Ho*Wo], wt [C, kh*kw], scratch [N*C,
    plane_scratch(...)]."""
    nb, c_all, _ = out.shape
    per_input = c_all // x.shape[1]
    sh, sw, pt, pl, w_out = geo[SH], geo[SW], geo[PT], geo[PL], geo[W_OUT]
    h_out = out.shape[2] // max(w_out, 1)
    hq, wq, plane, run = plane_dims(geo, h_out)
    for t in prange(nb * c_all):
        n = t // c_all
        c = t - n * c_all
        buf = scratch[t]
        fill_phase_planes(x[n, c // per_input], buf, sh, sw, pt, pl, hq, wq, np.float32(0.0), np.float32(0.0))
        acc = buf[sh * sw * plane:sh * sw * plane + h_out * wq]
        for q in range(acc.shape[0]):
            acc[q] = 0.0
        accumulate_taps(buf, acc, wt, c, geo, wq, plane, run, MULTIPLY_ADD)
        orow = out[n, c]
        copy_valid_columns(acc, orow, h_out, w_out, wq)
        if stages.shape[0] > 0:
            epi_row(orow, orow, False, stages, vecs, params, np.int64(0), c,
                    res[min(n, res.shape[0] - 1), min(c, res.shape[1] - 1)])


MAX_EXACT_TAPS = (1 << 24) // (255 * 128)
"""Most taps whose int8 products (|x - zero point| <= 255, |w| <= 128) sum exactly in f32, in any order."""
MAX_EXACT_TAPS_SHIFTED = (1 << 24) // (255 * 255)
"""The same with a weight zero point (|w - weight zero point| <= 255)."""


@twin(fastmath=False)
def qconv_depthwise(x, sx, zp, wt, ws, bias, y, q, geo, scratch, stages, vecs, params, res, s_out, zp_out, lo,
                    hi):  # type: ignore[no-untyped-def]
    """An int8 depthwise qconv2d: acc = sum over taps of wt[c, tap] * (x[n, c // m] - zp), exact in f32 (at most
    MAX_EXACT_TAPS taps, integers below 2**24), then y[n, c] = f32(sx * ws[c]) * acc + bias[c] and the
    epilogue, as the reference computes them (no contraction); with out scales, q[n, c] = y requantized
    (y / s_out[c], rounded half to even, + zp_out[c], NaN to zp_out[c], clipped to [lo, hi])."""
    nb, c_all, _ = y.shape
    per_input = c_all // x.shape[1]
    sh, sw, pt, pl, w_out = geo[SH], geo[SW], geo[PT], geo[PL], geo[W_OUT]
    h_out = y.shape[2] // max(w_out, 1)
    hq, wq, plane, run = plane_dims(geo, h_out)
    shift = np.float32(zp[0])
    requantize = s_out.shape[0] > 0
    for t in prange(nb * c_all):
        n = t // c_all
        c = t - n * c_all
        buf = scratch[t]
        fill_phase_planes(x[n, c // per_input], buf, sh, sw, pt, pl, hq, wq, np.float32(0.0), shift)
        acc = buf[sh * sw * plane:sh * sw * plane + h_out * wq]
        for p in range(acc.shape[0]):
            acc[p] = 0.0
        accumulate_taps(buf, acc, wt, c, geo, wq, plane, run, MULTIPLY_ADD)
        yrow = y[n, c]
        copy_valid_columns(acc, yrow, h_out, w_out, wq)
        scale = np.float32(sx[0]) * np.float32(ws[c])
        b = np.float32(bias[c])
        for p in range(yrow.shape[0]):
            yrow[p] = np.float32(yrow[p] * scale) + b
        if stages.shape[0] > 0:
            epi_row(yrow, yrow, False, stages, vecs, params, np.int64(0), c,
                    res[min(n, res.shape[0] - 1), min(c, res.shape[1] - 1)])
        if requantize:
            qrow = q[n, c]
            so, zo = np.float32(s_out[c]), np.float32(zp_out[c])
            for p in range(yrow.shape[0]):
                v = np.rint(np.float32(yrow[p] / so)) + zo
                qrow[p] = zo if v != v else min(max(v, lo), hi)


@twin
def maxpool_planes(x, out, geo, scratch):  # type: ignore[no-untyped-def]
    """out[n, c, oh*Wo + ow] = max over the window (cells outside the input never win: -inf); f32."""
    nb, c_all, _ = out.shape
    sh, sw, pt, pl, w_out = geo[SH], geo[SW], geo[PT], geo[PL], geo[W_OUT]
    h_out = out.shape[2] // max(w_out, 1)
    hq, wq, plane, run = plane_dims(geo, h_out)
    for t in prange(nb * c_all):
        n = t // c_all
        c = t - n * c_all
        buf = scratch[t]
        fill_phase_planes(x[n, c], buf, sh, sw, pt, pl, hq, wq, np.float32(-np.inf), np.float32(0.0))
        acc = buf[sh * sw * plane:sh * sw * plane + h_out * wq]
        for q in range(acc.shape[0]):
            acc[q] = -np.inf
        accumulate_taps(buf, acc, scratch, c, geo, wq, plane, run, MAXIMUM)  # no weights: scratch stands in
        copy_valid_columns(acc, out[n, c], h_out, w_out, wq)


@twin
def avgpool_planes(x, out, geo, scratch, divisors):  # type: ignore[no-untyped-def]
    """out[n, c, p] = (sum over the window, cells outside the input 0) / divisors[p]; f32."""
    nb, c_all, _ = out.shape
    sh, sw, pt, pl, w_out = geo[SH], geo[SW], geo[PT], geo[PL], geo[W_OUT]
    h_out = out.shape[2] // max(w_out, 1)
    hq, wq, plane, run = plane_dims(geo, h_out)
    for t in prange(nb * c_all):
        n = t // c_all
        c = t - n * c_all
        buf = scratch[t]
        fill_phase_planes(x[n, c], buf, sh, sw, pt, pl, hq, wq, np.float32(0.0), np.float32(0.0))
        acc = buf[sh * sw * plane:sh * sw * plane + h_out * wq]
        for q in range(acc.shape[0]):
            acc[q] = 0.0
        accumulate_taps(buf, acc, scratch, c, geo, wq, plane, run, SUM)  # no weights: scratch stands in
        orow = out[n, c]
        copy_valid_columns(acc, orow, h_out, w_out, wq)
        for q in range(orow.shape[0]):
            orow[q] = orow[q] / divisors[q]


def pool_divisors(geo: np.ndarray, in_hw: tuple[int, int], out_hw: tuple[int, int], pads_hi: tuple[int, int],
                  include_pad: bool) -> np.ndarray:
    """f32 [Ho*Wo]: the cells each average-pooling window counts (padded ones only with `include_pad`)."""

    def counts(n_out: int, k: int, s: int, p: int, d: int, size: int, p_hi: int) -> np.ndarray:
        pos = np.arange(n_out)[:, None] * s - p + np.arange(k)[None, :] * d
        inside = (pos >= 0) & (pos < size)
        if include_pad:
            inside |= (pos >= -p) & (pos < size + p_hi)
        return inside.sum(axis=1)

    ch = counts(out_hw[0], int(geo[KH]), int(geo[SH]), int(geo[PT]), int(geo[DH]), in_hw[0], pads_hi[0])
    cw = counts(out_hw[1], int(geo[KW]), int(geo[SW]), int(geo[PL]), int(geo[DW]), in_hw[1], pads_hi[1])
    return (ch[:, None] * cw[None, :]).astype(np.float32).reshape(-1)
