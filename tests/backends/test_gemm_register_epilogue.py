"""The packed GEMM's in-register epilogue: which leading stages the micro-kernel applies, and that every chain,
split between the registers and the pass over the tile, equals the epilogue applied after the product."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tensorsmith.backends.numba import k_microkernel
from tensorsmith.backends.numba.k_epilogue import ADD, CLIP, DIV, GELU, MUL, RELU, RESIDUAL, TANH
from tensorsmith.backends.numba.k_gemm_packed import (
    GEMM_CLOSING,
    IN_PLACE_COLUMNS,
    IN_PLACE_ROWS,
    gemm_packed,
    pack_weights,
    scratch_per_tile,
)
from tensorsmith.backends.numba.k_microkernel import KC, MR, NR
from tensorsmith.backends.numba.rules_dense import packed_tiles
from tensorsmith.backends.numba.ukernel_epilogue import register_epilogue
from tensorsmith.backends.numba.ukernel_epilogue_ir import EPI_AFFINE, EPI_CLIP, EPI_GELU, EPI_NONE, EPI_RELU, EPI_ROWS

pytestmark = pytest.mark.skipif(not k_microkernel.AVAILABLE, reason="no FMA: GEMMs go through BLAS")

CHAINS = {
    "bias": [ADD],
    "bias relu": [ADD, RELU],
    "batchnorm clip": [MUL, ADD, ADD, CLIP],
    "bias residual": [ADD, RESIDUAL],
    "bias residual relu": [ADD, RESIDUAL, RELU],
    "residual relu": [RESIDUAL, RELU],
    "bias tanh": [ADD, TANH],
    "bias gelu": [ADD, GELU],
    "bias residual gelu": [ADD, RESIDUAL, GELU],
    "four affine relu": [MUL, ADD, MUL, ADD, RELU],
    "tanh bias": [TANH, ADD],
    "div": [DIV, ADD],
}
"""Epilogue chains: wholly in registers, split between registers and the tile pass, or wholly in the pass."""
_erf = np.vectorize(math.erf)


def _operands(codes: list[int], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, vecs, params) arrays in the kernels' format: one vector row per ADD / MUL / DIV, CLIP's bounds."""
    vector_count = sum(c in (ADD, MUL, DIV) for c in codes)
    vecs = (rng.standard_normal((max(vector_count, 1), n)) * 0.5 + 1.0).astype(np.float32)
    params = np.zeros((max(len(codes), 1), 2), np.float32)
    for s, c in enumerate(codes):
        if c == CLIP:
            params[s] = (-1.5, 2.0)
    return np.array(codes, np.int64), vecs, params


def _expected(y: np.ndarray, codes: list[int], vecs: np.ndarray, params: np.ndarray, res: np.ndarray) -> np.ndarray:
    """The epilogue stage by stage in float64."""
    v = 0
    for s, c in enumerate(codes):
        if c in (ADD, MUL, DIV):
            vec = vecs[v].astype(np.float64)
            y = y + vec if c == ADD else y * vec if c == MUL else y / vec
            v += 1
        elif c == RESIDUAL:
            y = y + res
        elif c == RELU:
            y = np.maximum(y, 0.0)
        elif c == CLIP:
            y = np.clip(y, params[s, 0], params[s, 1])
        elif c == TANH:
            y = np.tanh(y)
        elif c == GELU:
            y = 0.5 * y * (1.0 + _erf(y / math.sqrt(2.0)))
    return y


@pytest.mark.parametrize(("name", "mode", "stages", "vectors", "residual"), [
    ("bias", EPI_AFFINE, 1, 1, False),
    ("bias relu", EPI_RELU, 2, 1, False),
    ("batchnorm clip", EPI_CLIP, 4, 3, False),
    ("bias residual", EPI_AFFINE, 2, 1, True),
    ("bias residual relu", EPI_RELU, 3, 1, True),
    ("residual relu", EPI_RELU, 2, 0, True),
    ("bias tanh", EPI_AFFINE, 1, 1, False),
    ("bias gelu", EPI_GELU, 2, 1, False),
    ("bias residual gelu", EPI_GELU, 3, 1, True),
    ("four affine relu", EPI_AFFINE, 3, 3, False),
    ("tanh bias", EPI_NONE, 0, 0, False),
    ("div", EPI_NONE, 0, 0, False),
])
def test_the_longest_leading_part_that_fits_runs_in_registers(name: str, mode: int, stages: int, vectors: int,
                                                               residual: bool) -> None:
    """Up to three affine stages, a residual, then ReLU or clip; anything else ends the in-register part."""
    codes, vecs, params = _operands(CHAINS[name], 40, np.random.default_rng(0))
    part = register_epilogue(codes, vecs, params, 40, residual=True, closing=GEMM_CLOSING)
    assert (part.mode, part.stages, part.vectors, part.residual) == (mode, stages, vectors, residual)
    assert part.table.shape == (-(-40 // NR), EPI_ROWS, NR)
    if name == "batchnorm clip":
        assert part.table[0, 6, 0] == -1.5 and part.table[0, 7, 0] == 2.0


def test_kernels_without_gelu_stop_before_it() -> None:
    """The blocked convolutions' micro-kernels close with ReLU or clip only: GELU is left to the pass."""
    codes, vecs, params = _operands(CHAINS["bias gelu"], 40, np.random.default_rng(0))
    part = register_epilogue(codes, vecs, params, 40)
    assert (part.mode, part.stages) == (EPI_AFFINE, 1)


def test_a_kernel_without_residual_stops_before_it() -> None:
    """Where the kernel adds no residual, the in-register part ends at the residual stage."""
    codes, vecs, params = _operands(CHAINS["bias residual relu"], 40, np.random.default_rng(0))
    part = register_epilogue(codes, vecs, params, 40, residual=False)
    assert (part.mode, part.stages, part.residual) == (EPI_AFFINE, 1, False)


@pytest.mark.parametrize("name", sorted(CHAINS))
@pytest.mark.parametrize("m", [1, MR // 3, 5, 2 * MR + 1, 3 * MR + MR // 3, IN_PLACE_ROWS + 2])
@pytest.mark.parametrize("n", [2 * NR + 13, IN_PLACE_COLUMNS + NR + 5])
def test_every_chain_on_every_path_equals_the_epilogue_after_the_product(name: str, m: int, n: int) -> None:
    """Rows read in place (few rows; few columns by K blocks) or packed, ragged rows and columns, two K blocks, both
    twins: the split epilogue equals the chain applied to the product, and the generic-only run agrees."""
    codes_list = CHAINS[name]
    rng = np.random.default_rng(m * 1000 + n)
    k = KC + 44
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    res = rng.standard_normal((m, n), dtype=np.float32)
    codes, vecs, params = _operands(codes_list, n, rng)
    part = register_epilogue(codes, vecs, params, n, residual=True, closing=GEMM_CLOSING)
    want = _expected(x.astype(np.float64) @ w.T.astype(np.float64), codes_list, vecs, params, res)
    bp = pack_weights(w)
    for parallel in (False, True):
        tm, tnp = packed_tiles(m, bp.shape[0], 2, parallel)
        ways = ((part.table.reshape(-1), part.mode, part.stages), (np.zeros(1, np.float32), EPI_NONE, 0))
        for ep, mode, done in ways:
            scratch = np.full(-(-m // tm) * -(-bp.shape[0] // tnp) * scratch_per_tile(tm), np.nan, np.float32)
            out = np.full((m, n), np.nan, np.float32)
            gemm_packed.pick(parallel)(x, bp, out, tm, tnp, scratch, codes, vecs, params, res, ep, mode, done,
                                       done > 0)  # prefetching or not changes no value
            np.testing.assert_allclose(out, want, rtol=1e-4, atol=2e-3, err_msg=f"{name} parallel={parallel} "
                                                                             f"done={done}")


def test_a_residual_in_another_layout_runs_in_the_tile_pass() -> None:
    """A residual that is not C-contiguous in out's shape is added by the pass over the tile, not read by the
    micro-kernel with out's row stride."""
    rng = np.random.default_rng(3)
    m, n, k = 2 * MR, 3 * NR, 70
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    res = np.asfortranarray(rng.standard_normal((m, n), dtype=np.float32))
    codes, vecs, params = _operands([ADD, RESIDUAL, RELU], n, rng)
    part = register_epilogue(codes, vecs, params, n, residual=True)
    bp = pack_weights(w)
    tm, tnp = packed_tiles(m, bp.shape[0], 2, False)
    out = np.full((m, n), np.nan, np.float32)
    gemm_packed.serial(x, bp, out, tm, tnp, np.empty(-(-m // tm) * -(-bp.shape[0] // tnp) * scratch_per_tile(tm),
                                                     np.float32), codes, vecs, params, res, part.table.reshape(-1),
                       part.mode, part.stages, True)
    want = _expected(x.astype(np.float64) @ w.T.astype(np.float64), [ADD, RESIDUAL, RELU], vecs, params, res)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=2e-3)


def test_whole_tiles_take_the_table_not_the_vectors() -> None:
    """On tiles of exact micro-kernel rows and whole panels the micro-kernel applies the table (here twice the
    bias the vectors hold): the in-register path runs, it is not the tile pass."""
    rng = np.random.default_rng(4)
    m, n, k = MR, 2 * NR, 2 * KC + 3
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    codes, vecs, params = _operands([ADD], n, rng)
    part = register_epilogue(codes, 2 * vecs, params, n)
    bp = pack_weights(w)
    for parallel in (False, True):
        tm, tnp = packed_tiles(m, bp.shape[0], 2, parallel)
        out = np.full((m, n), np.nan, np.float32)
        gemm_packed.pick(parallel)(x, bp, out, tm, tnp, np.empty(-(-m // tm) * -(-bp.shape[0] // tnp)
                                                                 * scratch_per_tile(tm), np.float32),
                                   codes, vecs, params, np.zeros((1, 1), np.float32), part.table.reshape(-1),
                                   part.mode, part.stages, True)
        want = x.astype(np.float64) @ w.T.astype(np.float64) + 2 * vecs[0]
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=2e-3)
