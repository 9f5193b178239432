"""The packed fp32 GEMM driver: rows read in place (small tiles of exact row groups) or packed, both twins."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.backends.numba import k_microkernel
from tensorsmith.backends.numba.int8_gemm import NO_PARAMS
from tensorsmith.backends.numba.jit import EMPTY_F32
from tensorsmith.backends.numba.k_gemm_packed import (
    IN_PLACE_COLUMNS,
    IN_PLACE_ROWS,
    LINE_FLOATS,
    NO_REGISTER_EPILOGUE,
    gemm_packed,
    pack_weights,
    prefetch_plan,
    scratch_per_tile,
)
from tensorsmith.backends.numba.k_microkernel import MR, NR, exact_rows
from tensorsmith.backends.numba.rules_dense import packed_tiles
from tensorsmith.backends.numba.tiling import ROW_SPLIT_MIN_ROWS

pytestmark = pytest.mark.skipif(not k_microkernel.AVAILABLE, reason="no FMA: GEMMs go through BLAS")


def _product(x: np.ndarray, w: np.ndarray, parallel: bool, threads: int = 2, rows: bool = False) -> np.ndarray:
    """gemm_packed's twin on x @ w.T, tiled as the lowering tiles it (split by rows or panels), over an output full
    of NaN."""
    m, n = x.shape[0], w.shape[0]
    bp = pack_weights(w)
    tm, tnp = packed_tiles(m, bp.shape[0], threads, parallel, rows)
    scratch = np.full(-(-m // tm) * -(-bp.shape[0] // tnp) * scratch_per_tile(tm), np.nan, np.float32)
    out = np.full((m, n), np.nan, np.float32)
    gemm_packed.pick(parallel)(x, bp, out, tm, tnp, scratch, np.zeros(0, np.int64), EMPTY_F32, NO_PARAMS, EMPTY_F32,
                               *NO_REGISTER_EPILOGUE)
    return out


def _reads_in_place(m: int, columns: int) -> bool:
    """Whether a tile of m rows and `columns` columns reads them in place: few rows or few columns, every row
    group of an exact micro-kernel height."""
    return (m <= IN_PLACE_ROWS or columns <= IN_PLACE_COLUMNS) and exact_rows(m - (-(-m // MR) - 1) * MR)


@pytest.mark.parametrize("m", range(1, IN_PLACE_ROWS + 3))
@pytest.mark.parametrize("parallel", [False, True])
def test_every_row_count_up_to_past_the_in_place_limit(m: int, parallel: bool) -> None:
    """Each row count, read in place or packed, over two K blocks and a ragged last panel of columns."""
    rng = np.random.default_rng(m)
    k, n = k_microkernel.KC + 44, 2 * NR + 13
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    np.testing.assert_allclose(_product(x, w, parallel), x.astype(np.float64) @ w.T.astype(np.float64),
                               rtol=1e-4, atol=1e-3)


def test_both_ways_of_reading_rows_are_exercised() -> None:
    """Row counts of both kinds exist below the row limit, and past it the columns decide."""
    kinds = {_reads_in_place(m, 10 * IN_PLACE_COLUMNS) for m in range(1, IN_PLACE_ROWS + 1)}
    assert kinds == {True, False}
    assert _reads_in_place(1, 10 * IN_PLACE_COLUMNS) and _reads_in_place(MR + MR // 3, 10 * IN_PLACE_COLUMNS)
    assert not _reads_in_place(4 * MR + 1, IN_PLACE_COLUMNS + NR) and _reads_in_place(4 * MR + 1, IN_PLACE_COLUMNS)


@pytest.mark.parametrize("m", [3 * MR + MR // 3, 5 * MR + 1, 4 * MR + 2])
@pytest.mark.parametrize("n", [IN_PLACE_COLUMNS - 7, IN_PLACE_COLUMNS + NR + 5])
@pytest.mark.parametrize("parallel", [False, True])
def test_many_rows_in_place_by_k_blocks_or_packed(m: int, n: int, parallel: bool) -> None:
    """Past the row limit: few columns read the rows in place K block by K block, many columns pack them."""
    rng = np.random.default_rng(m + n)
    k = 2 * k_microkernel.KC + 9
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    np.testing.assert_allclose(_product(x, w, parallel), x.astype(np.float64) @ w.T.astype(np.float64),
                               rtol=1e-4, atol=2e-3)


@pytest.mark.parametrize("parallel", [False, True])
def test_rows_of_a_strided_view_are_packed(parallel: bool) -> None:
    """A non-contiguous x (every other row of a matrix) is packed, never read with the wrong row stride."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal((2 * MR, 300), dtype=np.float32)
    x = base[::2]
    w = rng.standard_normal((70, 300), dtype=np.float32)
    assert not x.flags.c_contiguous and _reads_in_place(x.shape[0], 70)
    np.testing.assert_allclose(_product(x, w, parallel), x.astype(np.float64) @ w.T.astype(np.float64),
                               rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("kc", [1, 7, 64, k_microkernel.KC])
@pytest.mark.parametrize("nmp", [1, 2, 3, 11])
def test_the_row_groups_prefetch_every_line_of_the_next_block(kc: int, nmp: int) -> None:
    """Between them the row groups of a block ask for the first nmp * kc cache lines of the next block of weights
    (kc x NR floats; all of them where there are no more), one line per k; with no next block each repeats a line
    of its own."""
    nxt, own = 10_000 * LINE_FLOATS, 7
    lines: set[int] = set()
    for mp in range(nmp):
        off, step = prefetch_plan(nxt, own, mp, nmp, kc)
        if step == 0:
            assert off == own
            continue
        assert step == LINE_FLOATS and (off - nxt) % LINE_FLOATS == 0
        lines.update((off + k * step - nxt) // LINE_FLOATS for k in range(kc))
    assert set(range(min(-(-kc * NR // LINE_FLOATS), nmp * kc))) <= lines
    assert all(prefetch_plan(-1, own, mp, nmp, kc) == (own, 0) for mp in range(nmp))


@pytest.mark.parametrize("m", [2 * ROW_SPLIT_MIN_ROWS, 2 * ROW_SPLIT_MIN_ROWS + 3, 200, 256])
@pytest.mark.parametrize("n", [IN_PLACE_COLUMNS - 7, IN_PLACE_COLUMNS + NR + 5])
def test_products_split_by_rows_between_threads(m: int, n: int) -> None:
    """Split by rows (`tiling.split_rows`), each thread takes half the rows and every panel (its rows read in place
    or packed, the last row group ragged)."""
    rng = np.random.default_rng(m * n)
    k = k_microkernel.KC + 31
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    panels = -(-n // NR)
    assert packed_tiles(m, panels, 2, True, rows=True) == (-(-m // 2), panels)
    assert packed_tiles(m, panels, 2, True) == (m, -(-panels // 2))
    np.testing.assert_allclose(_product(x, w, True, rows=True), x.astype(np.float64) @ w.T.astype(np.float64),
                               rtol=1e-4, atol=2e-3)
