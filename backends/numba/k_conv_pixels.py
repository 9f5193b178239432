"""Convolution with few input channels on the GEMM micro-kernel: im2col one B panel at a time over real pixels.

With few input channels per tap a shifted GEMM per tap would have a K of Ci alone, so the (tap,
channel) pairs form one K dimension (weights from pack_conv_weights(w, merged=True)). The pixel
(N) dimension is the output pixels of all images in a row, (n, oh, ow) flattened: a B panel of
NR pixels is gathered from the zero-padded stride-phase planes (as conv_shift builds them) in runs
of consecutive output columns, so neither the padding columns of the "wide" layout nor a ragged
last panel per image is computed (an 8x8 output of a 3x3 conv: 64 pixels, not 3 panels of 80).
"""

from __future__ import annotations

from numba import prange

from .geometry import DH, DW, KH, KW, PL, PT, SH, SW, W_OUT
from .jit import subkernel, twin
from .k_conv_shift import KC_CONV, microkernel_rows, phase_plane
from .k_epilogue import epi_row
from .k_microkernel import MR, NR


def pixel_ext_floats(items: int, pb: int, cb: int) -> int:
    """Floats of conv_pixels' C tiles: per work item cb rows of pb pixels rounded up to NR."""
    return items * cb * (-(-pb // NR) * NR)


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


@twin
def conv_pixels(x, ap, out, xpad, ext, bpan, offsets, geo, hq, wq, pb, cb, stages,  # type: ignore[no-untyped-def]
                vecs, params, res):
    """conv2d, groups 1, f32, any stride/dilation, K = (tap, channel) pairs: out [N, Co, Ho*Wo].

    ap from pack_conv_weights(w, merged=True); xpad: N images of phase planes (padded_image_floats
    each); ext: pixel_ext_floats(...); bpan: KC_CONV*NR floats and offsets: KC_CONV int64 per work
    item. Work items are (block of pb output pixels over all images, block of cb output channels);
    pb and cb are multiples of NR and MR (or pb covers every pixel).
    """
    nb, ci_all, h_in, w_in = x.shape
    co_all = out.shape[1]
    kh, kw, sh, sw = geo[KH], geo[KW], geo[SH], geo[SW]
    pt, pl, dh, dw = geo[PT], geo[PL], geo[DH], geo[DW]
    w_out = geo[W_OUT]
    p_img = out.shape[2]
    plane = hq * wq
    chan = sh * sw * plane
    img = ci_all * chan + 2 * wq + 2 * NR  # as padded_image_floats
    phases = sh * sw
    for t in prange(nb * ci_all * phases):
        n = t // (ci_all * phases)
        c = (t // phases) % ci_all
        ph = (t % phases) // sw
        pw = t % sw
        o = n * img + c * chan + (ph * sw + pw) * plane
        phase_plane(x[n, c], xpad[o:o + plane], ph, pw, sh, sw, pt, pl, hq, wq)
    p_all = nb * p_img
    gp = (p_all + pb - 1) // pb
    gc = (co_all + cb - 1) // cb
    ldx = (pb + NR - 1) // NR * NR
    k_total = kh * kw * ci_all
    for t in prange(gp * gc):
        ip = t // gc
        ic = t - ip * gc
        p0 = ip * pb
        p1 = min(p_all, p0 + pb)
        c0 = ic * cb
        c1 = min(co_all, c0 + cb)
        bp = bpan[t * KC_CONV * NR:(t + 1) * KC_CONV * NR]
        offs = offsets[t * KC_CONV:(t + 1) * KC_CONV]
        c_base = t * cb * ldx - c0 * ldx - p0  # channel c, pixel p of this item's C tile: c_base + c*ldx + p
        for pc in range(0, k_total, KC_CONV):
            kc = min(KC_CONV, k_total - pc)
            for kk in range(kc):  # start of B row kk in the phase planes of image 0, output pixel (0, 0)
                tap = (pc + kk) // ci_all
                ci = pc + kk - tap * ci_all
                ri = (tap // kw) * dh
                cj = (tap % kw) * dw
                offs[kk] = ci * chan + ((ri % sh) * sw + cj % sw) * plane + (ri // sh) * wq + cj // sw
            for p in range(p0, p1, NR):
                _pack_pixels(xpad, offs, kc, p, min(NR, p1 - p), p_img, w_out, wq, img, bp)
                for mp in range(c0 // MR, (c1 + MR - 1) // MR):
                    microkernel_rows(c1 - mp * MR, kc, ap, (mp * k_total + pc) * MR, bp, 0, NR, ext,
                             c_base + mp * MR * ldx + p, ldx, pc > 0)
        for c in range(c0, c1):  # per image the item's pixels are one contiguous span of the output
            rc = min(c, res.shape[1] - 1)
            p = p0
            while p < p1:
                n = p // p_img
                lo = p - n * p_img
                hi = min(p_img, lo + p1 - p)
                span = out[n, c, lo:hi]
                src = ext[c_base + c * ldx + p:c_base + c * ldx + p + hi - lo]
                for z in range(hi - lo):
                    span[z] = src[z]
                if stages.shape[0] > 0:
                    rn = min(n, res.shape[0] - 1)
                    rrow = res[rn, rc][lo:hi] if res.shape[2] > 1 else res[rn, rc]
                    epi_row(span, span, False, stages, vecs, params, 0, c, rrow)
                p += hi - lo
