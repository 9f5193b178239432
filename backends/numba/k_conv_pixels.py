"""Convolution with few input channels on the GEMM micro-kernel, over the real output pixels.

With few input channels per tap a shifted GEMM per tap would have a K of Ci alone, so the (tap,
channel) pairs form one K dimension (weights from pack_conv_weights(w, merged=True)). The pixel
(N) dimension is the output pixels of all images in a row, (n, oh, ow) flattened, so neither the
padding columns of the "wide" layout nor a ragged last panel per image is computed (an 8x8 output
of a 3x3 conv: 64 pixels, not 3 panels of 80). A B panel of NR pixels is made of runs of consecutive
output columns in the zero-padded stride-phase planes (as conv_shift builds them): where each run of
VW / 2 (or VW) pixels lies in one output row, the micro-kernel reads them in place through the K
rows' offsets; otherwise the panel is gathered first (im2col one panel at a time).
The C tile (the item's channels x a few panels, in L1) is finished over all of K before the next one
starts, so its epilogue runs and it is stored into the output while it is in cache; with geo[POOL_2X2]
(a region ending in a 2x2 max pool) tiles hold whole pairs of output rows and are stored pooled.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .geometry import B_IN_PLACE, B_PANELS, KH, KW, PL, POOL_2X2, PT, SH, SW, W_OUT
from .jit import helper, subkernel, twin
from .k_conv_shift import KC_CONV, fill_plane
from .k_epilogue import CHUNK_FLOATS, epi_channel_rows
from .k_microkernel import MR, NR, VW, microkernel_offsets_rows, microkernel_rows
from .k_pool import max_of_row_pairs


def reads_in_place(w_out: int) -> bool:
    """Whether conv_pixels reads its B rows in place: output rows of whole runs of VW / 2 (or VW) pixels."""
    return w_out % (VW // 2) == 0


def pixel_ext_floats(items: int, cb: int, sb: int) -> int:
    """Floats of conv_pixels' C tiles: per work item cb channels of sb pixels."""
    return items * cb * sb


def store_block_pixels(pb: int, cb: int) -> int:
    """Pixels of conv_pixels' C tile (whole NR panels): about CHUNK_FLOATS floats with cb channels, in L1."""
    return max(NR, min(-(-pb // NR), CHUNK_FLOATS // (cb * NR)) * NR)


MAX_POOL_BLOCK_PIXELS = 512
"""Most pixels of the smallest pooled block (pool_block_pixels): wider output rows pool in a kernel of their own."""


def pool_block_pixels(w_out: int) -> int:
    """The pixel blocks of a pooling conv_pixels are multiples of this: whole NR panels of whole pairs of rows."""
    return math.lcm(NR, 2 * w_out)


def pooled_blocks(pb: int, sb: int, w_out: int, pixels: int) -> tuple[int, int]:
    """(pixel block, store block) rounded up to whole pairs of output rows (pool_block_pixels): the pixel block at
    most all pixels, the store block (a C tile's width) whole NR panels."""
    unit = pool_block_pixels(w_out)
    pb = min(pixels, -(-pb // unit) * unit)
    return pb, min(-(-pb // NR) * NR, -(-sb // unit) * unit)


def merged_row_offsets(ci: int, kh: int, kw: int, strides: tuple[int, int], dilations: tuple[int, int],
                       hq: int, wq: int) -> np.ndarray:
    """Per K row k = tap * ci + channel, where its B row starts in one image's phase planes (output pixel 0, 0)."""
    (sh, sw), (dh, dw) = strides, dilations
    plane = hq * wq
    tap, chan = np.divmod(np.arange(kh * kw * ci), ci)
    ri, cj = (tap // kw) * dh, (tap % kw) * dw
    return (chan * sh * sw * plane + ((ri % sh) * sw + cj % sw) * plane + (ri // sh) * wq + cj // sw).astype(np.int64)


@helper
def _fill_plane(x, xpad, t, ci_all, phases, img, chan, plane, geo, hq, wq):  # type: ignore[no-untyped-def]
    """Phase plane t of (image, channel, phase) into its place in xpad."""
    sh, sw = geo[SH], geo[SW]
    n = t // (ci_all * phases)
    c = (t // phases) % ci_all
    ph = (t % phases) // sw
    pw = t % sw
    o = n * img + c * chan + (ph * sw + pw) * plane
    fill_plane(x, n, c, xpad, o, ph, pw, sh, sw, geo[PT], geo[PL], hq, wq)


@helper
def _pixel_offset(g, p_img, w_out, wq, img):  # type: ignore[no-untyped-def]
    """Where output pixel g (of all images in a row) starts in the phase planes, relative to a K row's offset."""
    n = g // p_img
    r = g - n * p_img
    oh = r // w_out
    return n * img + oh * wq + r - oh * w_out


@subkernel
def _pack_pixels(xpad, offs, kc, p, pw, p_img, w_out, wq, img, bp):  # type: ignore[no-untyped-def]
    """bp[kk][j] = xpad[offs[kk] + image/row/column offset of output pixel p + j] for j < pw, zero up to NR."""
    j = 0
    while j < pw:
        g = p + j
        n = g // p_img
        r = g - n * p_img
        oh = r // w_out
        ow = r - oh * w_out
        ln = min(pw - j, w_out - ow)
        base = n * img + oh * wq + ow
        for kk in range(kc):
            src = xpad[offs[kk] + base:offs[kk] + base + ln]
            dst = bp[kk * NR + j:kk * NR + j + ln]
            for z in range(ln):
                dst[z] = src[z]
        j += ln
    if pw < NR:
        for kk in range(kc):
            row = bp[kk * NR + pw:(kk + 1) * NR]
            for z in range(NR - pw):
                row[z] = 0.0


@subkernel
def _pool_rows(tile, col, span, c0, c1, out, n, lo, w_out):  # type: ignore[no-untyped-def]
    """Max of each 2x2 window of tile columns col..col+span (whole pairs of output rows from pixel lo of image n)
    into out [N, C, pooled pixels]."""
    half = w_out // 2
    for c in range(c0, c1):
        src = tile[c - c0]
        for r in range(span // (2 * w_out)):
            o = lo // 4 + r * half
            max_of_row_pairs(src[col + 2 * r * w_out:col + (2 * r + 1) * w_out],
                             src[col + (2 * r + 1) * w_out:col + (2 * r + 2) * w_out], out[n, c, o:o + half])


@subkernel
def _store_tile(out, tile, c0, p, w, stages, vecs, params, res, p_img, pool_w):  # type: ignore[no-untyped-def]
    """The epilogue of one finished C tile (row r: channel c0 + r, columns: pixels p..p+w of all images in a
    row, p_img per image), then the tile into out [N, C, pixels], one image's part at a time; with pool_w > 0
    (the output width, the tile holding whole pairs of its rows) max-pooled in 2x2 windows into out [N, C,
    p_img / 4]."""
    rows = tile.shape[0]
    c1 = min(out.shape[1], c0 + rows)
    q = p
    while q < p + w:
        n = q // p_img
        lo = q - n * p_img
        span = min(p_img - lo, p + w - q)
        if stages.shape[0] > 0:
            epi_channel_rows(tile[:c1 - c0], q - p, span, c0, stages, vecs, params, res, min(n, res.shape[0] - 1), lo)
        if pool_w > 0:
            _pool_rows(tile, q - p, span, c0, c1, out, n, lo, pool_w)
        else:
            for c in range(c0, c1):
                src = tile[c - c0, q - p:q - p + span]
                dst = out[n, c, lo:lo + span]
                for z in range(span):
                    dst[z] = src[z]
        q += span


@twin
def conv_pixels(x, ap, out, xpad, ext, bpan, rows, geo, hq, wq, pb, cb, sb, stages,  # type: ignore[no-untyped-def]
                vecs, params, res):
    """conv2d, groups 1, f32, any stride/dilation, K = (tap, channel) pairs: out [N, Co, Ho*Wo] (with geo[POOL_2X2]
    [N, Co, Ho*Wo / 4], max-pooled in 2x2 windows; pb and sb are then whole pairs of output rows, pooled_blocks).

    ap from pack_conv_weights(w, merged=True); xpad: N images of phase planes (padded_image_floats
    each); rows: merged_row_offsets(...); ext: pixel_ext_floats(...), per work item a C tile of cb channels x
    sb pixels (store_block_pixels); bpan: KC_CONV*NR floats per work item. Work items are (block of pb
    output pixels over all images, block of cb output channels); pb and cb are multiples of NR and MR
    (or pb covers every pixel). geo[B_PANELS] == B_IN_PLACE (only when the output width is a multiple of
    VW / 2, see reads_in_place) reads B rows in place from the phase planes through `rows` (bpan unused),
    B_PACKED gathers each panel first.
    """
    nb, ci_all, h_in, w_in = x.shape
    co_all = out.shape[1]
    kh, kw, sh, sw = geo[KH], geo[KW], geo[SH], geo[SW]
    w_out = geo[W_OUT]
    pool_w = w_out if geo[POOL_2X2] else 0
    p_img = out.shape[2] * 4 if pool_w else out.shape[2]  # output pixels per image before the pool
    plane = hq * wq
    chan = sh * sw * plane
    img = ci_all * chan + 2 * wq + 2 * NR  # as padded_image_floats
    phases = sh * sw
    p_all = nb * p_img
    gp = (p_all + pb - 1) // pb
    gc = (co_all + cb - 1) // cb
    own_images = gc == 1 and pb % p_img == 0  # each item alone reads whole images: it fills their planes itself
    if not own_images:
        for t in prange(nb * ci_all * phases):
            _fill_plane(x, xpad, t, ci_all, phases, img, chan, plane, geo, hq, wq)
    k_total = kh * kw * ci_all
    in_place = geo[B_PANELS] == B_IN_PLACE
    halves = w_out % VW != 0  # in place: runs of VW / 2 pixels (two per vector) unless rows hold whole vectors
    run = VW // 2 if halves else VW
    runs = NR // run
    for t in prange(gp * gc):
        ip = t // gc
        ic = t - ip * gc
        p0 = ip * pb
        p1 = min(p_all, p0 + pb)
        if own_images:  # one parallel region, not two (a plane-fill region then the products)
            for u in range(p0 // p_img * ci_all * phases, min(nb, p1 // p_img) * ci_all * phases):
                _fill_plane(x, xpad, u, ci_all, phases, img, chan, plane, geo, hq, wq)
        c0 = ic * cb
        c1 = min(co_all, c0 + cb)
        bp = bpan[t * KC_CONV * NR:(t + 1) * KC_CONV * NR]
        tile = ext[t * cb * sb:(t + 1) * cb * sb]
        starts = np.empty(runs, np.int64)
        for ps in range(p0, p1, sb):
            pe = min(p1, ps + sb)
            for p in range(ps, pe, NR):
                pw = min(NR, pe - p)
                if in_place:  # each run of the panel lies in one output row: read B rows in place, no packing
                    for i in range(runs):  # runs past the last pixel read the first run again (junk, not stored)
                        starts[i] = _pixel_offset(p + i * run if i * run < pw else p, p_img, w_out, wq, img)
                    for mp in range(c0 // MR, (c1 + MR - 1) // MR):
                        microkernel_offsets_rows(c1 - mp * MR, halves, k_total, ap, mp * k_total * MR, xpad, rows,
                                                 starts, tile, (mp * MR - c0) * sb + p - ps, sb, False)
                    continue
                for pc in range(0, k_total, KC_CONV):
                    kc = min(KC_CONV, k_total - pc)
                    _pack_pixels(xpad, rows[pc:pc + kc], kc, p, pw, p_img, w_out, wq, img, bp)
                    for mp in range(c0 // MR, (c1 + MR - 1) // MR):
                        microkernel_rows(c1 - mp * MR, kc, ap, (mp * k_total + pc) * MR, bp, 0, NR, tile,
                                         (mp * MR - c0) * sb + p - ps, sb, pc > 0)
            _store_tile(out, tile.reshape((cb, sb)), c0, ps, pe - ps, stages, vecs, params, res, p_img, pool_w)
