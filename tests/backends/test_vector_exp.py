"""The softmax's full-width vector exp (`vector_exp.softmax_exp`) against numpy, special values included, for
each way of building it that the host executes."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose
from tensorsmith.backends.numba.jit import kernel_args
from tensorsmith.backends.numba.k_microkernel import VW
from tensorsmith.backends.numba.vector_exp import make_softmax_exp

BUILDS = [False, True] if VW == 16 else [False]
"""vscalefps (True) needs AVX-512; the exponent-bits form (False) runs everywhere."""


def _rows_kernel(scalef: bool):  # type: ignore[no-untyped-def]
    exp = make_softmax_exp(scalef)

    @numba.njit(cache=False)
    def rows(x, scale, bias, m, total, count, n):  # type: ignore[no-untyped-def]
        for r in range(count):
            exp(x, r * n, scale, bias[r], m, 0, total, 0, n)

    return rows


def _special_rows(rows: int, n: int) -> np.ndarray:
    x = (np.random.default_rng(3).standard_normal((rows, n)) * 40).astype(np.float32)
    x[0, :8] = [np.nan, np.inf, -np.inf, 88.7, -87.4, -87.3, 0.0, -0.0]
    return x


def _want(s: np.ndarray, m: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        want = np.exp((s - m).astype(np.float64)).astype(np.float32)  # inf past float32's range
    return np.where(want < 2.0 ** -126, np.float32(0), want)  # results below the normal range flush to zero


@pytest.mark.parametrize("scalef", BUILDS)
def test_softmax_exp_matches_numpy_with_special_values(scalef: bool) -> None:
    rows, n = 5, 4 * VW
    x = _special_rows(rows, n)
    m = np.random.default_rng(4).uniform(-2, 2, n).astype(np.float32)
    m[:8] = 0
    total = np.full(n, 0.5, np.float32)
    got = x.copy()
    _rows_kernel(scalef)(got.reshape(-1), np.float32(1), np.zeros(rows, np.float32), *kernel_args((m,), writes=()),
                         total, rows, n)
    assert_allclose(got, _want(x, m), rtol=4e-7, atol=0)
    assert np.isnan(got[0, 0]) and got[0, 1] == np.inf and got[0, 2] == 0 and got[0, 4] == 0
    assert got[0, 5] > 0 and got[0, 6] == 1 and got[0, 7] == 1
    with np.errstate(invalid="ignore"):
        assert_allclose(total, 0.5 + got.astype(np.float64).sum(axis=0), rtol=1e-6)


@pytest.mark.parametrize("scalef", BUILDS)
def test_scale_and_bias_apply_before_the_max(scalef: bool) -> None:
    rows, n = 4, 2 * VW
    x = (np.random.default_rng(5).standard_normal((rows, n)) * 3).astype(np.float32)
    bias = np.array([0.0, -1.5, -np.inf, 2.0], np.float32)
    scale = np.float32(0.125)
    s = x * scale + bias[:, None]
    m = np.where(np.isfinite(s.max(axis=0)), s.max(axis=0), 0).astype(np.float32)
    got, total = x.copy(), np.zeros(n, np.float32)
    _rows_kernel(scalef)(got.reshape(-1), scale, bias, m, total, rows, n)
    assert_allclose(got, _want(s, m), rtol=1e-6, atol=0)
    assert (got[2] == 0).all()  # a key masked with -inf adds nothing


def test_both_builds_agree_bit_for_bit() -> None:
    if len(BUILDS) < 2:
        pytest.skip("vscalefps needs AVX-512")
    rows, n = 6, 8 * VW
    x = _special_rows(rows, n)
    x[1] = np.linspace(-100, 100, n, dtype=np.float32)
    out = []
    for scalef in BUILDS:
        got, total = x.copy(), np.zeros(n, np.float32)
        _rows_kernel(scalef)(got.reshape(-1), np.float32(1), np.zeros(rows, np.float32), np.zeros(n, np.float32),
                             total, rows, n)
        out.append(got.view(np.int32))
    assert (out[0] == out[1]).all()


def test_no_values_means_no_change() -> None:
    x, m, total = np.ones(VW, np.float32), np.zeros(VW, np.float32), np.zeros(VW, np.float32)
    _rows_kernel(BUILDS[-1])(x, np.float32(2), np.zeros(1, np.float32), m, total, 1, 0)
    assert (x == 1).all() and (total == 0).all()


def test_scalef_build_refused_without_avx512(monkeypatch: pytest.MonkeyPatch) -> None:
    from tensorsmith.backends.numba import vector_exp

    monkeypatch.setattr(vector_exp, "VW", 8)  # an AVX2 host's vectors
    with pytest.raises(ValueError, match="vscalefps needs AVX-512"):
        vector_exp.make_softmax_exp(True)
