"""The block-sparse (BSR) GEMM kernel against numpy's dense product of the same pruned weights."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from tensorsmith.backends.numba.bsr_gemm import balanced_groups, bsr_from_dense, bsr_schedule, run_bsr
from tensorsmith.backends.numba.sparse_ukernels import HOST_ISAS

from .sparse_check import EPILOGUE_CASES, block_pruned, epilogue_reference

pytestmark = pytest.mark.skipif(not HOST_ISAS, reason="sparse kernels need AVX2 + FMA")

BLOCKS = [(4, 4), (8, 8), (16, 16), (32, 32), (64, 64), (8, 32), (32, 8)]
DENSITIES = [0.0, 0.05, 0.3, 1.0]
ISAS = [isa.name for isa in HOST_ISAS]
RTOL, ATOL = 1e-4, 1e-4  # float reassociation over K <= 300


def _check(x: np.ndarray, w: np.ndarray, block: tuple[int, int], isa: str, threads: int) -> None:
    bsr = bsr_from_dense(w, block, isa=isa)
    assert_allclose(run_bsr(x, bsr, threads=threads), x @ w.T, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"{b[0]}x{b[1]}")
def test_bsr_matches_dense(block: tuple[int, int], density: float, isa: str) -> None:
    rng = np.random.default_rng(hash((block, density)) % 2**32)
    m, n, k = 37, 150, 135  # ragged against every block and tile
    w = block_pruned(rng, n, k, block, density)
    x = rng.standard_normal((m, k)).astype(np.float32)
    for threads in (1, 2):
        _check(x, w, block, isa, threads)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [1, 2, 5, 13, 300])
def test_bsr_row_counts(m: int, isa: str) -> None:
    rng = np.random.default_rng(m)
    w = block_pruned(rng, 96, 200, (16, 8), 0.3)
    _check(rng.standard_normal((m, 200)).astype(np.float32), w, (16, 8), isa, 2)


def test_bsr_empty_block_rows_and_columns() -> None:
    rng = np.random.default_rng(1)
    w = block_pruned(rng, 128, 96, (16, 16), 0.6)
    w[16:64] = 0  # three empty block rows
    w[:, 32:48] = 0  # an empty block column
    bsr = bsr_from_dense(w, (16, 16))
    assert np.any(np.diff(bsr.indptr) == 0)
    x = rng.standard_normal((20, 96)).astype(np.float32)
    assert_allclose(run_bsr(x, bsr, threads=2), x @ w.T, rtol=RTOL, atol=ATOL)


def test_bsr_all_zero_weight_gives_zeros() -> None:
    w = np.zeros((40, 70), np.float32)
    bsr = bsr_from_dense(w, (8, 8))
    assert bsr.indices.shape[0] == 0 and bsr.kidx.shape[0] == 0
    out = np.full((9, 40), np.nan, np.float32)
    assert_array_equal(run_bsr(np.ones((9, 70), np.float32), bsr, out=out), np.zeros((9, 40), np.float32))


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"{b[0]}x{b[1]}")
def test_bsr_round_trip(block: tuple[int, int]) -> None:
    rng = np.random.default_rng(7)
    w = block_pruned(rng, 75, 61, block, 0.4)
    bsr = bsr_from_dense(w, block)
    assert_array_equal(bsr.to_dense(), w)
    assert_array_equal(bsr.blocks_to_dense(), w)
    assert bsr.blocks.shape[1:] == block
    nbr = -(-75 // block[0])
    assert bsr.indptr.shape == (nbr + 1,) and bsr.indptr[-1] == bsr.indices.shape[0]


@pytest.mark.parametrize("case", list(EPILOGUE_CASES))
def test_bsr_epilogue_stages(case: str) -> None:
    rng = np.random.default_rng(3)
    m, n, k = 29, 100, 64
    w = block_pruned(rng, n, k, (32, 32), 0.5)
    x = rng.standard_normal((m, k)).astype(np.float32)
    stages = EPILOGUE_CASES[case]
    vecs = rng.uniform(0.5, 1.5, (max(1, len(stages)), n)).astype(np.float32)
    res = rng.standard_normal((m, n)).astype(np.float32)
    want = epilogue_reference(x, w, stages, vecs, res)
    for threads in (1, 2):
        got = run_bsr(x, bsr_from_dense(w, (32, 32)), threads=threads, stages=np.array(stages, np.int64),
                      vecs=vecs, res=res)
        assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_balanced_groups_split_by_nonzeros() -> None:
    pptr = np.concatenate([[0], np.cumsum([1000, 0, 0, 0, 0, 0, 0, 1000])]).astype(np.int64)
    groups = balanced_groups(pptr, 2)
    assert groups[0] == 0 and groups[-1] == 8 and groups.shape[0] == 3
    work = [pptr[b] - pptr[a] for a, b in zip(groups[:-1], groups[1:])]
    assert work == [1000, 1000]


def test_schedule_scratch_covers_items() -> None:
    bsr = bsr_from_dense(block_pruned(np.random.default_rng(0), 256, 512, (32, 32), 0.2), (32, 32))
    s = bsr_schedule(bsr, 100, threads=2)
    mr = bsr.config.mr
    per = -(-s.tm // mr) * mr * 512 + mr * bsr.np_
    assert s.scratch_floats == -(-100 // s.tm) * s.items * per


@pytest.mark.parametrize(("w", "block", "match"), [
    (np.zeros((4, 4, 4)), (4, 4), "fc.w: a BSR weight must be 2-D"),
    (np.zeros((8, 8)), (0, 4), "fc.w: block 0x4"),
    (np.zeros((8, 8), np.int8), (4, 4), "fc.w: a BSR weight must be floating point"),
])
def test_bsr_errors_name_the_weight(w: np.ndarray, block: tuple[int, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bsr_from_dense(w, block, name="fc.w")


def test_bsr_x_columns_must_match() -> None:
    bsr = bsr_from_dense(np.ones((8, 8), np.float32), (4, 4), name="fc.w")
    with pytest.raises(ValueError, match="fc.w: x has 9 columns"):
        run_bsr(np.ones((2, 9), np.float32), bsr)
