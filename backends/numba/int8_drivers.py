"""Per-path templates of the int8 GEMM kernels: `jit.specialized` binds each path's names into a copy.

The names MR, NR, KC (micro-kernel rows, panel columns, K block), EPILOGUE_PANELS (panels dequantized
together), UK_FULL, UK_FOUR, UK_TWO, UK_ONE (the MR-, 4-, 2- and one-row micro-kernels), in `acc_panel_tiles`
ACC_ROWS (the path's compiled `acc_rows`), TILE_32 and TILE_16 (the AMX tile blocks), CLEAR_ROWS (`clear_rows`),
in `acc_group` acc_panel (the path's compiled `acc_panel` or `acc_panel_tiles`), and, in the drivers, acc_group,
scratch_per_item and TILES_BEGIN / TILES_END (load and release the tile state around a work item; no-ops off
AMX) are not module globals: each path's copy of a template gets them in its own globals,
and its own name, so that every path compiles to separate code and separate cache entries.
"""

# ruff: noqa: F821

from __future__ import annotations

import numpy as np
from numba import prange
from numba.extending import overload
from numba.np.numpy_support import as_dtype

from .jit import helper, subkernel, work_item_tile
from .k_epilogue import epi_tile, repeated_rows, rows_as_flat
from .vector_quantize import MIN_SCALE, requantize_run


def qbounds(arr):  # type: ignore[no-untyped-def]
    """(min, max) of the integer dtype of `arr` (inside kernels)."""
    info = np.iinfo(arr.dtype)
    return int(info.min), int(info.max)


@overload(qbounds)
def _qbounds_overload(arr):  # type: ignore[no-untyped-def]
    info = np.iinfo(as_dtype(arr.dtype))
    lo, hi = int(info.min), int(info.max)
    return lambda arr: (lo, hi)


@helper(fastmath=False)
def dequant_block(acc, ld, m0, m1, n0, nw, sx, zpx, colsum, rsum, wzp, sw, bias,  # type: ignore[no-untyped-def]
                  out):
    """out[m0:m1, n0:n0+nw] = (sx[m] * sw[n]) * (acc - zpx[m] * colsum[n] - rsum[m] * wzp[n]) + bias[n], acc rows
    of stride ld; without the last term when wzp is empty (no weight zero point).

    sx / zpx hold one value per row, or one for all rows; rsum[m] = sum_k (x[m, k] - zpx[m]) (`row_sums_u8`).
    The drivers that inline this are compiled without fast-math: no multiply-add contraction, so the result is
    the IR's dequantization bit for bit.
    """
    per_row = sx.shape[0] > 1
    swv = sw[n0:n0 + nw]
    csv = colsum[n0:n0 + nw]
    bv = bias[n0:n0 + nw]
    shifted = wzp.shape[0] > 0
    wzv = wzp[n0:n0 + nw] if shifted else wzp
    for r in range(m0, m1):
        s = sx[r if per_row else 0]
        z = zpx[r if per_row else 0]
        o = out[r, n0:n0 + nw]
        a = acc[(r - m0) * ld:(r - m0) * ld + nw]
        if shifted:
            rs = rsum[r]
            for c in range(nw):
                o[c] = (s * swv[c]) * np.float32(a[c] - z * csv[c] - rs * wzv[c]) + bv[c]
        else:  # slices, not indices offset by n0: the loop vectorizes; the difference is i32 wherever acc is exact
            for c in range(nw):  # (|sum_k (x - z) w| <= 255 * 128 * K, as acc's), so it is computed in i32
                o[c] = (s * swv[c]) * np.float32(np.int32(a[c] - z * csv[c])) + bv[c]


@subkernel(fastmath=False)
def requant_tile(y, m0, m1, c0, c1, s_out, zp_out, q):  # type: ignore[no-untyped-def]
    """q[m0:m1, c0:c1] = clamp(rint(y / s_out[n]) + zp_out[n]) to q's integer range (half to even); NaN to zp_out.

    Whole rows of C-contiguous y and q run as one flat run with the scales and zero points repeated over whole
    rows (`requant_run`), so that narrow rows (a convolution's 16 channels) vectorize; other tiles row by row.
    """
    if c1 <= c0 or m1 <= m0:
        return
    s = s_out[c0:c1]
    inv = np.float32(1.0) / s
    zf = zp_out[c0:c1].astype(np.float32)
    if c0 == 0 and c1 == y.shape[1]:
        ok_y, flat_y = rows_as_flat(y, m0, m1)
        ok_q, flat_q = rows_as_flat(q, m0, m1)
        if ok_y and ok_q:
            w = c1 - c0
            requant_run(flat_y, repeated_rows(s, w), repeated_rows(inv, w), repeated_rows(zf, w), flat_q)
            return
    for r in range(m0, m1):
        requant_run(y[r, c0:c1], s, inv, zf, q[r, c0:c1])


@helper(fastmath=False)
def requant_run(y, s_out, inv, zf, q):  # type: ignore[no-untyped-def]
    """q = requantized y, with the scales s_out, their reciprocals inv and the zero points zf (f32) repeated along y
    every s_out.shape[0] elements: whole vectors through `vector_quantize.requantize_run` when every scale is
    normal (the division's bytes), the rest divided here."""
    lo, hi = qbounds(q)
    flo, fhi = np.float32(lo), np.float32(hi)
    step = s_out.shape[0]
    vector = step > 0 and s_out.min() >= MIN_SCALE
    for s0 in range(0, y.shape[0], step):
        n = min(step, y.shape[0] - s0)
        yr = y[s0:s0 + n]
        qr = q[s0:s0 + n]
        done = requantize_run(yr, qr, inv[:n], s_out[:n], zf[:n], flo, fhi) if vector else 0
        for j in range(done, n):
            z = zf[j]
            v = np.float32(np.rint(np.float32(yr[j] / s_out[j]))) + z
            v = z if v != v else v
            qr[j] = min(max(v, flo), fhi)


@helper
def no_tile_state():  # type: ignore[no-untyped-def]
    """Nothing: the tile-state hooks of the paths that have no tiles."""


def acc_rows(xq, wp, mb, r0, r1, p, acc, c_off, ldc, k0, add):  # type: ignore[no-untyped-def]
    """acc[c_off + (r - mb) * ldc + c] (+)= sum over k >= k0 of xq[r, k] * w[p * NR + c, k], rows r0..r1, on vectors.

    The first K block adds to acc when `add`, else overwrites it; later blocks always add.
    """
    kp = xq.shape[1]
    for pc in range(k0, kp, KC):
        kg = min(KC, kp - pc) // 4
        boff = (p * kp + pc) * NR
        more = add or pc != k0
        r = r0
        while r + MR <= r1:
            UK_FULL(kg, xq, r * kp + pc, kp, wp, boff, acc, c_off + (r - mb) * ldc, ldc, more)
            r += MR
        if MR > 4 and r + 4 <= r1:
            UK_FOUR(kg, xq, r * kp + pc, kp, wp, boff, acc, c_off + (r - mb) * ldc, ldc, more)
            r += 4
        while r + 2 <= r1:
            UK_TWO(kg, xq, r * kp + pc, kp, wp, boff, acc, c_off + (r - mb) * ldc, ldc, more)
            r += 2
        if r < r1:
            UK_ONE(kg, xq, r * kp + pc, kp, wp, boff, acc, c_off + (r - mb) * ldc, ldc, more)


def clear_rows(acc, c_off, ldc, rows):  # type: ignore[no-untyped-def]
    """acc[c_off + r * ldc + c] = 0 for r < rows, c < NR (a product over K = 0)."""
    for r in range(rows):
        acc[c_off + r * ldc:c_off + r * ldc + NR] = 0


def acc_panel(xq, wp, m0, m1, p, acc, c_off, ldc):  # type: ignore[no-untyped-def]
    """acc[c_off + (r - m0) * ldc + c] = sum_k xq[r, k] * w[p * NR + c, k] for rows m0..m1 and panel p."""
    if xq.shape[1] == 0:
        CLEAR_ROWS(acc, c_off, ldc, m1 - m0)
    ACC_ROWS(xq, wp, m0, m0, m1, p, acc, c_off, ldc, 0, False)


def acc_panel_tiles(xq, wp, m0, m1, p, acc, c_off, ldc):  # type: ignore[no-untyped-def]
    """`acc_panel` on AMX tiles: blocks of 32 and 16 rows over whole 64s of K, vectors for the rest."""
    kp = xq.shape[1]
    if kp == 0:
        CLEAR_ROWS(acc, c_off, ldc, m1 - m0)
    kt = kp // 64
    r = m0
    if kt > 0:
        boff = p * kp * NR
        while r + 32 <= m1:
            TILE_32(kt, xq, r * kp, kp, wp, boff, acc, c_off + (r - m0) * ldc, ldc)
            r += 32
        if r + 16 <= m1:
            TILE_16(kt, xq, r * kp, kp, wp, boff, acc, c_off + (r - m0) * ldc, ldc)
            r += 16
        if kt * 64 < kp and r > m0:
            ACC_ROWS(xq, wp, m0, m0, r, p, acc, c_off, ldc, kt * 64, True)
    if r < m1:
        ACC_ROWS(xq, wp, m0, r, m1, p, acc, c_off, ldc, 0, False)


def acc_group(xq, wp, m0, m1, g0, g1, acc):  # type: ignore[no-untyped-def]
    """acc[(r - m0) * ld + c] = the product's rows m0..m1 and columns g0 * NR + c of panels g0..g1, ld = (g1 - g0) *
    NR: the accumulators of a group of panels, dequantized together (`UkernelShape.epilogue_panels`)."""
    ld = (g1 - g0) * NR
    for p in range(g0, g1):
        acc_panel(xq, wp, m0, m1, p, acc, (p - g0) * NR, ld)
    return ld


def scratch_per_item(tm, tnp):  # type: ignore[no-untyped-def]
    """i32 accumulators one work item of tm rows x tnp panels needs: a group of panels (`acc_group`)."""
    return tm * NR * min(tnp, EPILOGUE_PANELS)


def gemm_i32(xq, wp, out, tm, tnp, scratch):  # type: ignore[no-untyped-def]
    """out [M, N] i32 = xq [M, Kp] u8 @ W^T with W packed; tiles of tm rows x tnp panels of NR columns."""
    m_all = xq.shape[0]
    n_all = out.shape[1]
    panels = wp.shape[0]
    gm = (m_all + tm - 1) // tm
    gn = (panels + tnp - 1) // tnp
    per = scratch_per_item(tm, tnp)
    for t in prange(gm * gn):
        m0, m1, p0, p1 = work_item_tile(t, gn, tm, tnp, m_all, panels)
        acc = scratch[t * per:(t + 1) * per]
        TILES_BEGIN()
        for g0 in range(p0, p1, EPILOGUE_PANELS):
            ld = acc_group(xq, wp, m0, m1, g0, min(p1, g0 + EPILOGUE_PANELS), acc)
            n0 = g0 * NR
            nw = min(ld, n_all - n0)
            for r in range(m0, m1):
                o = out[r, n0:n0 + nw]
                a = acc[(r - m0) * ld:(r - m0) * ld + nw]
                for c in range(nw):
                    o[c] = a[c]
        TILES_END()


def gemm_dequant(xq, sx, zpx, wp, colsum, rsum, wzp, sw, bias, out, tm, tnp,  # type: ignore[no-untyped-def]
                 scratch, stages, vecs, params, res, q_out, s_out, zp_out):
    """out [M, N] f32 = epilogue(sx * sw * (xq @ W^T - zpx * colsum - rsum * wzp) + bias); q_out = requant(out) if
    it has rows. rsum, wzp: the weight zero point's term (`dequant_block`), both empty when there is none."""
    m_all = xq.shape[0]
    n_all = out.shape[1]
    panels = wp.shape[0]
    gm = (m_all + tm - 1) // tm
    gn = (panels + tnp - 1) // tnp
    per = scratch_per_item(tm, tnp)
    for t in prange(gm * gn):
        m0, m1, p0, p1 = work_item_tile(t, gn, tm, tnp, m_all, panels)
        acc = scratch[t * per:(t + 1) * per]
        TILES_BEGIN()
        for g0 in range(p0, p1, EPILOGUE_PANELS):
            ld = acc_group(xq, wp, m0, m1, g0, min(p1, g0 + EPILOGUE_PANELS), acc)
            dequant_block(acc, ld, m0, m1, g0 * NR, min(ld, n_all - g0 * NR), sx, zpx, colsum, rsum, wzp, sw, bias,
                          out)
        TILES_END()
        c1 = min(n_all, p1 * NR)
        if stages.shape[0] > 0:
            epi_tile(out, m0, m1, p0 * NR, c1, stages, vecs, params, res)
        if q_out.shape[0] > 0:
            requant_tile(out, m0, m1, p0 * NR, c1, s_out, zp_out, q_out)
