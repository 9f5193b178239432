"""The block-sparse int8 GEMM on every micro-kernel family this host executes: bit for bit the dense int8 GEMM.

Both kernels accumulate exact i32 products and share the dequantization, epilogue and requantization code, so
the block-sparse result must equal the dense one on the same path family exactly, for any shape, block,
density (empty panels, all-zero weights included), epilogue and thread count.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from tensorsmith.backends.numba import int8_gemm as ig
from tensorsmith.backends.numba.bsr_int8 import (
    SPARSE_PATH,
    TILES,
    bsr_int8_from_dense,
    bsr_int8_schedule,
    run_bsr_int8,
    tile_for_block,
)
from tensorsmith.backends.numba.cpu_features import best_int8_path, int8_paths
from tensorsmith.backends.numba.epilogue import Epilogue, Stage, StageKind
from tensorsmith.backends.numba.int8_ukernel import WEIGHT_RANGE

FAMILIES = tuple(sorted({SPARSE_PATH[p] for p in int8_paths()}))
"""Micro-kernel families this host executes (an AMX host runs the avx512vnni one for sparse weights)."""
NATIVE = SPARSE_PATH.get(best_int8_path() or "", "")
"""The family `compile` runs here: its drivers are tested on one and two threads."""
pytestmark = pytest.mark.skipif(not FAMILIES, reason="this host executes no int8 path")
RNG = np.random.default_rng(11)
BLOCKS = ((4, 4), (8, 8), (16, 16), (32, 32), (64, 64), (8, 32), (32, 4), (5, 7))


def thread_counts(family: str, tile: int) -> tuple[int, ...]:
    """Threads to test register tile `tile` of `family` with: 1 and 2 on the native family's first tile, else 1.

    A driver's serial and parallel twins are one source that differs only in the outermost loop, and the
    split over threads (`bsr_int8_schedule`) does not depend on the tile, so it is tested on one driver the
    runtime runs and every family's tiles on their serial twin (each parallel driver costs about 12 s of
    compilation, one per family and register tile).
    """
    return (1, 2) if family == NATIVE and tile == 0 else (1,)


def block_pruned(family: str, n: int, k: int, block: tuple[int, int], density: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Random s8 weights [N, K] in the family's range with whole bh x bw blocks zeroed (edges ragged)."""
    bh, bw = block
    lo, hi = WEIGHT_RANGE[family]
    keep = rng.random((-(-n // bh), -(-k // bw))) < density
    w = rng.integers(lo, hi + 1, (n, k)).astype(np.int8)
    return w * np.repeat(np.repeat(keep, bh, 0), bw, 1)[:n, :k].astype(np.int8)


def _dense(xq: np.ndarray, sx: np.ndarray, zp: np.ndarray, w: np.ndarray, sw: np.ndarray, family: str,
           **kw: object) -> np.ndarray:
    return ig.int8_gemm_dequant(xq, sx, zp, ig.pack_int8_weights(w, sw, family), family, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=st.integers(1, 70), n=st.integers(1, 150), k=st.integers(1, 200), block=st.sampled_from(BLOCKS),
       density=st.sampled_from((0.0, 0.05, 0.3, 0.7, 1.0)), two_threads=st.booleans(), seed=st.integers(0, 2**16))
def test_equals_the_dense_int8_gemm(family: str, m: int, n: int, k: int, block: tuple[int, int], density: float,
                                    two_threads: bool, seed: int) -> None:
    threads = thread_counts(family, tile_for_block(family, block[0]))[-1] if two_threads else 1
    rng = np.random.default_rng(seed)
    w = block_pruned(family, n, k, block, density, rng)
    xq, sx, zp = ig.quantize_dynamic(rng.standard_normal((m, k)).astype(np.float32))
    sw = rng.uniform(0.001, 0.1, n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    bsr = bsr_int8_from_dense(w, block, family, sw)
    assert_array_equal(bsr.to_dense(), w)
    got = run_bsr_int8(xq, sx, zp, bsr, bias, threads=threads)
    assert_array_equal(got.view(np.int32), _dense(xq, sx, zp, w, sw, family, bias=bias).view(np.int32))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("tile", [0, 1, 2])
def test_every_register_tile_with_epilogue_and_requantization(family: str, tile: int) -> None:
    """Each tile of the family (full row blocks, 4-, 2- and 1-row remainders), the fused epilogue and requantize."""
    if tile >= len(TILES[family]):
        pytest.skip(f"{family} has {len(TILES[family])} register tiles")
    nr = TILES[family][tile].nr
    block = (nr, 8)
    m, n, k = 2 * TILES[family][tile].mr + 7, 3 * nr + 5, 300
    w = block_pruned(family, n, k, block, 0.3, RNG)
    bsr = bsr_int8_from_dense(w, block, family, 0.02)
    assert bsr.tile == tile and bsr.nr == nr
    xq, sx, zp = ig.quantize_dynamic(RNG.standard_normal((m, k)).astype(np.float32))
    vecs = RNG.standard_normal((2, n)).astype(np.float32)
    res = RNG.standard_normal((m, n)).astype(np.float32)
    epi = Epilogue(n, [Stage(StageKind.ADD, vecs[0]), Stage(StageKind.MUL, vecs[1]), Stage(StageKind.RESIDUAL),
                       Stage(StageKind.GELU)])
    kw = {"stages": epi.codes(), "vecs": epi.vectors(), "params": epi.params(), "res": res}
    want = _dense(xq, sx, zp, w, bsr.scales, family, **kw)
    s_out = RNG.uniform(0.002, 0.02, n).astype(np.float32)
    zp_out = RNG.integers(0, 30, n).astype(np.int32)
    want_q = _dense(xq, sx, zp, w, bsr.scales, family, requant=(s_out, zp_out, np.dtype(np.uint8)))
    for threads in thread_counts(family, tile):
        assert_array_equal(run_bsr_int8(xq, sx, zp, bsr, threads=threads, **kw), want)  # type: ignore[arg-type]
        q = run_bsr_int8(xq, sx, zp, bsr, threads=threads, requant=(s_out, zp_out, np.dtype(np.uint8)))
        assert q.dtype == np.uint8
        assert_array_equal(q, want_q)


@pytest.mark.parametrize("family", FAMILIES)
def test_packing_keeps_only_groups_with_a_nonzero(family: str) -> None:
    w = np.zeros((70, 96), np.int8)
    w[3, 5] = 1  # one nonzero: one group of 4 k in the first panel
    w[69, 95] = -1
    bsr = bsr_int8_from_dense(w, (4, 4), family)
    assert bsr.gidx.tolist() == [1, 23]
    assert bsr.pptr[0] == 0 and bsr.pptr[1] == 1 and bsr.pptr[-1] == 2
    assert bsr.data.shape == (2, bsr.nr, 4)
    assert bsr.colsum[3] == 1 and bsr.colsum[69] == -1 and bsr.colsum.sum() == 0
    assert bsr.group_density == pytest.approx(2 / ((bsr.pptr.shape[0] - 1) * 24))
    assert_array_equal(bsr.to_dense(), w)


@pytest.mark.parametrize("family", FAMILIES)
def test_tile_follows_the_block_height(family: str) -> None:
    widths = [s.nr for s in TILES[family]]
    for bh in (4, 8, 16, 32, 64, 48, 7):
        nr = widths[tile_for_block(family, bh)]
        assert bh % nr == 0 or nr == min(widths), (bh, nr)
        assert all(bh % wider != 0 for wider in widths if wider > nr), (bh, nr)


def test_schedule_splits_panels_for_threads() -> None:
    family = FAMILIES[0]
    w = block_pruned(family, 768, 3072, (32, 32), 0.1, RNG)
    bsr = bsr_int8_from_dense(w, (32, 32), family)
    serial = bsr_int8_schedule(bsr, 128, 1)
    assert serial.groups.tolist() == [0, bsr.pptr.shape[0] - 1] and serial.tm == 128 - 128 % TILES[family][1].mr
    par = bsr_int8_schedule(bsr, 128, 2)
    assert par.groups.shape[0] - 1 >= 2
    work = np.diff(bsr.pptr[par.groups])
    assert work.max() <= 1.5 * work.mean()


@pytest.mark.parametrize("family", FAMILIES)
def test_bad_operands_are_refused(family: str) -> None:
    with pytest.raises(ValueError, match="2-D int8 array"):
        bsr_int8_from_dense(np.zeros((4, 4), np.float32), (4, 4), family, name="fc.weight")
    with pytest.raises(ValueError, match="unknown int8 GEMM path 'sse'"):
        bsr_int8_from_dense(np.zeros((4, 4), np.int8), (4, 4), "sse")
    with pytest.raises(ValueError, match=r"fc\.weight: weight scales must have shape \(4,\)"):
        bsr_int8_from_dense(np.zeros((4, 4), np.int8), (4, 4), family, np.ones(3), name="fc.weight")
    bsr = bsr_int8_from_dense(np.ones((4, 6), np.int8), (4, 4), family, name="fc.weight")
    with pytest.raises(ValueError, match=r"fc\.weight: block-sparse int8 activations must be C-contiguous uint8 "
                                         r"\[M, 8\] \(K = 6 padded\)"):
        run_bsr_int8(np.zeros((2, 6), np.uint8), np.ones(2, np.float32), np.zeros(2, np.int32), bsr)


@pytest.mark.parametrize("family", [f for f in FAMILIES if WEIGHT_RANGE[f][1] < 127])
def test_weights_outside_the_range_of_the_family_are_refused(family: str) -> None:
    with pytest.raises(ValueError, match=rf"int8 path '{family}' computes exactly only weights in \[-64, 63\]"):
        bsr_int8_from_dense(np.full((4, 4), 100, np.int8), (4, 4), family)
