"""The N:M sparse GEMM kernel against numpy's dense product of the same pruned weights."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from tensorsmith.backends.numba.nm_gemm import nm_from_dense, run_nm
from tensorsmith.backends.numba.sparse_ukernels import HOST_ISAS

from .sparse_check import EPILOGUE_CASES, epilogue_reference, nm_pruned

pytestmark = pytest.mark.skipif(not HOST_ISAS, reason="sparse kernels need AVX2 + FMA")

PATTERNS = [(2, 4), (4, 8), (1, 4)]
ISAS = [isa.name for isa in HOST_ISAS]
RTOL, ATOL = 1e-4, 1e-4


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: f"{p[0]}:{p[1]}")
@pytest.mark.parametrize(("m", "n_out", "k"), [(1, 13, 32), (37, 50, 64), (70, 100, 136)])
def test_nm_matches_dense(m: int, n_out: int, k: int, pattern: tuple[int, int], isa: str) -> None:
    rng = np.random.default_rng(m * n_out)
    w = nm_pruned(rng, n_out, k, *pattern)
    x = rng.standard_normal((m, k)).astype(np.float32)
    nm = nm_from_dense(w, *pattern, isa=isa)
    for threads in (1, 2):
        assert_allclose(run_nm(x, nm, threads=threads), x @ w.T, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: f"{p[0]}:{p[1]}")
def test_nm_round_trip_and_layout(pattern: tuple[int, int]) -> None:
    n, m = pattern
    w = nm_pruned(np.random.default_rng(2), 30, 48, n, m)
    w[3] = 0  # a row sparser than the pattern
    nm = nm_from_dense(w, n, m)
    assert nm.values.shape == nm.indices.shape == (30, 48 * n // m)
    assert_array_equal(nm.to_dense(), w)
    assert np.all(nm.indices // m == np.repeat(np.arange(48 // m), n)[None, :])


@pytest.mark.parametrize("case", list(EPILOGUE_CASES))
def test_nm_epilogue_stages(case: str) -> None:
    rng = np.random.default_rng(5)
    m, n_out, k = 45, 40, 64
    w = nm_pruned(rng, n_out, k, 2, 4)
    x = rng.standard_normal((m, k)).astype(np.float32)
    stages = EPILOGUE_CASES[case]
    vecs = rng.uniform(0.5, 1.5, (max(1, len(stages)), n_out)).astype(np.float32)
    res = rng.standard_normal((m, n_out)).astype(np.float32)
    want = epilogue_reference(x, w, stages, vecs, res)
    for threads in (1, 2):
        got = run_nm(x, nm_from_dense(w, 2, 4), threads=threads, stages=np.array(stages, np.int64), vecs=vecs,
                     res=res)
        assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_nm_pattern_violation_names_the_weight() -> None:
    w = nm_pruned(np.random.default_rng(0), 8, 16, 2, 4)
    w[5, 9] = 1.0 if w[5, 9] == 0 else w[5, 9]
    w[5, 8:12] = 1.0
    with pytest.raises(ValueError, match=r"encoder.fc1.weight: does not satisfy 2:4 sparsity: row 5, K 8..11"):
        nm_from_dense(w, 2, 4, name="encoder.fc1.weight")


def test_nm_k_not_multiple_of_m_names_the_weight() -> None:
    with pytest.raises(ValueError, match="fc2.weight: K = 10 is not a multiple of m = 4"):
        nm_from_dense(np.zeros((4, 10), np.float32), 2, 4, name="fc2.weight")
