"""The tile epilogue (`epi_tile`: whole rows of a C-contiguous output as one flat run, other tiles stage by stage
over chunks of rows) equals `epi_row` applied row by row, bit for bit, for every stage kind, tile shape and column
window; so does the requantization of a tile (`requant_tile`) equal numpy's."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from tensorsmith.backends.numba import k_epilogue as k
from tensorsmith.backends.numba.int8_drivers import requant_tile
from tensorsmith.backends.numba.jit import kernel_args
from tensorsmith.backends.numba.k_epilogue import epi_row, epi_tile

ADD, MUL, DIV, RESIDUAL, RELU, CLIP = k.ADD, k.MUL, k.DIV, k.RESIDUAL, k.RELU, k.CLIP
GELU, GELU_TANH, SIGMOID, TANH = k.GELU, k.GELU_TANH, k.SIGMOID, k.TANH

STAGE_LISTS = [[ADD], [ADD, MUL, ADD, RELU], [ADD, RESIDUAL, CLIP], [ADD, GELU], [DIV, SIGMOID, TANH],
               [MUL, GELU_TANH, RESIDUAL]]
VECTOR = (ADD, MUL, DIV)


@numba.njit(cache=False)
def _tile_kernel(out, m0, m1, c0, c1, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    epi_tile(out, m0, m1, c0, c1, stages, vecs, params, res)


@numba.njit(cache=False)
def _rows_kernel(out, m0, m1, c0, c1, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    for r in range(m0, m1):
        row = out[r][c0:c1]
        epi_row(row, row, False, stages, vecs, params, c0, np.int64(-1), res[min(r, res.shape[0] - 1)][c0:c1])


def _tile(out: np.ndarray, *args: object) -> None:
    """epi_tile on `out`, its operands read-only as kernels pass them (the compiled helpers are shared)."""
    _tile_kernel(*kernel_args((out, *args), writes=(out,)))


def _rows(out: np.ndarray, *args: object) -> None:
    """epi_row on each row of the window."""
    _rows_kernel(*kernel_args((out, *args), writes=(out,)))


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


@pytest.mark.parametrize("stages", STAGE_LISTS[1:3], ids=["-".join(map(str, s)) for s in STAGE_LISTS[1:3]])
@pytest.mark.parametrize("view", ["strided-output", "one-row-residual"])
def test_whole_rows_that_cannot_run_flat_run_row_by_row(stages: list[int], view: str) -> None:
    """An output whose rows are not one run (a column slice of a wider array), or a residual of one broadcast row,
    takes the row path, with the same result."""
    rng = np.random.default_rng(len(stages))
    m, n = 40, 12
    wide = (rng.standard_normal((m, n + 4)) * 3).astype(np.float32)
    vecs = (rng.standard_normal((sum(s in VECTOR for s in stages), n)) + 2).astype(np.float32)
    params = np.tile(np.array([[-1.5, 2.0]], np.float32), (len(stages), 1))
    res = rng.standard_normal((1 if view == "one-row-residual" else m, n)).astype(np.float32)
    codes = np.array(stages, np.int64)
    got = wide.copy()[:, :n] if view == "strided-output" else wide[:, :n].copy()
    want = np.ascontiguousarray(got)
    _tile(got, 0, m, 0, n, codes, vecs, params, res)
    _rows(want, 0, m, 0, n, codes, vecs, params, res)
    np.testing.assert_array_equal(got, want)


@numba.njit(cache=False, error_model="numpy")
def _requant_kernel(y, m0, m1, c0, c1, s_out, zp_out, q):  # type: ignore[no-untyped-def]
    requant_tile(y, m0, m1, c0, c1, s_out, zp_out, q)


def _requant(y: np.ndarray, m0: int, m1: int, c0: int, c1: int, s_out: np.ndarray, zp_out: np.ndarray,
             q: np.ndarray) -> None:
    """requant_tile of y (written by the GEMM, so writable) into q, the scales read-only as kernels pass them."""
    _requant_kernel(y, m0, m1, c0, c1, *kernel_args((s_out, zp_out), writes=()), q)


@pytest.mark.parametrize("qtype", [np.uint8, np.int8])
@pytest.mark.parametrize(("m", "n", "window"), [(300, 16, (0, 16)), (7, 700, (0, 700)), (30, 40, (8, 33))])
def test_requantizing_a_tile_rounds_half_to_even_saturates_and_maps_nan_to_the_zero_point(
        qtype: type, m: int, n: int, window: tuple[int, int]) -> None:
    rng = np.random.default_rng(m + n)
    y = (rng.standard_normal((m, n)) * 2).astype(np.float32)
    y[1, :4] = [0.5, 1.5, -2.5, np.nan]
    s_out = rng.uniform(0.005, 0.02, n).astype(np.float32)
    s_out[:4] = 1
    zp_out = rng.integers(0, 30, n).astype(np.int32)
    q = np.full((m, n), 7, qtype)
    c0, c1 = window
    _requant(y, 1, m, c0, c1, s_out, zp_out, q)
    info = np.iinfo(qtype)
    scaled = np.rint(y / s_out).astype(np.float32) + zp_out
    ref = np.clip(np.where(np.isnan(scaled), zp_out.astype(np.float32), scaled), info.min, info.max).astype(qtype)
    np.testing.assert_array_equal(q[1:, c0:c1], ref[1:, c0:c1])
    assert (q[0] == 7).all() and (q[:, :c0] == 7).all() and (q[:, c1:] == 7).all()
    if c0 == 0:
        assert list(q[1, :3]) == list(np.clip(np.array([0, 2, -2]) + zp_out[:3], info.min, info.max))
        assert q[1, 3] == zp_out[3]
    assert (q[1:, c0:c1] == info.max).any() and (q[1:, c0:c1] == info.min).any()


@numba.njit(cache=False)
def _channel_tile(t, j0, w, c0, stages, vecs, params, res, n, lo):  # type: ignore[no-untyped-def]
    k.epi_channel_rows(t, j0, w, c0, stages, vecs, params, res, n, lo)


@numba.njit(cache=False)
def _channel_rows(t, j0, w, c0, stages, vecs, params, res, n, lo):  # type: ignore[no-untyped-def]
    for r in range(t.shape[0]):
        row = t[r][j0:j0 + w]
        epi_row(row, row, False, stages, vecs, params, np.int64(0), c0 + r, res[n, c0 + r][lo:lo + w])


@pytest.mark.parametrize("stages", STAGE_LISTS, ids=["-".join(map(str, s)) for s in STAGE_LISTS])
@pytest.mark.parametrize(("rows", "cols", "j0", "w"), [(16, 320, 0, 320), (24, 96, 32, 40), (5, 33, 1, 31)])
def test_the_channel_row_epilogue_equals_the_row_epilogue_bit_for_bit(stages: list[int], rows: int, cols: int,
                                                                      j0: int, w: int) -> None:
    """Rows of the tile are channels c0.. (conv_pixels' C tile); the residual is read from image n at pixel lo."""
    rng = np.random.default_rng(rows * cols + len(stages))
    t = (rng.standard_normal((rows, cols)) * 3).astype(np.float32)
    c0, n, lo = 3, 1, 7
    vecs = (rng.standard_normal((sum(s in VECTOR for s in stages), c0 + rows)) + 2).astype(np.float32)
    params = np.tile(np.array([[-1.5, 2.0]], np.float32), (len(stages), 1))
    res = (rng.standard_normal((2, c0 + rows, lo + w)) if RESIDUAL in stages else np.zeros((2, c0 + rows, lo + w)))
    res = res.astype(np.float32)
    codes = np.array(stages, np.int64)
    got, want = t.copy(), t.copy()
    _channel_tile(*kernel_args((got, j0, w, c0, codes, vecs, params, res, n, lo), writes=(got,)))
    _channel_rows(*kernel_args((want, j0, w, c0, codes, vecs, params, res, n, lo), writes=(want,)))
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(got[:, :j0], t[:, :j0]) and np.array_equal(got[:, j0 + w:], t[:, j0 + w:])
    assert not np.array_equal(got[:, j0:j0 + w], t[:, j0:j0 + w])


def test_rows_as_flat_outside_kernels_matches_its_compiled_form() -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    ok, flat = k.rows_as_flat(a, 1, 3)
    assert ok and np.array_equal(flat, np.arange(4, 12, dtype=np.float32))
    ok, flat = k.rows_as_flat(a[:, ::2], 1, 3)
    assert not ok and flat.size == 0


def test_empty_tiles_leave_everything_as_it_was() -> None:
    out = np.ones((4, 6), np.float32)
    q = np.full((4, 6), 9, np.uint8)
    codes = np.array([ADD, RELU], np.int64)
    params, res = np.zeros((2, 2), np.float32), np.zeros((1, 1), np.float32)
    _tile(out, 2, 2, 0, 6, codes, np.ones((1, 6), np.float32), params, res)
    _requant(out, 0, 4, 3, 3, np.ones(6, np.float32), np.zeros(6, np.int32), q)
    assert (out == 1).all() and (q == 9).all()


@pytest.mark.parametrize(("codes", "fused"), [
    ([k.ADD, k.MUL, k.ADD, k.RELU], 4), ([k.ADD, k.RELU], 2), ([k.MUL, k.ADD], 2), ([k.ADD, k.CLIP], 2),
    ([k.ADD, k.MUL, k.ADD], 3), ([k.ADD], 0), ([k.RELU], 0), ([k.ADD, k.RESIDUAL, k.RELU], 0),
    ([k.ADD, k.MUL, k.ADD, k.MUL], 0), ([k.DIV, k.RELU], 0), ([k.ADD, k.GELU], 0), ([k.ADD, k.RELU, k.ADD], 0),
])
def test_which_channel_row_epilogues_run_in_one_pass(codes: list[int], fused: int) -> None:
    assert k.leading_affine(np.array(codes, np.int64)) == fused


def _stage_by_stage(t: np.ndarray, codes: list[int], vecs: np.ndarray, params: np.ndarray) -> np.ndarray:
    """numpy float32, one stage at a time, row r being channel r."""
    y = t.copy()
    for s, code in enumerate(codes):
        v = vecs[s][:, None]
        if code == k.ADD:
            y = y + v
        elif code == k.MUL:
            y = y * v
        elif code == k.RELU:
            y = np.where((y > 0) | np.isnan(y), y, np.float32(0))
        elif code == k.CLIP:
            y = np.minimum(np.maximum(y, params[s, 0]), params[s, 1])
    return y.astype(np.float32)


@pytest.mark.parametrize("codes", [[k.ADD, k.MUL, k.ADD, k.RELU], [k.MUL, k.ADD], [k.ADD, k.CLIP],
                                   [k.MUL, k.MUL, k.ADD, k.RELU], [k.ADD, k.RELU]])
def test_one_pass_channel_rows_equal_the_stages_one_by_one(codes: list[int]) -> None:
    """The one-pass epilogue of conv tiles (channel per row) against numpy's stage-by-stage float32, on a part of
    the tile's columns, with NaN, infinities and signed zeros among the values (a multiply-add may round once
    where two stages rounded twice: a few ulps)."""
    rng = np.random.default_rng(5)
    t = rng.standard_normal((7, 45)).astype(np.float32)
    t.flat[[0, 9, 17, 30]] = [np.nan, np.inf, -np.inf, -0.0]
    vecs = rng.uniform(-2, 2, (4, 9)).astype(np.float32)
    params = np.zeros((4, 2), np.float32)
    params[len(codes) - 1] = (-0.5, 0.75)
    stages = np.array(codes, np.int64)
    assert k.leading_affine(stages) == len(codes)
    got = t.copy()
    k.epi_channel_rows(got, 3, 40, 2, stages, vecs, params, np.zeros((1, 1, 1), np.float32), 0, 0)
    want = t.copy()
    want[:, 3:43] = _stage_by_stage(t[:, 3:43], codes, vecs[:, 2:9], params)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
