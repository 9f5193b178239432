"""Dynamic quantization by the reciprocal with a division where they could round apart: the division's bytes."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorsmith.backends.numba.int8_drivers import requant_tile
from tensorsmith.backends.numba.int8_quantize import quantize_row, row_range
from tensorsmith.backends.numba.k_microkernel import VW
from tensorsmith.backends.numba.vector_quantize import (
    MIN_SCALE,
    RANGE_LANES,
    make_finite_range,
    make_quantize_vectors,
    quantize_run,
)


@numba.njit
def _rows(x, q, scale, zp):  # type: ignore[no-untyped-def]
    for r in range(x.shape[0]):
        quantize_row(x[r], q[r], scale, zp)


@numba.njit
def _run(x, q, scale, zp):  # type: ignore[no-untyped-def]
    return quantize_run(x, q, np.float32(np.float32(1.0) / scale), scale, np.float32(zp), np.float32(0),
                        np.float32(255))


def _division(x: np.ndarray, scale: np.float32, zp: int, dtype: type = np.uint8) -> np.ndarray:
    """DynamicQuantizeLinear's bytes in numpy: a float32 true division, half to even, NaN to zp, saturated."""
    v = np.rint(x / scale).astype(np.float32) + np.float32(zp)
    info = np.iinfo(dtype)
    return np.clip(np.where(np.isnan(v), np.float32(zp), v), info.min, info.max).astype(dtype)


def _near_ties(rng: np.random.Generator, scale: np.float32, n: int) -> np.ndarray:
    """x = (m + 1/2) * scale and its float32 neighbours, for half-integers m + 1/2 up to +-1100 (both ways of
    rounding, and the saturation boundaries at 255.5 and beyond)."""
    m = rng.integers(-1100, 1100, n).astype(np.float32) + np.float32(0.5)
    x = (m * scale).astype(np.float32)
    step = rng.integers(-3, 4, n)
    for _ in range(3):
        up, down = np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))
        x = np.where(step > 0, up, np.where(step < 0, down, x))
        step = step - np.sign(step)
    return x.astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(log_scale=st.floats(-30, 30), zp=st.integers(0, 255), seed=st.integers(0, 2**31 - 1), n=st.integers(3, 300))
def test_equals_the_division_on_values_near_rounding_ties(log_scale: float, zp: int, seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    scale = np.float32(2.0 ** log_scale)
    x = np.concatenate([_near_ties(rng, scale, n), (rng.standard_normal(n) * 200 * scale).astype(np.float32)])
    x[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, scale * np.float32(255.5)]
    q = np.full((1, x.size + 5), 9, np.uint8)
    _rows(x[None], q, scale, np.int32(zp))
    np.testing.assert_array_equal(q[0, :x.size], _division(x, scale, zp))
    assert (q[0, x.size:] == 0).all()  # the padding columns


@pytest.mark.parametrize("k", [VW - 1, VW, 3 * VW + 5])
def test_whole_vectors_go_the_vector_way_and_the_tail_divides(k: int) -> None:
    rng = np.random.default_rng(k)
    scale = np.float32(0.05)
    x = _near_ties(rng, scale, k)
    q = np.zeros(k, np.uint8)
    assert _run(x, q, scale, 100) == k - k % VW
    q2 = np.zeros((1, k), np.uint8)
    _rows(x[None], q2, scale, np.int32(100))
    np.testing.assert_array_equal(q2[0], _division(x, scale, 100))


def test_a_subnormal_scale_and_a_strided_row_take_the_division() -> None:
    tiny = np.float32(MIN_SCALE / 4)
    x = (np.arange(2 * VW, dtype=np.float32) - VW) * tiny
    assert _run(x, np.zeros(x.size, np.uint8), tiny, 7) == 0
    q = np.zeros((1, x.size), np.uint8)
    _rows(x[None], q, tiny, np.int32(7))
    np.testing.assert_array_equal(q[0], _division(x, tiny, 7))
    wide = np.repeat(x, 2)[::2]  # a strided view: no vector path for it
    assert _run(wide, np.zeros(wide.size, np.uint8), np.float32(0.5), 7) == 0


QUANTIZE_8 = make_quantize_vectors(8)
"""The AVX2 width, which an AVX-512 host executes too."""


@numba.njit
def _run_8(x, q, scale, zp):  # type: ignore[no-untyped-def]
    n = x.shape[0] - x.shape[0] % 8
    QUANTIZE_8(x, q, n, np.float32(np.float32(1.0) / scale), scale, np.float32(zp), np.float32(0), np.float32(255))
    return n


@pytest.mark.parametrize("seed", range(4))
def test_the_8_wide_kernel_equals_the_division(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scale = np.float32(10.0 ** rng.uniform(-5, 3))
    x = _near_ties(rng, scale, 8 * 200)
    x[:4] = [np.nan, np.inf, -np.inf, -0.0]
    q = np.zeros(x.size, np.uint8)
    assert _run_8(x, q, scale, 31) == x.size
    np.testing.assert_array_equal(q, _division(x, scale, 31))


RANGE_8 = make_finite_range(8)


@numba.njit
def _row_range(x):  # type: ignore[no-untyped-def]
    return row_range(x)


@numba.njit
def _range_8(x, n):  # type: ignore[no-untyped-def]
    return RANGE_8(x, n)


def _finite_range(x: np.ndarray) -> tuple[float, float]:
    """numpy's (min(0, min), max(0, max)) over the finite values."""
    f = x[np.isfinite(x)]
    return float(min(0.0, f.min(initial=0.0))), float(max(0.0, f.max(initial=0.0)))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(0, 9 * RANGE_LANES * VW), specials=st.integers(0, 6),
       shift=st.floats(-1e3, 1e3))
def test_the_row_range_leaves_non_finite_values_out(seed: int, k: int, specials: int, shift: float) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(k) * 10 + shift).astype(np.float32)
    if k:
        x[rng.integers(0, k, specials)] = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32), specials)
    assert _row_range(x) == _finite_range(x)
    n = k - k % (RANGE_LANES * 8)
    assert _range_8(x, n) == _finite_range(x[:n])


VALUE_RANGE_8 = make_finite_range(8, skip_infinities=False)


@numba.njit
def _value_range_8(x, n):  # type: ignore[no-untyped-def]
    return VALUE_RANGE_8(x, n)


@pytest.mark.parametrize("width_8", [False, True])
def test_the_unselected_range_leaves_nan_out_in_every_lane_and_keeps_infinities(width_8: bool) -> None:
    n = 4 * RANGE_LANES * (8 if width_8 else VW)
    rng = np.random.default_rng(3)
    for lane in range(n):  # NaN first in its accumulator, last, and everywhere between
        x = rng.uniform(-2, 3, n).astype(np.float32)
        x[lane] = np.nan
        x[(lane + 7) % n] = np.float32(-1e30)
        got = _value_range_8(x, n) if width_8 else _row_range(x)
        assert got == _finite_range(x), lane
    x = np.full(n, np.nan, np.float32)
    assert _row_range(x) == (0.0, 0.0)
    x[5], x[9] = np.inf, -np.inf
    assert _value_range_8(x, n) == (-np.inf, np.inf)
    assert _row_range(x) == (0.0, 0.0)


@numba.njit
def _run_signed(x, q, scale, zp):  # type: ignore[no-untyped-def]
    return quantize_run(x, q, np.float32(np.float32(1.0) / scale), scale, np.float32(zp), np.float32(-128),
                        np.float32(127))


@pytest.mark.parametrize("zp", [-128, -5, 0, 127])
def test_signed_bytes_equal_the_division(zp: int) -> None:
    """s8 output (a static quantize's), bounds -128..127: the vector path writes the division's values."""
    rng = np.random.default_rng(zp + 500)
    scale = np.float32(0.0173)
    x = np.concatenate([np.array([np.nan, np.inf, -np.inf, 0.0], np.float32), _near_ties(rng, scale, 32 * VW - 4)])
    q = np.zeros(x.size, np.int8)
    assert _run_signed(x, q, scale, zp) == x.size
    np.testing.assert_array_equal(q, _division(x, scale, zp, np.int8))


@pytest.mark.parametrize(("rows", "cols", "c0", "c1"),
                         [(5, 16, 0, 16), (3, 70, 0, 70), (4, 96, 32, 64), (2, 40, 8, 37)])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_requantized_tiles_equal_the_division_per_column(rows: int, cols: int, c0: int, c1: int, dtype: type) -> None:
    """A GEMM output tile requantized with a scale and zero point per column (flat whole rows, or row by row for
    part of the columns): values at and next to every tie give the division's bytes."""
    rng = np.random.default_rng(rows * cols + c0)
    scales = (10.0 ** rng.uniform(-3, 1, cols)).astype(np.float32)
    info = np.iinfo(dtype)
    zps = rng.integers(info.min, info.max + 1, cols).astype(np.int32)
    m = rng.integers(-400, 400, (rows, cols)).astype(np.float32) + np.float32(0.5)
    y = (m * scales).astype(np.float32)
    y = np.where(rng.random(y.shape) < 0.3, np.nextafter(y, np.float32(np.inf)), y).astype(np.float32)
    y[0, c0] = np.nan
    q = np.full((rows, cols), 7, dtype)
    requant_tile(y, 0, rows, c0, c1, scales, zps, q)
    v = np.rint(y[:, c0:c1] / scales[c0:c1]).astype(np.float32) + zps[c0:c1].astype(np.float32)
    want = np.clip(np.where(np.isnan(v), zps[c0:c1].astype(np.float32), v), info.min, info.max).astype(dtype)
    np.testing.assert_array_equal(q[:, c0:c1], want)
    assert (q[:, :c0] == 7).all() and (q[:, c1:] == 7).all()
