"""Convolution in a blocked-channel layout: output channels along the vectors, kept between layers.

A blocked tensor is [N, ceil(C / VW), H + 2 * halo, W + 2 * halo, VW] float32: VW consecutive channels of a pixel
form one vector (ONNX Runtime's NCHWc), and a border of `halo` zero pixels around each channel block's image is
the padding of the next convolution, which then reads its input in place. The micro-kernel computes MR
consecutive output pixels of one row by NR = 2 VW output channels (or MR_ONE pixels by VW channels where the
channels are not a multiple of NR): per K row (an input channel and tap) two (one) vectors of packed weights
and one broadcast input value per pixel, read through a table of K offsets from the
input's blocked image (pixels VW floats apart) or, for an NCHW input, from its zero-padded planes (pixels 1
float apart). It applies a bias / batch norm / ReLU or clip epilogue to its registers and writes both channel
blocks of the tile straight into the output rows; a pooled row pair goes through a small scratch first. Nothing
is transposed.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .geometry import KH, KW, PL, POOL_2X2, PT, W_OUT
from .jit import helper, subkernel, twin
from .k_conv_shift import padded_plane
from .k_epilogue import epi_flat
from .k_microkernel import (
    MR,
    MR_ONE,
    NR,
    ONE_ROWS,
    POOL_PAIR_PIXELS,
    VW,
    exact_rows,
    microkernel_pixel_rows,
    microkernel_pixel_rows_one,
    microkernel_pooled_pairs,
)
from .mathfn import maximum
from .ukernel_epilogue import register_epilogue
from .ukernel_epilogue_ir import EPI_NONE, EPI_ROWS
from .vector_runs import copy_run, zero_run


def blocked_shape(n: int, c: int, h: int, w: int, halo: int) -> tuple[int, int, int, int, int]:
    """The shape of an [N, C, H, W] tensor in the blocked-channel layout with a border of `halo` zero pixels."""
    return n, -(-c // VW), h + 2 * halo, w + 2 * halo, VW


ROOM = max(MR, MR_ONE)
"""Most pixels a micro-tile reads (and writes to the scratch) past a row's end: its spare rows."""
BLOCKED_SLACK = ROOM * VW + NR
"""Floats after a blocked buffer's last element: a micro-tile's spare rows read up to ROOM pixels past a row."""


@helper
def plane_image_floats(ci, hq, wq):  # type: ignore[no-untyped-def]
    """Floats of one image's zero-padded planes in conv_blocked's scratch (room for the last row's reads past it)."""
    return ci * hq * wq + ROOM + NR


def panel_width(co: int) -> int:
    """Output channels per panel of conv_blocked: NR (two blocks, the 2-vector micro-kernel) when Co is a multiple of
    NR, else VW (one block, the one-vector micro-kernel of MR_ONE rows)."""
    return NR if co % NR == 0 else VW


def blocked_tables(w: np.ndarray, dilations: tuple[int, int], from_blocks: bool, hq: int,
                   wq: int) -> tuple[np.ndarray, np.ndarray]:
    """(K offsets, packed weights) of conv_blocked for weights w [Co, Ci, kh, kw].

    K runs over (channel, tap) pairs: from an NCHW input's padded planes (hq x wq each) k = (ci, i, j) at
    ci * hq * wq + i * dh * wq + j * dw; from a blocked input (hq x wq pixels per block, its halo included)
    k = (block, i, j, lane) at block * hq * wq * VW + (i * dh * wq + j * dw) * VW + lane. The weights are packed
    as [panels, K, panel_width(Co)] (channels past Co zero)."""
    co, ci, kh, kw = w.shape
    dh, dw = dilations
    taps = (np.arange(kh)[:, None] * dh * wq + np.arange(kw)[None, :] * dw).reshape(-1)
    if from_blocks:
        blocks = -(-ci // VW)
        base = np.arange(blocks)[:, None, None] * hq * wq * VW + taps[None, :, None] * VW
        offs = (base + np.arange(VW)[None, None, :]).reshape(-1)
        chan = np.broadcast_to(np.arange(blocks)[:, None, None] * VW + np.arange(VW)[None, None, :],
                               (blocks, kh * kw, VW)).reshape(-1)
        tap = np.broadcast_to(np.arange(kh * kw)[None, :, None], (blocks, kh * kw, VW)).reshape(-1)
    else:
        offs = (np.arange(ci)[:, None] * hq * wq + taps[None, :]).reshape(-1)
        chan = np.repeat(np.arange(ci), kh * kw)
        tap = np.tile(np.arange(kh * kw), ci)
    pw = panel_width(co)
    wk = np.zeros((offs.shape[0], -(-co // pw) * pw), np.float32)
    real = chan < ci  # a blocked input's lanes past Ci read zeros: their weights stay 0
    wk[real, :co] = w.reshape(co, ci, kh * kw)[:, chan[real], tap[real]].T
    packed = np.ascontiguousarray(wk.reshape(offs.shape[0], -1, pw).transpose(1, 0, 2))
    return offs.astype(np.int64), packed


def tile_epilogue(codes: np.ndarray, vecs: np.ndarray, params: np.ndarray, co: int) -> tuple[int, np.ndarray]:
    """(EPI_* mode, table [panels, EPI_ROWS, NR]) for the micro-kernel to apply epilogue stages `codes` to each tile
    before storing it: up to three ADD / MUL stages, then at most one RELU or CLIP. Any other chain gets EPI_NONE
    (conv_blocked then runs the stages over each finished row)."""
    part = register_epilogue(codes, vecs, params, co, panel_width(co))
    return (part.mode if part.covers(len(codes)) else EPI_NONE), part.table


def row_scratch_floats(items: int, w_out: int) -> int:
    """Floats of conv_blocked's per-item scratch: two output rows of two channel blocks, ROOM pixels of room each."""
    return items * 4 * (w_out + ROOM) * VW


@helper
def _pixel_chunk(rem):  # type: ignore[no-untyped-def]
    """Output pixels of the next micro-tile of a row with `rem` left: as many of MR, 2 MR / 3, MR / 3 as fit (a
    row of 16 as 8 + 8, not 12 + 4), then the rest (a micro-kernel with rows to spare runs it)."""
    if rem >= MR and rem != 2 * (2 * MR // 3):
        return MR
    if rem >= 2 * MR // 3:
        return 2 * MR // 3
    if rem >= MR // 3:
        return MR // 3
    return rem


@helper
def _pixel_chunk_one(rem):  # type: ignore[no-untyped-def]
    """`_pixel_chunk` for the one-vector micro-kernel's row counts (ONE_ROWS: a row of 32 as 16 + 16)."""
    if rem >= MR_ONE and rem != 4 * MR_ONE // 3:
        return MR_ONE
    if rem >= 2 * MR_ONE // 3:
        return 2 * MR_ONE // 3
    if rem >= MR_ONE // 3:
        return MR_ONE // 3
    if rem >= MR_ONE // 6:
        return MR_ONE // 6
    return rem


_PAIRS2, _PAIRS1 = POOL_PAIR_PIXELS[2], POOL_PAIR_PIXELS[1]


@helper
def _pair_chunk(rem, vectors):  # type: ignore[no-untyped-def]
    """Pixels per row of the next pooling micro-tile with `rem` (even) pixels of the row pair left: the largest of
    POOL_PAIR_PIXELS[vectors] that fits."""
    sizes = _PAIRS2 if vectors == 2 else _PAIRS1
    best = sizes[0]
    for i in range(4):
        if best < sizes[i] <= rem:
            best = sizes[i]
    return best


@helper
def _exact(cw, vectors):  # type: ignore[no-untyped-def]
    """Whether the micro-kernel for `vectors` vectors of channels runs exactly cw rows (writes no spare row)."""
    if vectors == 2:
        return exact_rows(cw)
    return cw == ONE_ROWS[0] or cw == ONE_ROWS[1] or cw == ONE_ROWS[2] or cw == ONE_ROWS[3]


@helper
def _zero_halo(out, n, cb, r0, r1, halo, top, bottom):  # type: ignore[no-untyped-def]
    """Zero the border of block cb of image n around output rows r0..r1 (and the top / bottom border rows)."""
    if halo == 0:
        return
    hs, ws = out.shape[2], out.shape[3]
    flat = out.reshape(-1)
    base = (n * out.shape[1] + cb) * hs * ws * VW
    if top:
        zero_run(flat, base, halo * ws * VW)
    if bottom:
        zero_run(flat, base + (hs - halo) * ws * VW, halo * ws * VW)
    for r in range(r0 + halo, r1 + halo):
        zero_run(flat, base + r * ws * VW, halo * VW)
        zero_run(flat, base + ((r + 1) * ws - halo) * VW, halo * VW)


@subkernel
def _store_rows(sc, row_len, pool, out, n, cb, orow, halo, w_out, hh):  # type: ignore[no-untyped-def]
    """Block cb's part (half hh of the panel) of the scratch's one or two finished rows into out row orow: copied,
    or with `pool` the max of each 2x2 window of the two rows (a NaN wins; the scratch's first row is overwritten)."""
    ws = out.shape[3]
    flat = out.reshape(-1)
    dst0 = (((n * out.shape[1] + cb) * out.shape[2] + orow + halo) * ws + halo) * VW
    top = sc[hh * row_len:hh * row_len + w_out * VW]
    if pool:  # the rows' max in place first (whole runs), then pairs of pixels (2.9x faster than 4-way per lane)
        bottom = sc[(2 + hh) * row_len:(2 + hh) * row_len + w_out * VW]
        for j in range(w_out * VW):
            top[j] = maximum(top[j], bottom[j])
        for q in range(w_out // 2):
            left = top[2 * q * VW:(2 * q + 1) * VW]
            right = top[(2 * q + 1) * VW:(2 * q + 2) * VW]
            dst = flat[dst0 + q * VW:dst0 + (q + 1) * VW]
            for c in range(VW):
                dst[c] = maximum(left[c], right[c])
        return
    dst = flat[dst0:dst0 + w_out * VW]
    for j in range(w_out * VW):
        dst[j] = top[j]


@twin
def conv_blocked(x, xpad, xb, ap, offs, out, scratch, geo, hq, wq, rb, halo,  # type: ignore[no-untyped-def]
                 vectors, ep, mode, stages, vecs, params, means):
    """conv2d (groups 1, stride 1, f32) into out, blocked-channel [N, Co / VW, Hs, Ws, VW] with a border of `halo`
    zero pixels (Hs = Ho + 2 halo, or Ho / 2 + 2 halo when geo[POOL_2X2] max-pools the result in 2x2 windows).

    The input is xb, blocked with a border equal to the convolution's padding (flat; hq x wq pixels per block),
    when xb has elements; else x [N, Ci, H, W], first copied into zero-padded planes in xpad (plane_image_floats
    per image). ap, offs: blocked_tables(...). Work items are (image, panel of `vectors` x VW output channels
    (panel_width), block of rb output rows; rb even when pooling); scratch: row_scratch_floats(items, Wo). The
    epilogue runs in the micro-kernel (mode and table ep from tile_epilogue), or with mode EPI_NONE as `stages`
    over each row. When means [N, Co] has rows, each item also averages its channels over the image (`block_mean`,
    as global_avgpool_blocked), its output still in cache: items must then hold whole images (rb >= Ho).
    """
    from_blocks = xb.shape[0] > 0
    nb = out.shape[0]
    co_blocks = out.shape[1]
    w_out = geo[W_OUT]
    pool = geo[POOL_2X2] != 0
    h_out = (out.shape[2] - 2 * halo) * (2 if pool else 1)
    panels = (co_blocks + vectors - 1) // vectors
    pw = vectors * VW
    k_total = offs.shape[0]
    groups = (h_out + rb - 1) // rb
    own_image = panels * groups == 1  # each item alone reads its image: it fills the planes itself (one region)
    ci = x.shape[1]
    if from_blocks:
        img = (k_total // (geo[KH] * geo[KW] * VW)) * hq * wq * VW
    else:
        img = plane_image_floats(ci, hq, wq)
        if not own_image:
            for t in prange(nb * ci):
                n = t // ci
                padded_plane(x, n, t - n * ci, xpad, n * img + (t - n * ci) * hq * wq, geo[PT], geo[PL], hq, wq)
    src = xb if from_blocks else xpad
    step = VW if from_blocks else 1
    row_len = (w_out + ROOM) * VW
    per = 4 * row_len
    for t in prange(nb * panels * groups):
        n = t // (panels * groups)
        p = (t // groups) % panels
        g = t % groups
        r0 = g * rb
        r1 = min(h_out, r0 + rb)
        sc = scratch[t * per:(t + 1) * per]
        if own_image and not from_blocks:
            for c in range(ci):
                padded_plane(x, n, c, xpad, n * img + c * hq * wq, geo[PT], geo[PL], hq, wq)
        halves = min(vectors, co_blocks - vectors * p)
        for hh in range(halves):
            o0 = r0 // 2 if pool else r0
            o1 = (r1 + 1) // 2 if pool else r1
            _zero_halo(out, n, vectors * p + hh, o0, o1, halo, g == 0, g == groups - 1)
        flat = out.reshape(-1)
        block = out.shape[2] * out.shape[3] * VW  # floats from one channel block to the next
        direct = not pool and halves == vectors  # whole rows land in the output; pooled ones go through the scratch
        # unless the micro-kernel applies the whole epilogue: it then pools each pair of rows in its registers
        pool_in_registers = pool and stages.shape[0] == 0 and halves == vectors
        for oh in range(r0, r1, 2 if pool else 1):
            if pool_in_registers:
                prow0 = (((n * co_blocks + vectors * p) * out.shape[2] + oh // 2 + halo) * out.shape[3] + halo) * VW
                ow0 = 0
                while ow0 < w_out:
                    px = _pair_chunk(w_out - ow0, vectors)
                    microkernel_pooled_pairs(px, vectors, from_blocks, k_total, src, n * img + (oh * wq + ow0) * step,
                                             offs, wq * step, ap, p * k_total * pw, pw, flat, prow0 + ow0 // 2 * VW,
                                             VW, block, ep, p * EPI_ROWS * NR, mode)
                    ow0 += px
                continue
            for r in range(2 if pool else 1):
                row0 = (((n * co_blocks + vectors * p) * out.shape[2] + oh + halo) * out.shape[3] + halo) * VW
                ow0 = 0
                while ow0 < w_out:
                    cw = _pixel_chunk(w_out - ow0) if vectors == 2 else _pixel_chunk_one(w_out - ow0)
                    a_off = n * img + ((oh + r) * wq + ow0) * step
                    to_out = direct and _exact(cw, vectors)
                    c, c_off, c_next = (flat, row0 + ow0 * VW, block) if to_out else \
                        (sc, 2 * r * row_len + ow0 * VW, row_len)
                    if vectors == 2:
                        microkernel_pixel_rows(cw, from_blocks, k_total, src, a_off, offs, ap, p * k_total * pw, pw,
                                               c, c_off, VW, c_next, ep, p * EPI_ROWS * NR, mode, False)
                    else:
                        microkernel_pixel_rows_one(cw, from_blocks, k_total, src, a_off, offs, ap, p * k_total * pw,
                                                   pw, c, c_off, VW, ep, p * EPI_ROWS * NR, mode)
                    if direct and not to_out:
                        for hh in range(vectors):
                            copy_run(flat, row0 + hh * block + ow0 * VW, sc, hh * row_len + ow0 * VW, cw * VW)
                    ow0 += cw
                if stages.shape[0] > 0:
                    for hh in range(halves):
                        if direct:
                            run = flat[row0 + hh * block:row0 + hh * block + w_out * VW]
                        else:
                            run = sc[(2 * r + hh) * row_len:(2 * r + hh) * row_len + w_out * VW]
                        c0 = (vectors * p + hh) * VW
                        epi_flat(run, VW, stages, vecs[:, c0:c0 + VW], params, run)
            if not direct:
                for hh in range(halves):
                    _store_rows(sc, row_len, pool, out, n, vectors * p + hh, oh // 2 if pool else oh, halo, w_out, hh)
        if means.shape[0] > 0:
            for hh in range(halves):
                block_mean(out, n, vectors * p + hh, halo, means)


@helper
def block_mean(x, n, cb, halo, out):  # type: ignore[no-untyped-def]
    """out[n, cb * VW:(cb + 1) * VW] = the mean over the pixels of channel block cb of image n of blocked x
    [N, C / VW, Hs, Ws, VW] inside its border of `halo` (out [N, C]: channels past C are left out): rows summed as
    whole runs (vectors), then each channel's column sums in float64."""
    blocks, hs, ws = x.shape[1], x.shape[2], x.shape[3]
    count = (hs - 2 * halo) * (ws - 2 * halo)
    flat = x.reshape(-1)
    inner = (ws - 2 * halo) * VW
    t = n * blocks + cb
    cols = np.zeros(inner, np.float32)
    for r in range(halo, hs - halo):
        start = ((t * hs + r) * ws + halo) * VW
        run = flat[start:start + inner]
        for j in range(inner):
            cols[j] += run[j]
    for c in range(min(VW, out.shape[1] - cb * VW)):
        s = 0.0
        for q in range(c, inner, VW):
            s += cols[q]
        out[n, cb * VW + c] = s / count


@twin
def global_avgpool_blocked(x, halo, out):  # type: ignore[no-untyped-def]
    """out [N, C] = the mean over the pixels of blocked x [N, C / VW, Hs, Ws, VW] inside its border of `halo`
    (`block_mean` per image and channel block)."""
    blocks = x.shape[1]
    for t in prange(x.shape[0] * blocks):
        block_mean(x, t // blocks, t % blocks, halo, out)


@twin
def blocked_to_nchw(x, halo, out):  # type: ignore[no-untyped-def]
    """out [N, C, H, W] = the inside of blocked x [N, C / VW, H + 2 halo, W + 2 halo, VW]."""
    nb, c_all, h, w = out.shape
    blocks = x.shape[1]
    for t in prange(nb * blocks):
        n = t // blocks
        cb = t - n * blocks
        for r in range(h):
            src = x[n, cb, r + halo]
            for c in range(min(VW, c_all - cb * VW)):
                dst = out[n, cb * VW + c, r]
                for q in range(w):
                    dst[q] = src[q + halo, c]
