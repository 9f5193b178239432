"""The tile epilogue (`epi_tile`, stage by stage over chunks of rows) equals `epi_row` applied row by row, bit for
bit, for every stage kind, tile shape and column window."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from tensorsmith.backends.numba import k_epilogue as k
from tensorsmith.backends.numba.k_epilogue import epi_row, epi_tile

ADD, MUL, DIV, RESIDUAL, RELU, CLIP = k.ADD, k.MUL, k.DIV, k.RESIDUAL, k.RELU, k.CLIP
GELU, GELU_TANH, SIGMOID, TANH = k.GELU, k.GELU_TANH, k.SIGMOID, k.TANH

STAGE_LISTS = [[ADD], [ADD, MUL, ADD, RELU], [ADD, RESIDUAL, CLIP], [ADD, GELU], [DIV, SIGMOID, TANH],
               [MUL, GELU_TANH, RESIDUAL]]
VECTOR = (ADD, MUL, DIV)


@numba.njit(cache=False)
def _tile(out, m0, m1, c0, c1, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    epi_tile(out, m0, m1, c0, c1, stages, vecs, params, res)


@numba.njit(cache=False)
def _rows(out, m0, m1, c0, c1, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    for r in range(m0, m1):
        row = out[r][c0:c1]
        epi_row(row, row, False, stages, vecs, params, c0, -1, res[min(r, res.shape[0] - 1)][c0:c1])


@pytest.mark.parametrize("stages", STAGE_LISTS, ids=["-".join(map(str, s)) for s in STAGE_LISTS])
@pytest.mark.parametrize(("m", "n", "window"), [(64, 10, (0, 10)), (300, 40, (0, 40)), (3, 3000, (0, 3000)),
                                               (2 * k.CHUNK_FLOATS // 24 + 5, 24, (0, 24)), (50, 70, (16, 50))])
def test_the_tile_epilogue_equals_the_row_epilogue_bit_for_bit(stages: list[int], m: int, n: int,
                                                               window: tuple[int, int]) -> None:
    rng = np.random.default_rng(m * n + len(stages))
    out = (rng.standard_normal((m, n)) * 3).astype(np.float32)
    vecs = (rng.standard_normal((sum(s in VECTOR for s in stages), n)) + 2).astype(np.float32)
    params = np.tile(np.array([[-1.5, 2.0]], np.float32), (len(stages), 1))
    res = rng.standard_normal((m, n)).astype(np.float32) if RESIDUAL in stages else np.zeros((1, 1), np.float32)
    codes = np.array(stages, np.int64)
    got, want = out.copy(), out.copy()
    c0, c1 = window
    _tile(got, 1, m, c0, c1, codes, vecs, params, res)  # row 0 and the columns outside the window stay
    _rows(want, 1, m, c0, c1, codes, vecs, params, res)
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(got[0], out[0]) and np.array_equal(got[:, :c0], out[:, :c0])
