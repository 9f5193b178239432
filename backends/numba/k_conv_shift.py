"""Convolution on the GEMM micro-kernel, without im2col.

With the input zero-padded (stride 1), output pixel (oh, ow) of tap (i, j) reads padded pixel
(oh + i*dh, ow + j*dw): over the "wide" output of Ho x Wp pixels (Wp - Wo junk columns per row), tap
(i, j) is a GEMM whose B rows are channel planes of the padded input shifted by i*dh*Wp + j*dw.
Strides are handled by splitting each padded plane into stride phases, each again a shifted GEMM.
The kernel accumulates the kh*kw taps per output tile with pre-packed weights, packing one B panel
(KC x NR) at a time, then the epilogue writes the valid columns into the output (with geo[POOL_2X2],
the max of each 2x2 window of them: tiles then hold whole pairs of output rows).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .geometry import B_PACKED, B_PANELS, DH, DW, KH, KW, PL, POINTWISE, POOL_2X2, PT, SH, SW, W_OUT
from .jit import helper, subkernel, twin
from .k_epilogue import RESIDUAL, epi_row
from .k_gemm_ukernels import microkernel_rows_epilogue, uk_epi
from .k_microkernel import MR, NR
from .k_pool import max_of_row_pairs
from .llvm_prefetch import LINE_FLOATS
from .ukernel_epilogue_ir import EPI_NONE
from .vector_runs import VW, copy_run, zero_run

KC_CONV = 256


def pack_conv_weights(w: np.ndarray, merged: bool = False) -> np.ndarray:
    """w [Co, Ci, kh, kw] as MR-row panels: [kh*kw, ceil(Co/MR), Ci, MR] per tap, or with `merged`
    [1, ceil(Co/MR), kh*kw*Ci, MR] over (tap, channel) pairs; zero-padded rows."""
    co, ci, kh, kw = w.shape
    panels = -(-co // MR)
    if merged:
        wk = w.transpose(0, 2, 3, 1).reshape(co, kh * kw * ci)  # k = tap * Ci + ci
        out = np.zeros((1, panels, kh * kw * ci, MR), np.float32)
        for p in range(panels):
            blk = wk[p * MR:(p + 1) * MR]
            out[0, p, :, :blk.shape[0]] = blk.T
        return out
    out = np.zeros((kh * kw, panels, ci, MR), np.float32)
    for t in range(kh * kw):
        wt = w[:, :, t // kw, t % kw]  # [Co, Ci]
        for p in range(panels):
            blk = wt[p * MR:(p + 1) * MR]
            out[t, p, :, :blk.shape[0]] = blk.T
    return out


def padded_image_floats(ci: int, sh: int, sw: int, hq: int, wq: int) -> int:
    """Floats of one image's phase planes in the scratch, with room for the widest shifted read."""
    return ci * sh * sw * hq * wq + 2 * wq + 2 * NR


def ext_floats(items: int, rb: int, wq: int, cb: int) -> int:
    """Floats of the C tiles of conv_shift (not pointwise): per work item cb rows of rb*wq pixels rounded up to NR."""
    return items * cb * (-(-(rb * wq) // NR) * NR)


@helper
def padded_plane(x, n, c, xpad, o, pt, pl, hq, wq):  # type: ignore[no-untyped-def]
    """xpad[o + a*wq + b] = zero-padded x[n, c, a - pt, b - pl]: the plane of a stride-1 convolution
    (wq = pl + width + pr).

    Rows move as vector runs at flat offsets into x and xpad (no views: a view per plane cost about 100 ns, as much
    as copying a plane of 8 x 8); an x whose rows are not runs of float32 goes element by element."""
    h, w = x.shape[2], x.shape[3]
    st = x.strides
    if st[3] != 4 or st[2] < 0 or st[1] < 0 or st[0] < 0:
        for a in range(hq * wq):
            ih, iw = a // wq - pt, a % wq - pl
            xpad[o + a] = x[n, c, ih, iw] if 0 <= ih < h and 0 <= iw < w else 0.0
        return
    row = st[2] // 4
    src = (n * st[0] + c * st[1]) // 4
    if w <= VW:  # narrow rows: one run of zeros over the plane, then a vector per row (8 x 8: 4.9 -> 2.5 ns a row)
        zero_run(xpad, o, hq * wq)
        for ih in range(h):
            copy_run(xpad, o + (ih + pt) * wq + pl, x, src + ih * row, w)
        return
    zero_run(xpad, o, pt * wq + pl)  # the top rows and the first row's left pad
    for ih in range(h):
        d = o + (ih + pt) * wq + pl
        copy_run(xpad, d, x, src + ih * row, w)
        zero_run(xpad, d + w, wq - w if ih < h - 1 else wq - w - pl)  # right pad (and the next row's left pad)
    end = (h + pt) * wq
    zero_run(xpad, o + end, hq * wq - end)  # the bottom rows


@subkernel
def phase_plane(src, dst, ph, pw, sh, sw, pt, pl, hq, wq):  # type: ignore[no-untyped-def]
    """dst[a*wq + b] = zero-padded src[a*sh + ph - pt, b*sw + pw - pl]: one stride phase of one channel (a
    strided convolution's; stride 1 is `padded_plane`, about 3x faster per row)."""
    h, w = src.shape
    for a in range(hq):
        row = dst[a * wq:(a + 1) * wq]
        ih = a * sh + ph - pt
        if ih < 0 or ih >= h:
            for b in range(wq):
                row[b] = 0.0
            continue
        s = src[ih]
        lo = max(0, (pl - pw + sw - 1) // sw)
        hi = min(wq, (w - 1 + pl - pw) // sw + 1) if w - 1 + pl - pw >= 0 else 0
        hi = max(hi, lo)
        for b in range(lo):
            row[b] = 0.0
        if sw == 1:
            seg = row[lo:hi]
            part = s[lo + pw - pl:hi + pw - pl]
            for b in range(hi - lo):
                seg[b] = part[b]
        else:
            for b in range(lo, hi):
                row[b] = s[b * sw + pw - pl]
        for b in range(hi, wq):
            row[b] = 0.0


@helper
def fill_plane(x, n, c, xpad, o, ph, pw, sh, sw, pt, pl, hq, wq):  # type: ignore[no-untyped-def]
    """Stride phase (ph, pw) of channel c of image n, zero-padded, at xpad[o:o + hq*wq]."""
    if sh == 1 and sw == 1:
        padded_plane(x, n, c, xpad, o, pt, pl, hq, wq)
    else:
        phase_plane(x[n, c], xpad[o:o + hq * wq], ph, pw, sh, sw, pt, pl, hq, wq)


@helper
def next_weight_panel(a_off, tap, mp, pc, mp_first, mp_end, npm, ci_all, taps):  # type: ignore[no-untyped-def]
    """Offset in the packed weights of the panel the item multiplies after panel mp of (tap, K block pc), whose
    lines it prefetches meanwhile: the next panel of channels, else the first of the next K block or tap (its own,
    a_off, after the last). Deep layers read several MB of weights for a few pixels, straight from memory."""
    if mp + 1 < mp_end:
        return a_off + ci_all * MR
    if pc + KC_CONV < ci_all:
        return ((tap * npm + mp_first) * ci_all + pc + KC_CONV) * MR
    if tap + 1 < taps:
        return ((tap + 1) * npm + mp_first) * ci_all * MR
    return a_off


@subkernel
def _mma(kc, ap, a_off, b_src, b_off, b_ld, ext, c_off, wide, first, tmp, cw, qw, pf):  # type: ignore[no-untyped-def]
    """One micro-tile: ext[MR rows at c_off, row stride wide] (+)= A panel @ B panel; partial tiles via tmp; the
    weights' lines from ap[pf] on prefetched (one per k)."""
    if cw == MR and qw == NR:
        uk_epi(kc, ap, a_off, b_src, b_off, b_ld, ext, c_off, wide, not first, ap, 0, EPI_NONE, ext, 0, 0, False,
               ap, pf, LINE_FLOATS)
        return
    uk_epi(kc, ap, a_off, b_src, b_off, b_ld, tmp, 0, NR, False, ap, 0, EPI_NONE, tmp, 0, 0, False, ap, pf,
           LINE_FLOATS)
    for r in range(cw):
        dst = ext[c_off + r * wide:c_off + r * wide + qw]
        src = tmp[r * NR:r * NR + qw]
        if first:
            for z in range(qw):
                dst[z] = src[z]
        else:
            for z in range(qw):
                dst[z] += src[z]


@subkernel
def _pack_panel(xpad, offs, q, kc, qw, bp):  # type: ignore[no-untyped-def]
    """bp[kk][0:NR] = xpad[offs[kk] + q:offs[kk] + q + qw], zero-padded to NR, for kk < kc."""
    for kk in range(kc):
        row = bp[kk * NR:(kk + 1) * NR]
        src = xpad[offs[kk] + q:offs[kk] + q + qw]
        for z in range(qw):
            row[z] = src[z]
        for z in range(qw, NR):
            row[z] = 0.0


@subkernel
def _pool_tile_rows(ext, base, out, n, c, r0, r1, w_out, wq, stages, vecs, params, res, rn):  # type: ignore
    """Channel c's rows r0..r1 (whole pairs) of a wide C tile at ext[base + oh * wq]: the epilogue on them (one run
    over the wide rows, junk columns too, unless a residual is added row by row), then the max of each 2x2 window
    into out [N, C, Ho*Wo / 4]."""
    if stages.shape[0] > 0:
        residual = False
        for s in range(stages.shape[0]):
            residual = residual or stages[s] == RESIDUAL
        if residual:
            rc = min(c, res.shape[1] - 1)
            for oh in range(r0, r1):
                row = ext[base + oh * wq:base + oh * wq + w_out]
                rrow = res[rn, rc][oh * w_out:(oh + 1) * w_out] if res.shape[2] > 1 else res[rn, rc]
                epi_row(row, row, False, stages, vecs, params, np.int64(0), c, rrow)
        else:
            span = ext[base + r0 * wq:base + r1 * wq]
            epi_row(span, span, False, stages, vecs, params, np.int64(0), c, res[rn, min(c, res.shape[1] - 1)])
    half = w_out // 2
    for oh in range(r0, r1, 2):
        top = base + oh * wq
        o = oh // 2 * half
        max_of_row_pairs(ext[top:top + w_out], ext[top + wq:top + wq + w_out], out[n, c, o:o + half])


@twin
def conv_shift(x, ap, out, xpad, ext, ctmp, offsets, geo, hq, wq, rb, cb, stages,  # type: ignore[no-untyped-def]
               vecs, params, res):
    """conv2d, groups 1, f32, any stride/dilation: out [N, Co, Ho*Wo]; ap from pack_conv_weights.

    Each input channel is split into sh*sw phase planes (hq x wq, zero-padded): tap (i, j) then reads
    phase ((i*dh) % sh, (j*dw) % sw) shifted by ((i*dh) // sh, (j*dw) // sw), a stride-1 shifted GEMM
    over the "wide" output of Ho x wq pixels. xpad: N images of phase planes; ext: ext_floats(...), per
    work item a C tile of cb channels x (rb*wq rounded up to NR) pixels, so every micro-kernel call
    writes a whole tile; ctmp: MR*NR + KC*NR floats per work item (a partial C tile and a packed B
    panel). Work items are (image, block of rb output rows, block of cb output channels); cb must be
    a multiple of MR. A pointwise convolution (geo[POINTWISE] == 1) reads x itself (flat) instead of xpad
    (then unused) and passes the output (flat) as ext (partial micro-tiles then go through ctmp).
    geo[B_PANELS] == B_PACKED packs every B panel before use; 0 reads B rows in place (row stride one channel)
    and packs only partial panels. Few input channels, where the taps form one K, go to
    k_conv_pixels.conv_pixels instead. offsets: KC int64 per work item.
    """
    nb, ci_all, h_in, w_in = x.shape
    co_all = out.shape[1]
    kh, kw, sh, sw = geo[KH], geo[KW], geo[SH], geo[SW]
    pt, pl, dh, dw = geo[PT], geo[PL], geo[DH], geo[DW]
    w_out = geo[W_OUT]
    pool = geo[POOL_2X2] == 1
    h_out = out.shape[2] * (4 if pool else 1) // max(w_out, 1)
    plane = hq * wq
    chan = sh * sw * plane
    pointwise = geo[POINTWISE] == 1
    pack = geo[B_PANELS] == B_PACKED
    img = ci_all * chan if pointwise else ci_all * chan + 2 * wq + 2 * NR  # as padded_image_floats
    if not pointwise:
        phases = sh * sw
        for t in prange(nb * ci_all * phases):
            n = t // (ci_all * phases)
            c = (t // phases) % ci_all
            ph = (t % phases) // sw
            pw = t % sw
            o = n * img + c * chan + (ph * sw + pw) * plane
            fill_plane(x, n, c, xpad, o, ph, pw, sh, sw, pt, pl, hq, wq)
        for n in range(nb):
            for q in range(n * img + ci_all * chan, (n + 1) * img):
                xpad[q] = 0.0
    planes = x.reshape(-1) if pointwise else xpad
    wide = h_out * wq
    npm = ap.shape[1]
    gr = (h_out + rb - 1) // rb
    gc = (co_all + cb - 1) // cb
    per = MR * NR + KC_CONV * NR
    ldx = (rb * wq + NR - 1) // NR * NR  # row stride of an item's C tile (not pointwise)
    for t in prange(nb * gr * gc):
        n = t // (gr * gc)
        rest = t - n * gr * gc
        ir = rest // gc
        ic = rest - ir * gc
        r0 = ir * rb
        r1 = min(h_out, r0 + rb)
        c0 = ic * cb
        c1 = min(co_all, c0 + cb)
        q0 = r0 * wq
        q1 = r1 * wq
        tmp = ctmp[t * per:t * per + MR * NR]
        bp = ctmp[t * per + MR * NR:(t + 1) * per]
        offs = offsets[t * KC_CONV:(t + 1) * KC_CONV]
        # C tile: the output itself (pointwise; partial micro-tiles through tmp) or the item's own region of
        # ext, cb rows of ldx >= (r1 - r0) * wq pixels, which whole micro-tiles may overrun (junk never read)
        c_base = t * cb * ldx - c0 * ldx - q0
        c_ld = ldx
        if pointwise:
            c_base = n * co_all * wide
            c_ld = wide
        for tap in range(kh * kw):  # one shifted GEMM per tap
            ri = (tap // kw) * dh
            cj = (tap % kw) * dw
            shift = ((ri % sh) * sw + cj % sw) * plane + (ri // sh) * wq + cj // sw
            for pc in range(0, ci_all, KC_CONV):
                kc = min(KC_CONV, ci_all - pc)
                first = tap == 0 and pc == 0
                for q in range(q0, q1, NR):
                    qw = min(NR, q1 - q)
                    b_src = planes
                    b_off = n * img + pc * chan + shift + q
                    b_ld = chan
                    if pack or qw < NR:  # pack the B panel: kc rows of NR pixels, contiguous
                        for kk in range(kc):
                            offs[kk] = b_off + kk * chan
                        _pack_panel(planes, offs, 0, kc, qw, bp)
                        b_src = bp
                        b_off = 0
                        b_ld = NR
                    mp_end = (c1 + MR - 1) // MR
                    for mp in range(c0 // MR, mp_end):
                        a_off = ((tap * npm + mp) * ci_all + pc) * MR
                        pf = next_weight_panel(a_off, tap, mp, pc, c0 // MR, mp_end, npm, ci_all, kh * kw)
                        if pointwise:
                            _mma(kc, ap, a_off, b_src, b_off, b_ld, ext, c_base + mp * MR * c_ld + q, c_ld, first,
                                 tmp, min(MR, c1 - mp * MR), qw, pf)
                        else:  # the micro-kernel of the fewest rows that cover them (ext has room for the rest)
                            microkernel_rows_epilogue(c1 - mp * MR, kc, ap, a_off, b_src, b_off, b_ld, ext,
                                                      c_base + mp * MR * c_ld + q, c_ld, not first, ap, 0, EPI_NONE,
                                                      ext, 0, 0, False, ap, pf, LINE_FLOATS)
        if pointwise and stages.shape[0] == 0:
            continue
        rn = min(n, res.shape[0] - 1)
        if pool:
            for c in range(c0, c1):
                _pool_tile_rows(ext, c_base + c * c_ld, out, n, c, r0, r1, w_out, wq, stages, vecs, params, res, rn)
            continue
        for c in range(c0, c1):  # valid columns of the C tile into the output, then the epilogue on the span
            span = out[n, c, r0 * w_out:r1 * w_out]
            if not pointwise:
                for oh in range(r0, r1):
                    src = ext[c_base + c * c_ld + oh * wq:c_base + c * c_ld + oh * wq + w_out]
                    dst = span[(oh - r0) * w_out:(oh - r0 + 1) * w_out]
                    for z in range(w_out):
                        dst[z] = src[z]
            if stages.shape[0] > 0:
                rc = min(c, res.shape[1] - 1)
                rrow = res[rn, rc][r0 * w_out:r1 * w_out] if res.shape[2] > 1 else res[rn, rc]
                epi_row(span, span, False, stages, vecs, params, np.int64(0), c, rrow)
