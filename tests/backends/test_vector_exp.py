"""The full-width vector exp of the softmax (`vector_exp.exp_minus_accumulate`) against numpy, special values
included."""

from __future__ import annotations

import numba
import numpy as np
from numpy.testing import assert_allclose
from tensorsmith.backends.numba.jit import kernel_args
from tensorsmith.backends.numba.k_microkernel import VW
from tensorsmith.backends.numba.vector_exp import exp_minus_accumulate


@numba.njit(cache=False)
def _rows(x, m, total, rows, n):  # type: ignore[no-untyped-def]
    for r in range(rows):
        exp_minus_accumulate(x, r * n, m, 0, total, 0, n)


def test_exp_minus_accumulate_matches_numpy_with_special_values() -> None:
    rng = np.random.default_rng(3)
    rows, n = 5, 4 * VW
    x = (rng.standard_normal((rows, n)) * 40).astype(np.float32)
    x[0, :8] = [np.nan, np.inf, -np.inf, 88.7, -87.4, -87.3, 0.0, -0.0]
    m = rng.uniform(-2, 2, n).astype(np.float32)
    m[:8] = 0
    total = np.full(n, 0.5, np.float32)
    got = x.copy()
    _rows(got.reshape(-1), *kernel_args((m,), writes=()), total, rows, n)
    with np.errstate(over="ignore", invalid="ignore"):
        want = np.exp((x - m).astype(np.float64)).astype(np.float32)  # inf past float32's range
    want = np.where(want < 2.0 ** -126, np.float32(0), want)  # results below the normal range flush to zero
    assert_allclose(got, want, rtol=4e-7, atol=0)
    assert np.isnan(got[0, 0]) and got[0, 1] == np.inf and got[0, 2] == 0 and got[0, 4] == 0
    assert got[0, 5] > 0 and got[0, 6] == 1 and got[0, 7] == 1
    with np.errstate(invalid="ignore"):
        assert_allclose(total, 0.5 + got.astype(np.float64).sum(axis=0), rtol=1e-6)


def test_no_values_means_no_change() -> None:
    x, m, total = np.ones(VW, np.float32), np.zeros(VW, np.float32), np.zeros(VW, np.float32)
    _rows(x, m, total, 1, 0)
    assert (x == 1).all() and (total == 0).all()
