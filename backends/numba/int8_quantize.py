"""Dynamic activation quantization: f32 [M, K] -> u8 [M, Kp] with scales and zero points found at run time.

The arithmetic is ONNX Runtime's DynamicQuantizeLinear, in float32, per row or for the whole tensor:
lo = min(0, min x), hi = max(0, max x); scale = (hi - lo) / 255, or 1 when hi == lo (all zeros);
zero_point = round(clamp(0 - lo / scale, 0, 255)); q = clamp(round(x / scale) + zero_point, 0, 255).
Rounding is half to even (np.rint), saturation clamps to [0, 255]; the result is the true division's
(the kernels are compiled without fast-math; `vector_quantize` multiplies by the reciprocal and divides
again wherever the two could round apart).
The range is that of the finite values (NaN and infinities left out); NaN quantizes to the zero point and
infinities saturate to 0 or 255. Columns K..Kp (padding to the micro-kernel's K multiple) are written 0.
Scales (f32) and zero points (i32) are always per row: the per-tensor kernel repeats its one pair.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import helper, twin
from .k_epilogue import rows_as_flat
from .mathfn import is_finite_bits, key_value, order_key
from .vector_quantize import quantize_run, range_run

QMIN, QMAX = 0, 255


@helper(fastmath=False)
def qparams(lo, hi):  # type: ignore[no-untyped-def]
    """(scale, zero point) of the range [min(lo, 0), max(hi, 0)] in float32, as DynamicQuantizeLinear."""
    lo = min(lo, np.float32(0.0))
    hi = max(hi, np.float32(0.0))
    scale = np.float32(1.0) if hi == lo else np.float32((hi - lo) / np.float32(QMAX - QMIN))
    zp = np.float32(QMIN) - np.float32(lo / scale)
    zp = min(max(zp, np.float32(QMIN)), np.float32(QMAX))
    return scale, np.int32(np.rint(zp))


@helper(fastmath=False)
def row_range(row):  # type: ignore[no-untyped-def]
    """(min(0, min row), max(0, max row)) in float32, over the finite values (NaN and infinities left out).

    Whole vectors go through `vector_quantize.range_run` (full vector width), the rest is reduced over
    `order_key`s: integer min / max vectorize without fast-math, where float ones do not.
    """
    lo_v, hi_v, done = range_run(row)
    lo = order_key(lo_v)
    hi = order_key(hi_v)
    for j in range(done, row.shape[0]):
        v = row[j]
        key = order_key(v) if is_finite_bits(v) else np.int32(0)  # +0.0 for NaN and infinities
        lo = min(lo, key)
        hi = max(hi, key)
    return key_value(lo), key_value(hi)


@helper(fastmath=False)
def quantize_row(row, q, scale, zp):  # type: ignore[no-untyped-def]
    """q[:K] = clamp(rint(row / scale) + zp, 0, 255), NaN to zp (infinities saturate); q[K:] = 0.

    Whole vectors go through `vector_quantize.quantize_run` (by the reciprocal, and by division wherever the two
    could round apart: the division's result, 1.4x faster), the rest here."""
    k = row.shape[0]
    fz = np.float32(zp)
    done = quantize_run(row, q, np.float32(np.float32(1.0) / scale), scale, fz, np.float32(QMIN), np.float32(QMAX))
    for j in range(done, k):
        v = np.float32(np.rint(np.float32(row[j] / scale))) + fz
        v = fz if v != v else v
        q[j] = np.uint8(min(max(v, np.float32(QMIN)), np.float32(QMAX)))
    for j in range(k, q.shape[0]):
        q[j] = 0


@twin(fastmath=False)
def quantize_rows(x, xq, scale, zp):  # type: ignore[no-untyped-def]
    """Per-row dynamic quantization of x [M, K] f32 into xq [M, Kp] u8, scale [M] f32, zp [M] i32."""
    for r in prange(x.shape[0]):
        lo, hi = row_range(x[r])
        s, z = qparams(lo, hi)
        scale[r] = s
        zp[r] = z
        quantize_row(x[r], xq[r], s, z)


@helper(fastmath=False)
def joint_qparams(los, his):  # type: ignore[no-untyped-def]
    """`qparams` of the union of the ranges [los[i], his[i]] (a tensor's parts, ranged apart)."""
    lo = np.float32(0.0)
    hi = np.float32(0.0)
    for i in range(los.shape[0]):
        lo = min(lo, los[i])
        hi = max(hi, his[i])
    return qparams(lo, hi)


TENSOR_CHUNK = 4096
"""Values per work item of a per-tensor quantization without padding: the tensor is one run, whatever its rows
(an NCHW activation's rows are its 8-32 pixels wide lines, each too short for a whole vector pass)."""


@twin(fastmath=False)
def quantize_tensor(x, xq, scale, zp):  # type: ignore[no-untyped-def]
    """Per-tensor dynamic quantization of x [M, K] f32 into xq [M, Kp] u8; scale/zp [M] repeat one pair.

    Where Kp == K and both are C-contiguous the tensor is quantized as one flat run in TENSOR_CHUNK pieces; else
    row by row (padding columns written 0)."""
    m = x.shape[0]
    ok_x, flat_x = rows_as_flat(x, 0, m)
    ok_q, flat_q = rows_as_flat(xq, 0, m)
    if ok_x and ok_q and x.shape[1] == xq.shape[1]:
        n = flat_x.shape[0]
        chunks = (n + TENSOR_CHUNK - 1) // TENSOR_CHUNK
        los = np.empty(chunks, np.float32)  # np.empty, not np.zeros: no parallel region of its own
        his = np.empty(chunks, np.float32)
        for c in prange(chunks):
            los[c], his[c] = row_range(flat_x[c * TENSOR_CHUNK:min(n, (c + 1) * TENSOR_CHUNK)])
        s, z = joint_qparams(los, his)
        for r in range(m):  # a loop, not a slice assignment (which would be a parallel region)
            scale[r] = s
            zp[r] = z
        for c in prange(chunks):
            j0 = c * TENSOR_CHUNK
            j1 = min(n, j0 + TENSOR_CHUNK)
            quantize_row(flat_x[j0:j1], flat_q[j0:j1], s, z)
        return
    los = np.empty(m, np.float32)
    his = np.empty(m, np.float32)
    for r in prange(m):
        los[r], his[r] = row_range(x[r])
    s, z = joint_qparams(los, his)
    for r in prange(m):
        scale[r] = s
        zp[r] = z
        quantize_row(x[r], xq[r], s, z)
