"""Data-movement kernels: strided copy (views), block copy (concat), gather, quantization, panel packing."""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numba import prange

from .jit import helper, subkernel, twin
from .vector_quantize import quantize_run


@twin
def copy_strided(src, start, shape, strides, dst):  # type: ignore[no-untyped-def]
    """dst (contiguous, 6-D `shape`) = the view of flat `src` at `start` with element `strides`."""
    d0, d1, d2, d3, d4, d5 = shape[0], shape[1], shape[2], shape[3], shape[4], shape[5]
    s0, s1, s2, s3, s4, s5 = strides[0], strides[1], strides[2], strides[3], strides[4], strides[5]
    for t in prange(d0 * d1 * d2 * d3):
        i3 = t % d3
        r = t // d3
        i2 = r % d2
        r = r // d2
        i1 = r % d1
        i0 = r // d1
        base = start + i0 * s0 + i1 * s1 + i2 * s2 + i3 * s3
        out = dst[t * d4 * d5:(t + 1) * d4 * d5]
        if s5 == 1:
            for i4 in range(d4):
                seg = src[base + i4 * s4:base + i4 * s4 + d5]
                o = out[i4 * d5:(i4 + 1) * d5]
                for i5 in range(d5):
                    o[i5] = seg[i5]
        else:
            for i4 in range(d4):
                b4 = base + i4 * s4
                for i5 in range(d5):
                    out[i4 * d5 + i5] = src[b4 + i5 * s5]


@twin
def copy_block(src, dst, col0):  # type: ignore[no-untyped-def]
    """dst[a, col0:col0 + n] = src[a, :] for 2-D arrays (one input of a concat)."""
    rows, n = src.shape
    for a in prange(rows):
        s = src[a]
        d = dst[a, col0:col0 + n]
        for j in range(n):
            d[j] = s[j]


@twin
def gather(data, idx, out):  # type: ignore[no-untyped-def]
    """out[a, i, :] = data[a, idx[i], :] (3-D data [A, D, B]); returns -1, or the position of a bad index."""
    na, nd, nb = data.shape
    ni = idx.shape[0]
    for i in range(ni):
        v = idx[i]
        if v < -nd or v >= nd:
            return i
    for t in prange(na * ni):
        a = t // ni
        i = t - a * ni
        k = idx[i]
        if k < 0:
            k += nd
        s = data[a, k]
        o = out[a, i]
        for j in range(nb):
            o[j] = s[j]
    return -1


@helper
def first_out_of_range(idx, n):  # type: ignore[no-untyped-def]
    """The flat position of the first index outside [-n, n), or -1."""
    flat = idx.reshape(-1)
    for i in range(flat.shape[0]):
        if flat[i] < -n or flat[i] >= n:
            return i
    return -1


@twin
def gather_elements(data, idx, out):  # type: ignore[no-untyped-def]
    """out[a, r, b] = data[a, idx[a, r, b], b] (data [A, D, B], idx and out [A, R, B]); returns -1, or the flat
    position of an index outside [-D, D)."""
    na, nd, nb = data.shape
    nr = idx.shape[1]
    bad = first_out_of_range(idx, nd)
    if bad >= 0:
        return bad
    for t in prange(na * nr):
        a = t // nr
        r = t - a * nr
        for b in range(nb):
            k = idx[a, r, b]
            out[a, r, b] = data[a, k + nd if k < 0 else k, b]
    return -1


class ScatterReduction(IntEnum):
    """How `scatter_elements` combines an update with the element it lands on (ir SCATTER_REDUCTIONS)."""

    NONE = 0
    ADD = 1
    MUL = 2
    MAX = 3
    MIN = 4


S_NONE, S_ADD, S_MUL, S_MAX = (int(r) for r in (ScatterReduction.NONE, ScatterReduction.ADD, ScatterReduction.MUL,
                                                 ScatterReduction.MAX))


@twin
def scatter_elements(data, idx, upd, out, reduction):  # type: ignore[no-untyped-def]
    """out = data with upd[a, r, b] written to (or combined by `reduction`, a ScatterReduction, with)
    out[a, idx[a, r, b], b], in update order (data / out [A, D, B], idx / upd [A, R, B]); max / min propagate NaN as
    numpy's maximum / minimum. Returns -1, or the flat position of an index outside [-D, D)."""
    na, nd, nb = data.shape
    nr = idx.shape[1]
    bad = first_out_of_range(idx, nd)
    if bad >= 0:
        return bad
    for a in prange(na):
        out[a] = data[a]
    for a in range(na):  # serial: duplicate indices combine in update order
        for r in range(nr):
            for b in range(nb):
                k = idx[a, r, b]
                if k < 0:
                    k += nd
                v = upd[a, r, b]
                o = out[a, k, b]
                if reduction == S_NONE:
                    out[a, k, b] = v
                elif reduction == S_ADD:
                    out[a, k, b] = o + v
                elif reduction == S_MUL:
                    out[a, k, b] = o * v
                elif reduction == S_MAX:
                    out[a, k, b] = o if o != o else (v if v > o or v != v else o)
                else:
                    out[a, k, b] = o if o != o else (v if v < o or v != v else o)
    return -1


@helper
def first_tuple_out_of_range(idx, dims):  # type: ignore[no-untyped-def]
    """The flat position of the first entry of index tuples idx [T, k] outside [-dims[j], dims[j]), or -1."""
    k = dims.shape[0]
    flat = idx.reshape(-1)
    for i in range(flat.shape[0]):
        n = dims[i % k]
        if flat[i] < -n or flat[i] >= n:
            return i
    return -1


@helper
def tuple_offset(row, dims, strides):  # type: ignore[no-untyped-def]
    """The flat offset of index tuple `row` (entries in range, negative ones from the end) over axes `dims`."""
    off = 0
    for j in range(dims.shape[0]):
        v = row[j]
        off += (v + dims[j] if v < 0 else v) * strides[j]
    return off


@twin
def gather_nd(data, idx, dims, strides, out):  # type: ignore[no-untyped-def]
    """out[b, q, :] = data[b, offset of idx[b, q, :], :] (data [B, P, S], idx [B, Q, k], out [B, Q, S]); returns
    -1, or the flat position of an index entry out of range."""
    bad = first_tuple_out_of_range(idx, dims)
    if bad >= 0:
        return bad
    nq = idx.shape[1]
    for t in prange(idx.shape[0] * nq):
        b = t // nq
        q = t - b * nq
        out[b, q] = data[b, tuple_offset(idx[b, q], dims, strides)]
    return -1


@twin
def scatter_nd(data, idx, upd, dims, strides, out, reduction):  # type: ignore[no-untyped-def]
    """out = data with each row upd[q] written to (or combined by `reduction`, a ScatterReduction, with) row
    offset(idx[q]) of out (data / out [P, S], idx [Q, k], upd [Q, S]), in update order; returns -1, or the flat
    position of an index entry out of range."""
    bad = first_tuple_out_of_range(idx, dims)
    if bad >= 0:
        return bad
    for p in prange(data.shape[0]):
        out[p] = data[p]
    for q in range(idx.shape[0]):  # serial: duplicate tuples combine in update order
        o = out[tuple_offset(idx[q], dims, strides)]
        u = upd[q]
        for s in range(o.shape[0]):
            v, w = u[s], o[s]
            if reduction == S_NONE:
                o[s] = v
            elif reduction == S_ADD:
                o[s] = w + v
            elif reduction == S_MUL:
                o[s] = w * v
            elif reduction == S_MAX:
                o[s] = w if w != w else (v if v > w or v != v else w)
            else:
                o[s] = w if w != w else (v if v < w or v != v else w)
    return -1


QUANTIZE_CHUNK = 4096
"""Values per work item of `quantize` along a channel's run: a per-tensor quantize is one run, split for the threads."""


@twin(fastmath=False)
def quantize(x, scale, zp, lo, hi, out):  # type: ignore[no-untyped-def]
    """out[a, c, b] = clip(rint(x / scale[c]) + zp[c], lo, hi) on [A, C, B] arrays; NaN becomes zp[c].

    Without fast-math: x / scale is a true division (a reciprocal multiply rounds some quotients near a half to
    the other side), so the result is the reference's bit for bit. Runs of f32 into u8 / i8 go through
    `vector_quantize.quantize_run` (by the reciprocal, and by division wherever the two could round apart), the
    rest here."""
    na, nc, nb = x.shape
    chunks = (nb + QUANTIZE_CHUNK - 1) // QUANTIZE_CHUNK
    for t in prange(na * nc * chunks):
        ac = t // chunks
        j0 = (t - ac * chunks) * QUANTIZE_CHUNK
        j1 = min(nb, j0 + QUANTIZE_CHUNK)
        a = ac // nc
        c = ac - a * nc
        s = scale[c]
        z = np.float64(zp[c])
        xr = x[a, c, j0:j1]
        o = out[a, c, j0:j1]
        done = quantize_run(xr, o, np.float32(np.float32(1.0) / s), np.float32(s), np.float32(zp[c]), np.float32(lo),
                            np.float32(hi))
        for j in range(done, j1 - j0):
            q = np.float64(np.rint(xr[j] / s)) + z
            q = z if q != q else q
            q = lo if q < lo else q
            o[j] = hi if q > hi else q


@twin
def dequantize(x, scale, zp, out):  # type: ignore[no-untyped-def]
    """out[a, c, b] = float32(int32(x[a, c, b]) - zp[c]) * scale[c] on [A, C, B] arrays."""
    na, nc, nb = x.shape
    for t in prange(na * nc):
        a = t // nc
        c = t - a * nc
        s = scale[c]
        z = np.int32(zp[c])
        xr = x[a, c]
        o = out[a, c]
        for j in range(nb):
            o[j] = np.float32(np.int32(xr[j]) - z) * s


@subkernel
def pack_row_panels(x, m0, m1, mr, ap):  # type: ignore[no-untyped-def]
    """Rows m0..m1 of x (all K columns) as transposed panels of mr rows, ap[p][k][i]; rows past m1 are zeros."""
    k_all = x.shape[1]
    for mp in range((m1 - m0 + mr - 1) // mr):
        base = mp * k_all * mr
        for i in range(mr):
            r = m0 + mp * mr + i
            if r < m1:
                xr = x[r]
                for kk in range(k_all):
                    ap[base + kk * mr + i] = xr[kk]
            else:
                for kk in range(k_all):
                    ap[base + kk * mr + i] = 0.0
