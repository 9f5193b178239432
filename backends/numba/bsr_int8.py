"""Block-sparse int8 GEMM: y = epilogue(dequant(x_q @ W_q^T)) for a pruned s8 weight W_q [N, K], u8 activations.

`bsr_int8_from_dense(w_q, block, path)` packs W_q at compile time into panels of NR output channels (NR:
the widest tile of the path that divides the block height, else the narrowest, so that a panel never
spans more block rows than it must). A panel keeps only the K groups of 4 (the micro-kernels' K step)
that hold a nonzero in any of its rows: `gidx` lists them (group index over Kp / 4), `data` holds their
weights as [T, NR, 4] (the dense kernels' panel layout, without the zero groups), `pptr` where each
panel's groups start. Pruned blocks of width >= 4 drop whole groups, so the work is the block density.

`bsr_int8_dequant` runs per (row block, group of panels) work item, panels grouped by their group count
(`bsr_gemm.balanced_groups`); each panel's accumulators come from gathering micro-kernels
(`int8_ukernel.make_gather_ukernel`: the activation word of each kept group is read through `gidx`,
activations stay in place), K cut in chunks whose weights stay in L1, then the same dequantization,
fused epilogue and requantization as the dense int8 GEMM (int8_drivers), so that the two agree bit for
bit. The sparse kernels run vector dot products (vpdpbusd on zmm, or on ymm for avxvnni; vpmaddubsw on
avx512bw / avx2): on an AMX host they take the avx512vnni micro-kernels (AMX tiles need 64 contiguous K bytes per row).
"""

# ruff: noqa: F821

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import prange

from .bsr_gemm import balanced_groups
from .cpu_features import check_int8_path
from .int8_drivers import dequant_block, requant_tile
from .int8_gemm import NO_PARAMS, NO_STAGES, padded_k, requant_operands, weight_zero_point_terms
from .int8_ukernel import FULL_S8, K_GROUP, MADDUBS_S8, WEIGHT_RANGE, UkernelShape, make_gather_ukernel
from .jit import EMPTY_F32, Twin, cdiv, specialized, twin
from .k_epilogue import epi_tile

L1_WEIGHT_CHUNK = 16384
"""Bytes of packed weights one K chunk of a panel holds (it stays in L1 while the rows pass over it)."""
A_BLOCK_BYTES = 512 * 1024
"""Row blocks are sized so that their activation rows (rows x Kp bytes) fit in this much of L2."""
MAX_TILE_ROWS = 256
"""Rows of one work item at most."""
SPARSE_PATH = {"amx": "avx512vnni", "avx512vnni": "avx512vnni", "avxvnni": "avxvnni", "avx512bw": "avx512bw",
               "avx2": "avx2"}
"""The micro-kernel family the block-sparse kernel runs for each int8 GEMM path."""
TILES: dict[str, tuple[UkernelShape, ...]] = {
    "avx512vnni": (UkernelShape(16, 6, 4, "vpdpbusd", FULL_S8), UkernelShape(16, 8, 2, "vpdpbusd", FULL_S8),
                   UkernelShape(16, 8, 1, "vpdpbusd", FULL_S8)),
    "avxvnni": (UkernelShape(8, 6, 2, "vpdpbusd", FULL_S8), UkernelShape(8, 8, 1, "vpdpbusd", FULL_S8)),
    "avx512bw": (UkernelShape(16, 4, 4, "pmaddubsw", MADDUBS_S8), UkernelShape(16, 8, 2, "pmaddubsw", MADDUBS_S8),
                 UkernelShape(16, 8, 1, "pmaddubsw", MADDUBS_S8)),
    "avx2": (UkernelShape(8, 4, 2, "pmaddubsw", MADDUBS_S8), UkernelShape(8, 8, 1, "pmaddubsw", MADDUBS_S8)),
}
"""Register tiles per micro-kernel family, widest panel first. Measured on 128x768x3072 (one thread, AVX-512 VNNI):
rows x vectors of 6x4, 8x2 and 8x1 run the gathered products at 0.95-1.0x, 1.0x and 0.75x the dense 6x4 kernel's
rate; 12x2, 12x1 and 24x1 (every zmm an accumulator) ran at 0.4-0.5x it, and are not used."""
ROW_COUNTS = (4, 2, 1)
"""Row counts of the micro-kernels below a full MR."""


def bsr_int8_driver(xq, sx, zpx, gidx, pptr, wdata, colsum, rsum, wzp, sw, bias, out,  # type: ignore[no-untyped-def]
                    groups, tm, scratch, stages, vecs, params, res, q_out, s_out, zp_out):
    """out [M, N] f32 = epilogue(sx * sw * (xq @ W^T - zpx * colsum - rsum * wzp) + bias) for W in gathered panels
    (rsum, wzp: a weight zero point's term, empty when none, see `dequant_block`); q_out = requant(out) if it has
    rows. Work items: (row block of tm rows, panels groups[g]..groups[g + 1])."""
    m_all = xq.shape[0]
    kp = xq.shape[1]
    n_all = out.shape[1]
    ng = groups.shape[0] - 1
    gm = (m_all + tm - 1) // tm
    per = tm * NR
    for t in prange(gm * ng):
        i = t // ng
        g = t - i * ng
        m0 = i * tm
        m1 = min(m_all, m0 + tm)
        acc = scratch[t * per:(t + 1) * per]
        for p in range(groups[g], groups[g + 1]):
            t0 = pptr[p]
            t1 = pptr[p + 1]
            if t1 == t0:
                acc[:(m1 - m0) * NR] = 0
            for c0 in range(t0, t1, KCG):
                kg = min(KCG, t1 - c0)
                more = c0 != t0
                boff = c0 * NR * 4
                r = m0
                while r + MR <= m1:
                    UK_FULL(kg, gidx, c0, xq, r * kp, kp, wdata, boff, acc, (r - m0) * NR, NR, more)
                    r += MR
                while r + 4 <= m1:
                    UK_FOUR(kg, gidx, c0, xq, r * kp, kp, wdata, boff, acc, (r - m0) * NR, NR, more)
                    r += 4
                while r + 2 <= m1:
                    UK_TWO(kg, gidx, c0, xq, r * kp, kp, wdata, boff, acc, (r - m0) * NR, NR, more)
                    r += 2
                if r < m1:
                    UK_ONE(kg, gidx, c0, xq, r * kp, kp, wdata, boff, acc, (r - m0) * NR, NR, more)
            dequant_block(acc, NR, m0, m1, p * NR, min(NR, n_all - p * NR), sx, zpx, colsum, rsum, wzp, sw, bias,
                          out)
        c0 = groups[g] * NR
        c1 = min(n_all, groups[g + 1] * NR)
        if c1 > c0:
            if stages.shape[0] > 0:
                epi_tile(out, m0, m1, c0, c1, stages, vecs, params, res)
            if q_out.shape[0] > 0:
                requant_tile(out, m0, m1, c0, c1, s_out, zp_out, q_out)


@dataclass(frozen=True)
class SparseInt8Kernel:
    """The block-sparse int8 driver of one register tile (serial/parallel twins) and its sizes."""

    family: str
    tile: int
    """Index of the register tile in TILES[family]."""
    driver: Twin
    mr: int
    nr: int


def _build(family: str, tile: int) -> SparseInt8Kernel:
    shape = TILES[family][tile]
    tag = f"{family}_{shape.mr}x{shape.nr}"
    uks = {rows: make_gather_ukernel(shape, rows, f"i8gather_{tag}_{rows}") for rows in {shape.mr, *ROW_COUNTS}}
    fn = specialized(bsr_int8_driver, tag, MR=shape.mr, NR=shape.nr, KCG=L1_WEIGHT_CHUNK // (shape.nr * K_GROUP),
                     UK_FULL=uks[shape.mr], UK_FOUR=uks[4], UK_TWO=uks[2], UK_ONE=uks[1])
    return SparseInt8Kernel(family, tile, twin(fn, fastmath=False), shape.mr, shape.nr)


_KERNELS = {(family, i): _build(family, i) for family, tiles in TILES.items() for i in range(len(tiles))}


def sparse_int8_kernel(path: str, tile: int) -> SparseInt8Kernel:
    """The block-sparse kernel for int8 path `path` (amx runs avx512vnni's) and register tile `tile`."""
    if path not in SPARSE_PATH:
        raise ValueError(f"unknown int8 GEMM path {path!r}; known: {', '.join(SPARSE_PATH)}")
    family = SPARSE_PATH[path]
    check_int8_path(family)
    return _KERNELS[(family, tile)]


def tile_for_block(path: str, bh: int) -> int:
    """The register tile for blocks of height bh: the widest panel dividing bh, else the narrowest."""
    tiles = TILES[SPARSE_PATH[path]]
    return next((i for i, s in enumerate(tiles) if bh % s.nr == 0), len(tiles) - 1)


@dataclass(frozen=True)
class BSRInt8Weight:
    """A pruned s8 weight [N, K] as panels of kept K groups, with per-channel scales and column sums."""

    name: str
    path: str
    tile: int
    shape: tuple[int, int]
    block: tuple[int, int]
    pptr: np.ndarray
    """i64 [panels + 1]: panel p's groups are gidx[pptr[p]:pptr[p + 1]]."""
    gidx: np.ndarray
    """i32 [T]: K group (over Kp / 4) of each kept group."""
    data: np.ndarray
    """s8 [T, NR, 4]: the weights of each kept group, NR output channels by 4 k."""
    colsum: np.ndarray
    """i32 [N]: sum over k of the weights (for the activation zero point)."""
    scales: np.ndarray
    """f32 [N]: per-channel weight scales."""

    @property
    def nr(self) -> int:
        """Output channels per panel."""
        return int(self.data.shape[1])

    @property
    def kp(self) -> int:
        """K padded to the micro-kernels' multiple (the activations' column count)."""
        return padded_k(self.shape[1])

    @property
    def group_density(self) -> float:
        """Fraction of the (panel, K group) pairs kept: the share of the dense work the kernel does."""
        total = (self.pptr.shape[0] - 1) * (self.kp // K_GROUP)
        return self.gidx.shape[0] / max(total, 1)

    def to_dense(self) -> np.ndarray:
        """W_q [N, K] rebuilt from the panels the kernel reads."""
        n, k = self.shape
        panels = self.pptr.shape[0] - 1
        out = np.zeros((panels, self.kp // K_GROUP, self.nr, K_GROUP), np.int8)
        owner = np.repeat(np.arange(panels), np.diff(self.pptr))
        out[owner, self.gidx] = self.data
        return out.transpose(0, 2, 1, 3).reshape(panels * self.nr, self.kp)[:n, :k]


def bsr_int8_from_dense(w_q: np.ndarray, block: tuple[int, int], path: str, scales: np.ndarray | float = 1.0,
                        name: str = "weight") -> BSRInt8Weight:
    """Pack a pruned s8 weight [N, K] (blocks of `block` = (bh, bw)) for `path`'s block-sparse int8 kernel."""
    w_q = np.asarray(w_q)
    if w_q.dtype != np.int8 or w_q.ndim != 2:
        raise ValueError(f"{name}: a block-sparse int8 weight must be a 2-D int8 array [N, K], got "
                         f"{w_q.dtype} {w_q.shape}")
    if path not in SPARSE_PATH:
        raise ValueError(f"{name}: unknown int8 GEMM path {path!r}; known: {', '.join(SPARSE_PATH)}")
    lo, hi = WEIGHT_RANGE[SPARSE_PATH[path]]
    if w_q.size and (int(w_q.min()) < lo or int(w_q.max()) > hi):
        raise ValueError(f"{name}: int8 path {path!r} computes exactly only weights in [{lo}, {hi}]; these span "
                         f"[{int(w_q.min())}, {int(w_q.max())}] (quantize them to that range)")
    n, k = w_q.shape
    sc = np.asarray(scales, np.float32).reshape(-1)
    if sc.size == 1:
        sc = np.full(n, sc[0] if sc.size else 1.0, np.float32)
    if sc.shape != (n,):
        raise ValueError(f"{name}: weight scales must have shape ({n},) or be one value, got {np.shape(scales)}")
    tile = tile_for_block(path, int(block[0]))
    nr = TILES[SPARSE_PATH[path]][tile].nr
    kp = padded_k(k)
    panels = cdiv(n, nr)
    full = np.zeros((panels * nr, kp), np.int8)
    full[:n, :k] = w_q
    by_group = full.reshape(panels, nr, kp // K_GROUP, K_GROUP).transpose(0, 2, 1, 3)
    kept = by_group.any(axis=(2, 3))
    pptr = np.concatenate([[0], np.cumsum(kept.sum(axis=1))]).astype(np.int64)
    data = np.ascontiguousarray(by_group[kept])
    colsum = w_q.astype(np.int32).sum(axis=1, dtype=np.int32)
    return BSRInt8Weight(name, path, tile, (n, k), (int(block[0]), int(block[1])), pptr,
                         np.nonzero(kept)[1].astype(np.int32), data, colsum, np.ascontiguousarray(sc))


@dataclass(frozen=True)
class BSRInt8Schedule:
    """How one call is split: row blocks of `tm` rows, panel `groups`, i32 scratch elements."""

    tm: int
    groups: np.ndarray
    scratch: int


def bsr_int8_schedule(w: BSRInt8Weight, m: int, threads: int = 1) -> BSRInt8Schedule:
    """Row block and panel groups for M rows on `threads` threads (1: the serial twin's schedule)."""
    mr = TILES[SPARSE_PATH[w.path]][w.tile].mr
    tm_cap = max(mr, min(MAX_TILE_ROWS, A_BLOCK_BYTES // max(w.kp, 1)) // mr * mr)
    tm = max(1, min(m, tm_cap))
    gm = cdiv(max(m, 1), tm)
    parts = 1 if threads <= 1 else max(1, cdiv(2 * threads, gm))
    panels = w.pptr.shape[0] - 1
    groups = balanced_groups(w.pptr, min(parts, max(panels, 1)))
    return BSRInt8Schedule(tm, groups, max(1, gm * (groups.shape[0] - 1) * tm * w.nr))


def run_bsr_int8(xq: np.ndarray, sx: np.ndarray, zpx: np.ndarray, w: BSRInt8Weight, bias: np.ndarray | None = None,
                 threads: int = 1, stages: np.ndarray = NO_STAGES, vecs: np.ndarray = EMPTY_F32,
                 params: np.ndarray = NO_PARAMS, res: np.ndarray = EMPTY_F32,
                 requant: tuple[np.ndarray, np.ndarray, np.dtype[Any]] | None = None,
                 weight_zero_point: np.ndarray | None = None) -> np.ndarray:
    """`int8_gemm.int8_gemm_dequant` on a block-sparse weight (schedule and scratch made here; tests, benchmarks)."""
    kernel = sparse_int8_kernel(w.path, w.tile)
    if xq.dtype != np.uint8 or xq.ndim != 2 or not xq.flags.c_contiguous or xq.shape[1] != w.kp:
        raise ValueError(f"{w.name}: block-sparse int8 activations must be C-contiguous uint8 [M, {w.kp}] "
                         f"(K = {w.shape[1]} padded), got {xq.dtype} {xq.shape}")
    m, n = xq.shape[0], w.shape[0]
    sched = bsr_int8_schedule(w, m, threads)
    out = np.empty((m, n), np.float32)
    b = np.zeros(n, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    q, s_out, zp_out = requant_operands(requant, m, n)
    scratch = np.empty(sched.scratch, np.int32)
    zpx = np.ascontiguousarray(zpx, np.int32)
    rsum, wzp = weight_zero_point_terms(xq, w.shape[1], zpx, weight_zero_point, n, threads > 1)
    kernel.driver.call(threads > 1, xq, np.ascontiguousarray(sx, np.float32), zpx,
                       w.gidx, w.pptr, w.data, w.colsum, rsum, wzp, w.scales, b, out, sched.groups, sched.tm,
                       scratch, stages, vecs, params, res, q, s_out, zp_out, writes=(out, scratch, q))
    return out if requant is None else q
