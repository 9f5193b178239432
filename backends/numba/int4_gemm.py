"""The weight-only GEMM for few rows: f32 x [M, K] times int4 (or int8) weights with group scales, f32 out.

For M up to `MAX_ROWS` a linear layer is memory-bound: it reads every weight once per call and does
little arithmetic with it. With int4 weights packed two to a byte (`pack_int4_weights`, once, at
compile time) the kernel reads 8x fewer weight bytes than the fp32 GEMV and unpacks the nibbles in
registers: there is no dequantized copy of the weights. Each output channel n has one f32 scale per
group of G consecutive k (G = K: per channel); the kernel accumulates sum_k x[m, k] * q[n, k] per
group in f32, multiplies by the group's scale and sums the groups, then runs the fused epilogue
(bias, activation, ... : `k_epilogue.epi_tile`) on each block of output columns. Work items are
blocks of output columns (parallel over columns). int8 weights (one byte each, `pack_int8_rows`)
run on the same kernel design. Layout of the packed bytes: k_wgemm.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..aligned import aligned_copy
from .epilogue import PARAMS_PER_STAGE
from .jit import EMPTY_F32, Twin, cdiv, num_threads, specialized, twin
from .k_int4_vec import col_dot8_1, col_dot8_2, col_dot8_4, col_dot_1, col_dot_2, col_dot_4, vector_groups
from .k_wgemm import bytes_i4, bytes_i8, dot_i8, full_i4, tail_i4, wgemm, wgemm_vec

MAX_ROWS = 12
"""Rows (M) up to which a linear with int4 / int8 weight-only weights may run on this kernel (`max_rows` says
for which weights); above it the product is compute-bound and the weights are dequantized to f32 at compile
time for the fp32 GEMM."""
CACHED_WEIGHT_BYTES = 1 << 20
"""fp32 weight bytes below which the fp32 GEMM reads its weight from cache, so the weight-only GEMM never pays."""
DRAM_WEIGHT_BYTES = 48 << 20
"""fp32 weight bytes from which the fp32 GEMM streams its weight from memory at every row count up to MAX_ROWS."""
CACHE_ROWS = 4
"""Rows up to which the weight-only GEMM pays for weights between the two sizes above."""


def max_rows(n: int, k: int) -> int:
    """Rows up to which the weight-only GEMM beats the fp32 GEMM for a weight of N x K (0: never).

    Measured (bench/int4_gemm.py, one thread, AVX-512 host, groups of 32 / 128, x our fp32): 256 x 512
    (0.5 MiB in fp32) 0.78x / 0.98x at M = 1; 384 x 1536 2.1x / 2.4x at M = 1, 1.15x / 1.29x at M = 4, 0.66x /
    0.75x at M = 8; 2048 x 2048 (16 MiB) 2.9x / 3.6x at M = 1, 1.3x / 1.5x at M = 4, 0.57x / 0.67x at M = 8;
    4096 x 4096 (64 MiB) 1.8x / 2.1x at M = 8 and 1.3x / 2.9x at M = 12 (0.87x / 0.93x at 16).
    """
    fp32_bytes = 4 * n * k
    if fp32_bytes < CACHED_WEIGHT_BYTES:
        return 0
    return CACHE_ROWS if fp32_bytes < DRAM_WEIGHT_BYTES else MAX_ROWS


PER_CHANNEL_GROUP = 256
"""The group length a per-channel (or per-tensor) weight is packed in: its scale repeated per group."""
COLUMN_BLOCK = 16
"""Output columns per work item are a multiple of this (a block's epilogue runs while it is in cache)."""
NO_STAGES = np.zeros(0, np.int64)
NO_PARAMS = np.zeros((1, PARAMS_PER_STAGE), np.float32)


@dataclass(frozen=True)
class PackedWeights:
    """Weights [N, K] packed for the weight-only GEMM: `data` one byte row per output channel, `scales`
    f32 [N, ceil(K / group_size)]."""

    bits: int
    data: np.ndarray
    scales: np.ndarray
    group_size: int
    n: int
    k: int


def _group_scales(scales: np.ndarray, n: int, k: int, group_size: int) -> np.ndarray:
    """Scales as f32 [N, ceil(K / group_size)]: a grid as is, or one per channel / one value broadcast."""
    groups = cdiv(k, group_size)
    s = np.asarray(scales, np.float32)
    if s.ndim == 2:
        if s.shape != (n, groups):
            raise ValueError(f"weights [{n}, {k}] in groups of {group_size} need scales of shape ({n}, {groups}), "
                             f"got {s.shape}")
        return aligned_copy(s)
    if s.size not in (1, n):
        raise ValueError(f"per-channel scales of weights [{n}, {k}] must have {n} values (or one), got {s.shape}")
    return aligned_copy(np.broadcast_to(s.reshape(-1, 1), (n, groups)))


def _check(w_q: np.ndarray, group_size: int, lo: int, hi: int, what: str) -> tuple[int, int, int]:
    """(N, K, group size) of 2-D integer weights in [lo, hi]; group_size 0 means per channel."""
    if w_q.ndim != 2 or w_q.dtype.kind not in "iu":
        raise ValueError(f"{what} weights must be a 2-D integer array [N, K], got {w_q.dtype} {w_q.shape}")
    n, k = w_q.shape
    if w_q.size and (int(w_q.min()) < lo or int(w_q.max()) > hi):
        raise ValueError(f"{what} weights must lie in [{lo}, {hi}]; these span [{int(w_q.min())}, {int(w_q.max())}]")
    g = group_size or min(2 * cdiv(max(k, 1), 2), PER_CHANNEL_GROUP)  # even: a short K is one short group
    if g < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    return n, k, g


def pack_int4_weights(w_q: np.ndarray, scales: np.ndarray, group_size: int = 0) -> PackedWeights:
    """Pack int4 weights [N, K] (integers in [-8, 7]) two per byte in groups of `group_size` along K (k_wgemm.py's
    layout), with scales f32 [N, ceil(K / group_size)], or per channel [N] / one value with group_size 0."""
    n, k, g = _check(np.asarray(w_q), group_size, -8, 7, "int4")
    if g % 2:
        raise ValueError(f"int4 groups must have an even length (two weights per byte), got group_size {g}")
    groups = cdiv(k, g)
    q = np.asarray(w_q).astype(np.int16) + 8  # 0..15
    cols: list[np.ndarray] = []
    for gi in range(groups):
        blk = q[:, gi * g:min(k, (gi + 1) * g)]
        h = cdiv(blk.shape[1], 2)
        hi = np.full((n, h), 8, np.int16)  # an odd group's last byte: high nibble 8, i.e. zero
        hi[:, :blk.shape[1] - h] = blk[:, h:]
        cols.append((blk[:, :h] | (hi << 4)).astype(np.uint8))
    data = aligned_copy(np.concatenate(cols, axis=1) if cols else np.zeros((n, 0), np.uint8))
    return PackedWeights(4, data, _group_scales(scales, n, k, g), g, n, k)


def pack_int8_rows(w_q: np.ndarray, scales: np.ndarray, group_size: int = 0) -> PackedWeights:
    """int8 weights [N, K] for the weight-only GEMM (one byte each), scales as in `pack_int4_weights`."""
    n, k, g = _check(np.asarray(w_q), group_size, -128, 127, "int8")
    return PackedWeights(8, aligned_copy(np.asarray(w_q, np.int8)), _group_scales(scales, n, k, g), g, n, k)


KERNELS: dict[int, Twin] = {
    4: twin(specialized(wgemm, "i4", GROUP_DOT=full_i4, TAIL_DOT=tail_i4, GROUP_BYTES=bytes_i4)),
    8: twin(specialized(wgemm, "i8", GROUP_DOT=dot_i8, TAIL_DOT=dot_i8, GROUP_BYTES=bytes_i8)),
}
"""The weight-only GEMM kernel per weight bits (serial/parallel twins), loops in Numba."""
VECTOR_KERNELS: dict[int, Twin] = {
    4: twin(specialized(wgemm_vec, "i4", COL_DOT_4=col_dot_4, COL_DOT_2=col_dot_2, COL_DOT_1=col_dot_1,
                        TAIL_DOT=tail_i4, GROUP_BYTES=bytes_i4)),
    8: twin(specialized(wgemm_vec, "i8", COL_DOT_4=col_dot8_4, COL_DOT_2=col_dot8_2, COL_DOT_1=col_dot8_1,
                        TAIL_DOT=dot_i8, GROUP_BYTES=bytes_i8)),
}
"""The kernels on the LLVM IR vector loop (k_int4_vec.py), for groups it supports (`vector_groups`)."""


def kernel_for(packed: PackedWeights) -> Twin:
    """The kernel that runs `packed`: the vector kernel where its groups allow, else the Numba loops."""
    fast = vector_groups(packed.group_size, packed.bits)
    return VECTOR_KERNELS[packed.bits] if fast else KERNELS[packed.bits]


def column_block(n: int, threads: int, parallel: bool) -> int:
    """Output columns per work item: about four items per thread, a multiple of COLUMN_BLOCK."""
    if not parallel or threads <= 1:
        return max(n, 1)
    return max(COLUMN_BLOCK, cdiv(cdiv(max(n, 1), 4 * threads), COLUMN_BLOCK) * COLUMN_BLOCK)


def kernel_name(packed: PackedWeights, per_channel: bool) -> str:
    """The kernel's label: 'gemm_w4g32' (int4, groups of 32) or 'gemm_w8c' (int8 per channel)."""
    return f"gemm_w{packed.bits}" + ("c" if per_channel else f"g{packed.group_size}")


def weight_gemm(x: np.ndarray, packed: PackedWeights, parallel: bool = False, stages: np.ndarray = NO_STAGES,
                vecs: np.ndarray = EMPTY_F32, params: np.ndarray = NO_PARAMS,
                res: np.ndarray = EMPTY_F32) -> np.ndarray:
    """epilogue(x [M, K] f32 @ W^T) as f32 [M, N], W the packed weights times their group scales.

    `stages`, `vecs`, `params`, `res`: the epilogue (`Epilogue.codes()`, `vectors()`, `params()`, the
    residual rows; see epilogue.py), e.g. a bias as an ADD stage.
    """
    x = np.ascontiguousarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] != packed.k:
        raise ValueError(f"weight-only GEMM: x must be f32 [M, {packed.k}], got {x.shape}")
    out = np.empty((x.shape[0], packed.n), np.float32)
    tn = column_block(packed.n, num_threads(), parallel)
    kernel_for(packed).call(parallel, x, packed.data, packed.scales, out, packed.group_size, tn, stages, vecs,
                            params, res, writes=(out,))
    return out
