"""The int8 GEMM: u8 activations x packed s8 weights -> i32, dequantized f32 or requantized u8/s8, per path.

Weights [N, K] s8 (a linear layer's W, y = x @ W^T) are packed once at compile time by
`pack_int8_weights(w_q, scales, path)` into panels of NR output columns,
data[panel, g, n, j] = w_q[panel*NR + n, 4g + j] (K padded with zeros to Kp, a multiple of 4; N
padded with zero columns to whole panels), with the per-channel scales and the column sums
colsum[n] = sum_k w_q[n, k] that the activation zero point needs:

    y[m, n] = s_x[m] * s_w[n] * (acc[m, n] - zp_x[m] * colsum[n]) + bias[n],  acc = x_q @ w_q^T.

A weight zero point t[n] (asymmetric weights) adds one term, - rsum[m] * t[n] with rsum[m] = sum_k (x_q[m, k] -
zp_x[m]) from a row-sum pass (`weight_zero_point_terms`); the packed weights stay as they are.

The avx2 and avx512bw paths are exact only for weights in [-64, 63] (`WEIGHT_RANGE`); packing
refuses weights outside the path's range. Activations are the full u8 range on every path.

Kernels (`int8_kernels(path)`, serial/parallel twins compiled per path, so that Numba's cache
keeps the paths apart): `gemm_i32` writes the raw accumulators; `gemm_dequant` writes f32 y and
then runs the fused epilogue (`k_epilogue.epi_tile`, see epilogue.py) on each output tile while it is in cache, and,
given a u8/s8 output, requantizes the tile: q = clamp(rint(y / s_out[n]) + zp_out[n]) (round half
to even, saturating to the output type's range). Both run an outer `prange` over output tiles of
tm rows x tnp panels; each tile is computed panel by panel, K blocked so that a weight block
(KC x NR bytes, 16 KiB) stays in L1 while every row of the tile passes over it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..aligned import aligned_copy
from .cpu_features import check_int8_path
from .epilogue import PARAMS_PER_STAGE
from .int8_amx import TILE_BLOCK_16, TILE_BLOCK_32, tiles_begin, tiles_end
from .int8_drivers import (
    acc_group,
    acc_panel,
    acc_panel_tiles,
    acc_rows,
    clear_rows,
    gemm_dequant,
    gemm_i32,
    no_tile_state,
    scratch_per_item,
)
from .int8_quantize import quantize_rows, quantize_tensor
from .int8_ukernel import K_GROUP, SHAPES, UKERNELS, WEIGHT_RANGE
from .jit import EMPTY_F32, Twin, cdiv, helper, num_threads, specialized, subkernel, twin
from .k_integer import row_sums_u8

L1_WEIGHT_BLOCK = 16384
"""Bytes of one K block of a weight panel (KC x NR): it stays in L1 while the tile's rows pass."""
MAX_TILE_ROWS = 256
"""Rows of one work item at most: its activation block stays in L2."""
NO_STAGES = np.zeros(0, np.int64)
NO_PARAMS = np.zeros((1, PARAMS_PER_STAGE), np.float32)
NO_QUANT_OUT = np.zeros((0, 0), np.uint8)
NO_WEIGHT_ZERO_POINT = np.zeros(0, np.int32)
"""The row sums and weight zero points of a product without a weight zero point (`dequant_block`)."""
"""A stand-in for the u8/s8 output of `gemm_dequant` when the f32 output is the result."""


def padded_k(k: int) -> int:
    """K rounded up to the micro-kernels' K multiple (the column count of quantized activations)."""
    return cdiv(k, K_GROUP) * K_GROUP


@dataclass(frozen=True)
class PackedInt8Weights:
    """s8 weights [N, K] packed for one path's micro-kernel, with per-channel scales and column sums."""

    path: str
    data: np.ndarray
    """s8 [panels, Kp / 4, NR, 4]."""
    colsum: np.ndarray
    """i32 [N]: sum over k of the unpacked weights."""
    scales: np.ndarray
    """f32 [N]: per-output-channel weight scales."""
    n: int
    k: int

    @property
    def kp(self) -> int:
        """K padded to the micro-kernel's multiple."""
        return self.data.shape[1] * K_GROUP


def pack_int8_weights(w_q: np.ndarray, scales: np.ndarray, path: str) -> PackedInt8Weights:
    """Pack s8 weights [N, K] with per-channel scales [N] (or one scale) for `path`'s micro-kernel."""
    if w_q.dtype != np.int8 or w_q.ndim != 2:
        raise ValueError(f"int8 weights must be a 2-D int8 array [N, K], got {w_q.dtype} {w_q.shape}")
    if path not in SHAPES:
        raise ValueError(f"unknown int8 GEMM path {path!r}; known: {', '.join(SHAPES)}")
    n, k = w_q.shape
    lo, hi = WEIGHT_RANGE[path]
    if w_q.size and (int(w_q.min()) < lo or int(w_q.max()) > hi):
        raise ValueError(f"int8 GEMM path {path!r} computes exactly only weights in [{lo}, {hi}]; these span "
                         f"[{int(w_q.min())}, {int(w_q.max())}] (quantize them to that range)")
    sc = np.broadcast_to(np.asarray(scales, np.float32).reshape(-1), (n,)) if np.size(scales) == 1 else \
        np.asarray(scales, np.float32)
    if sc.shape != (n,):
        raise ValueError(f"int8 weight scales must have shape ({n},) or be one value, got {np.shape(scales)}")
    nr, kp = SHAPES[path].nr, padded_k(k)
    panels = cdiv(n, nr)
    full = np.zeros((panels * nr, kp), np.int8)
    full[:n, :k] = w_q
    data = aligned_copy(full.reshape(panels, nr, kp // K_GROUP, K_GROUP).transpose(0, 2, 1, 3))
    colsum = w_q.astype(np.int32).sum(axis=1, dtype=np.int32)
    return PackedInt8Weights(path, data, colsum, np.ascontiguousarray(sc), n, k)


class Int8Kernels(NamedTuple):
    """The int8 GEMM kernels of one path (serial/parallel twins) and its micro-kernel sizes."""

    path: str
    gemm_i32: Twin
    gemm_dequant: Twin
    mr: int
    nr: int


def _build(path: str) -> Int8Kernels:
    shape = SHAPES[path]
    kernels = UKERNELS[path]
    sizes = {"MR": shape.mr, "NR": shape.nr, "KC": L1_WEIGHT_BLOCK // shape.nr,
             "EPILOGUE_PANELS": shape.epilogue_panels}
    rows = helper(specialized(acc_rows, path, UK_FULL=kernels[shape.mr], UK_FOUR=kernels[4], UK_TWO=kernels[2],
                              UK_ONE=kernels[1], **sizes))
    clear = helper(specialized(clear_rows, path, **sizes))
    if shape.tile_rows:
        panel = subkernel(specialized(acc_panel_tiles, path, ACC_ROWS=rows, CLEAR_ROWS=clear, TILE_32=TILE_BLOCK_32,
                                      TILE_16=TILE_BLOCK_16, **sizes))
        hooks = {"TILES_BEGIN": tiles_begin, "TILES_END": tiles_end}
    else:
        panel = subkernel(specialized(acc_panel, path, ACC_ROWS=rows, CLEAR_ROWS=clear, **sizes))
        hooks = {"TILES_BEGIN": no_tile_state, "TILES_END": no_tile_state}
    hooks |= {"acc_group": subkernel(specialized(acc_group, path, acc_panel=panel, **sizes)),
              "scratch_per_item": helper(specialized(scratch_per_item, path, **sizes))}
    return Int8Kernels(path, twin(specialized(gemm_i32, path, **hooks, **sizes)),
                       twin(specialized(gemm_dequant, path, **hooks, **sizes), fastmath=False),
                       shape.mr, shape.nr)


_KERNELS = {path: _build(path) for path in SHAPES}


def int8_kernels(path: str) -> Int8Kernels:
    """The int8 GEMM kernels of `path`; Int8PathError when this host cannot execute it."""
    check_int8_path(path)
    return _KERNELS[path]


def int8_tiles(m: int, n: int, path: str, threads: int, parallel: bool, rows: bool = False) -> tuple[int, int]:
    """(rows, NR-panels) per work item: one tile per thread where the shape allows, at most 256 rows. Up to 256 rows
    the threads split the panels, or with `rows` the rows (`tiling.split_rows`); beyond, always the rows."""
    shape = SHAPES[path]
    panels = max(cdiv(n, shape.nr), 1)
    if not parallel or threads <= 1:
        return max(1, min(m, MAX_TILE_ROWS)), panels
    if rows and m <= MAX_TILE_ROWS:
        return cdiv(m, threads), panels
    if m <= MAX_TILE_ROWS and panels >= threads:
        return max(m, 1), cdiv(panels, threads)
    rows = shape.block_rows
    return max(1, min(cdiv(cdiv(m, threads), rows) * rows, MAX_TILE_ROWS)), panels


def scratch_size(m: int, n: int, path: str, tm: int, tnp: int) -> int:
    """i32 elements of scratch a GEMM of m x n in tiles (tm, tnp) needs (per tile the accumulators of a group of
    panels, `int8_drivers.scratch_per_item`)."""
    shape = SHAPES[path]
    items = max(cdiv(max(m, 1), tm) * cdiv(max(cdiv(n, shape.nr), 1), tnp), 1)
    return items * tm * shape.nr * min(tnp, shape.epilogue_panels)


def quantize_dynamic(x: np.ndarray, per_row: bool = True, parallel: bool = False) \
        -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x_q u8 [M, Kp], scale f32 [M], zero point i32 [M]) of x f32 [M, K], per row or per tensor."""
    if x.ndim != 2 or x.dtype != np.float32:
        raise ValueError(f"dynamic quantization takes a 2-D float32 array, got {x.dtype} {x.shape}")
    m, k = x.shape
    xq = np.empty((m, padded_k(k)), np.uint8)
    scale, zp = np.empty(m, np.float32), np.empty(m, np.int32)
    (quantize_rows if per_row else quantize_tensor).call(parallel, np.ascontiguousarray(x), xq, scale, zp,
                                                         writes=(xq, scale, zp))
    return xq, scale, zp


def _check_operands(xq: np.ndarray, packed: PackedInt8Weights, path: str) -> Int8Kernels:
    kernels = int8_kernels(path)
    if packed.path != path:
        raise ValueError(f"weights packed for path {packed.path!r} cannot run on path {path!r}")
    if xq.dtype != np.uint8 or xq.ndim != 2 or not xq.flags.c_contiguous or xq.shape[1] != packed.kp:
        raise ValueError(f"int8 GEMM activations must be C-contiguous uint8 [M, {packed.kp}] (K = {packed.k} "
                         f"padded), got {xq.dtype} {xq.shape}")
    return kernels


def _tiling(m: int, packed: PackedInt8Weights, parallel: bool) -> tuple[int, int, np.ndarray]:
    tm, tnp = int8_tiles(m, packed.n, packed.path, num_threads(), parallel)
    return tm, tnp, np.empty(scratch_size(m, packed.n, packed.path, tm, tnp), np.int32)


def int8_gemm_i32(xq: np.ndarray, packed: PackedInt8Weights, path: str, parallel: bool = False) -> np.ndarray:
    """acc [M, N] i32 = xq [M, Kp] u8 @ w_q^T on `path` (the weights packed for that path)."""
    kernels = _check_operands(xq, packed, path)
    tm, tnp, scratch = _tiling(xq.shape[0], packed, parallel)
    out = np.empty((xq.shape[0], packed.n), np.int32)
    kernels.gemm_i32.call(parallel, xq, packed.data, out, tm, tnp, scratch, writes=(out, scratch))
    return out


def requant_operands(requant: tuple[np.ndarray, np.ndarray, np.dtype[Any]] | None, m: int, n: int) \
        -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q_out [M, N], s_out [N], zp_out [N]) for a kernel's requantization, or the stand-ins when `requant` is None."""
    if requant is None:
        return NO_QUANT_OUT, np.zeros(0, np.float32), np.zeros(0, np.int32)
    return (np.empty((m, n), requant[2]),
            np.ascontiguousarray(np.broadcast_to(np.asarray(requant[0], np.float32), (n,))),
            np.ascontiguousarray(np.broadcast_to(np.asarray(requant[1], np.int32), (n,))))


def weight_zero_point_terms(xq: np.ndarray, k: int, zpx: np.ndarray, weight_zero_point: np.ndarray | None, n: int,
                            parallel: bool) -> tuple[np.ndarray, np.ndarray]:
    """(row sums of xq's first k columns less zpx, weight zero points [N]) for the GEMM drivers' `dequant_block`:
    both empty when there is no weight zero point."""
    if weight_zero_point is None:
        return NO_WEIGHT_ZERO_POINT, NO_WEIGHT_ZERO_POINT
    rsum = np.empty(xq.shape[0], np.int32)
    row_sums_u8.call(parallel, xq, k, zpx, rsum, writes=(rsum,))
    return rsum, np.ascontiguousarray(np.broadcast_to(np.asarray(weight_zero_point, np.int32), (n,)))


def int8_gemm_dequant(xq: np.ndarray, sx: np.ndarray, zpx: np.ndarray, packed: PackedInt8Weights, path: str,
                      bias: np.ndarray | None = None, parallel: bool = False, stages: np.ndarray = NO_STAGES,
                      vecs: np.ndarray = EMPTY_F32, params: np.ndarray = NO_PARAMS, res: np.ndarray = EMPTY_F32,
                      requant: tuple[np.ndarray, np.ndarray, np.dtype[Any]] | None = None,
                      weight_zero_point: np.ndarray | None = None) -> np.ndarray:
    """epilogue(sx * sw * ((xq - zpx) @ (w_q - weight_zero_point)^T) + bias) as f32 [M, N], or requantized.

    `stages`, `vecs`, `params`, `res` are the epilogue (`Epilogue.codes()`, `vectors()`, `params()` and the
    residual rows, see epilogue.py); `requant` = (scale [N], zero point [N],
    np.uint8 or np.int8) returns the requantized output instead of the f32 one; `weight_zero_point` [N] (i32,
    each in [-128, 127]) is subtracted from the packed weights' columns.
    """
    kernels = _check_operands(xq, packed, path)
    m, n = xq.shape[0], packed.n
    tm, tnp, scratch = _tiling(m, packed, parallel)
    out = np.empty((m, n), np.float32)
    b = np.zeros(n, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    q, s_out, zp_out = requant_operands(requant, m, n)
    zpx = np.ascontiguousarray(zpx, np.int32)
    rsum, wzp = weight_zero_point_terms(xq, packed.k, zpx, weight_zero_point, n, parallel)
    kernels.gemm_dequant.call(parallel, xq, np.ascontiguousarray(sx, np.float32), zpx,
                              packed.data, packed.colsum, rsum, wzp, packed.scales, b, out, tm, tnp, scratch,
                              stages, vecs, params, res, q, s_out, zp_out, writes=(out, scratch, q))
    return out if requant is None else q
