"""The tiled attention kernel against the reference backend: tiles, masks, stability, serial and parallel twins.

Tolerance: the kernel's score tiles are summed in another order than numpy's batched matmul (the GEMM
micro-kernel's FMA chain, or other BLAS calls), its softmax is online (rescaled per key tile) with a float32
exp within 1.2 ulp, and its sums run in another order, so outputs (convex combinations of rows of v) differ by
float32 rounding: atol = 4e-6 * max|v| (about 30 ulps of the largest v) plus what the scores' rounding moves
the weights by. A dot product of length D rounds by at most gamma_D = D * eps / (1 - D * eps) times
sum |q_t k_t| (Higham), each side's, so the weights move by at most 2 * gamma_D * scale * max sum |q_t k_t|
relative, and the output by that times max|v|: the second term of the bound, which matters only for large
scores (measured up to 1.4e-5 * max|v| with scores of about 400). rtol = 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from tensorsmith.backends import reference
from tensorsmith.backends.numba.jit import num_threads
from tensorsmith.backends.numba.k_attention_packed import packed_scratch
from tensorsmith.backends.numba.k_microkernel import NR
from tensorsmith.backends.numba.rules_attention import (
    KEY_TILE,
    PACKED_KEY_TILE,
    PACKED_QUERY_TILE,
    QUERY_TILE,
    attention_tiles_for,
    mask_strides,
    packed_path,
)
from tensorsmith.ir import GraphBuilder, f32
from tensorsmith.ir.ops.attention import attention_scale
from tensorsmith.runtime.numba_exec import NumbaExecutable

from tests.ir.sample_attention import attention_graph, attention_inputs

from .numba_check import PARALLEL, SERIAL

RNG = np.random.default_rng(11)


def _score_rounding(shape: tuple, feeds: dict[str, np.ndarray], scale: float) -> float:
    """2 * gamma_D * scale * max over heads, queries and keys of sum_t |q_t| |k_t| (see the module docstring)."""
    b, sq, skv, heads, d = shape[:5]
    finite = {n: np.nan_to_num(np.abs(feeds[n]).astype(np.float64), nan=0.0) for n in ("q", "k")}  # NaN rows: NaN
    qa = finite["q"].reshape(b, sq, heads, d).transpose(0, 2, 1, 3)
    ka = finite["k"].reshape(b, skv, heads, d).transpose(0, 2, 3, 1)
    eps = float(np.finfo(np.float32).eps)
    gamma = d * eps / (1 - d * eps)
    s = attention_scale(scale, heads * d, heads)
    return 2 * gamma * s * float((qa @ ka).max(initial=0.0))


def _check(shape: tuple, feeds: dict[str, np.ndarray], scale: float = 0.0, causal: bool = False) -> None:
    graph = attention_graph(*shape, scale=scale, causal=causal)
    want = reference.run(graph, feeds)["y"]
    vmax = float(np.nanmax(np.abs(feeds["v"])))
    atol = 4e-6 * vmax + _score_rounding(shape, feeds, scale) * vmax
    for threshold in (SERIAL, PARALLEL):
        got = NumbaExecutable(graph, parallel_threshold=threshold).run(feeds)["y"]
        assert got.dtype == np.float32 and got.shape == want.shape
        assert_allclose(got, want, rtol=1e-5, atol=atol, err_msg=f"parallel threshold {threshold}")


@pytest.mark.parametrize("shape", [
    (1, 1, 1, 1, 1, None),
    (2, 7, 9, 3, 5, None),
    (1, QUERY_TILE + 3, KEY_TILE + 44, 2, 8, None),  # ragged last query and key tiles
    (3, 2 * QUERY_TILE, 2 * KEY_TILE, 1, 16, None),  # whole tiles, heads=1
    (1, 5, 2 * KEY_TILE + 1, 4, 3, None),  # a one-key last tile
    (2, 130, 17, 3, 7, None),  # Sq > Skv
])
def test_attention_matches_the_reference_on_odd_sizes(shape: tuple) -> None:
    _check(shape, attention_inputs(RNG, *shape))


@pytest.mark.parametrize("mask_shape", [
    (70, 300), (300,), (2, 1, 1, 300), (1, 3, 70, 300), (2, 3, 70, 1), (2, 3, 1, 300), (1, 1, 70, 300), (1,),
])
def test_attention_mask_broadcasts(mask_shape: tuple[int, ...]) -> None:
    shape = (2, 70, 300, 3, 4, mask_shape)
    _check(shape, attention_inputs(RNG, *shape))


@pytest.mark.parametrize("magnitude", [10.0, 60.0])
def test_attention_is_stable_with_large_scores(magnitude: float) -> None:
    """Scores in the thousands: exp(s) overflows without the running max."""
    shape = (1, 40, 300, 2, 16, None)
    feeds = attention_inputs(RNG, *shape, magnitude=magnitude)
    _check(shape, feeds)
    _check(shape, feeds, scale=1.0)


def test_attention_rows_masked_in_a_whole_key_tile_or_entirely() -> None:
    """A row masked out (-inf) over its first key tile gets its weight later; a row masked everywhere is NaN."""
    shape = (1, 6, KEY_TILE + 20, 2, 4, (6, KEY_TILE + 20))
    feeds = attention_inputs(RNG, *shape)
    feeds["mask"][1, :KEY_TILE] = -np.inf
    feeds["mask"][2, KEY_TILE:] = -np.inf
    feeds["mask"][3, :] = -np.inf
    graph = attention_graph(*shape)
    with np.errstate(invalid="ignore"):
        want = reference.run(graph, feeds)["y"]
    for threshold in (SERIAL, PARALLEL):
        got = NumbaExecutable(graph, parallel_threshold=threshold).run(feeds)["y"]
        assert np.isnan(got[0, 3]).all() and not np.isnan(np.delete(got, 3, axis=1)).any()
        assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_attention_reads_views_and_writes_into_a_graph() -> None:
    """q, k, v from transposes (materialized once) and the output used by a later node."""
    b = GraphBuilder("views")
    x = b.input("x", f32[24, 2, 9])
    t = b.transpose(x, (1, 0, 2))  # [2, 24, 9]
    y = b.attention(t, b.tanh(t), t, heads=3)
    b.output(b.relu(y))
    graph = b.build()
    feeds = {"x": RNG.uniform(-1, 1, (24, 2, 9)).astype(np.float32)}
    want = reference.run(graph, feeds)[graph.outputs[0].name]
    got = NumbaExecutable(graph, parallel_threshold=PARALLEL).run(feeds)[graph.outputs[0].name]
    assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_attention_scratch_is_tile_sized() -> None:
    """No buffer of the plan holds a score matrix: the scratch is per-thread tiles (and, on the micro-kernel path,
    the packed Q^T panels and one head's last panel of V)."""
    shape = (1, 512, 512, 4, 16, (512, 512))
    exe = NumbaExecutable(attention_graph(*shape), parallel_threshold=PARALLEL)
    tq, tk = attention_tiles_for(512, 512, 16)
    buffers = [s for s in exe.plan.slots if s.kind == "buffer"]
    if packed_path(16):
        sizes = packed_scratch(tq, tk, 16, 512)
        assert [s.name for s in buffers] == [f"y.{part}" for part in sizes._fields]
        per_chunk = sum(sizes)
    else:
        assert [s.name for s in buffers] == ["y.tiles"]
        per_chunk = tq * tk + tq * 16 + 2 * tq
    assert sum(s.nbytes for s in buffers) <= num_threads() * per_chunk * 4
    assert per_chunk <= 2 * tq * tk + 16 * 512 + 16 * tq * 4 + 16 * 512 < 512 * 512  # far below one head's scores


def test_mask_strides_broadcast_with_zeros() -> None:
    assert mask_strides((5, 7)).tolist() == [0, 0, 7, 1]
    assert mask_strides((2, 1, 1, 7)).tolist() == [7, 0, 0, 1]
    assert mask_strides((3, 5, 1)).tolist() == [0, 5, 1, 0]


def test_attention_nan_scores_make_their_rows_nan() -> None:
    shape = (1, 5, 9, 2, 3, None)
    feeds = attention_inputs(RNG, *shape)
    feeds["k"][0, 4, 0] = np.nan  # head 0, key 4: every query of head 0 sees a NaN score
    feeds["q"][0, 2, 5] = np.nan  # head 1, query 2
    _check(shape, feeds)
    got = NumbaExecutable(attention_graph(*shape)).run(feeds)["y"]
    assert np.isnan(got[0, :, :3]).all() and np.isnan(got[0, 2, 3:]).all() and not np.isnan(got[0, 3, 3:]).any()


@pytest.mark.parametrize("shape", [
    (1, PACKED_QUERY_TILE + 5, PACKED_KEY_TILE + 7, 2, 64, None),  # ragged query block and key tile, D = 64
    (2, 2 * PACKED_QUERY_TILE, 2 * PACKED_KEY_TILE, 3, 32, (2, 1, 1, 2 * PACKED_KEY_TILE)),  # whole tiles, key mask
    (1, 3 * PACKED_QUERY_TILE + 1, 50, 12, 13, (3 * PACKED_QUERY_TILE + 1, 50)),  # 12 heads of an odd D, full mask
    (1, 37, 29, 3, NR + 8, None),  # D: a panel of V read in place and a narrower one packed
])
def test_micro_kernel_path_on_whole_and_ragged_tiles(shape: tuple) -> None:
    _check(shape, attention_inputs(RNG, *shape))


@pytest.mark.parametrize("packed", [True, False])
def test_both_kernel_paths_run_where_the_host_has_them(packed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The micro-kernel path where the host has FMA, BLAS per tile otherwise: both run and match here."""
    if packed and not packed_path(16):
        pytest.skip("this host has no fp32 micro-kernel (FMA)")
    from tensorsmith.backends.numba import rules_attention

    monkeypatch.setattr(rules_attention, "packed_path", lambda head_dim: packed)
    shape = (2, 70, 300, 3, 16, (2, 1, 1, 300))
    _check(shape, attention_inputs(RNG, *shape))
    exe = NumbaExecutable(attention_graph(*shape), parallel_threshold=PARALLEL)
    kernels = [s.kernel.split("[")[0] for s in exe.plan.steps if not s.is_view]
    assert kernels == ["attention_packed" if packed else "attention_tiles"], kernels


@pytest.mark.parametrize("shape", [
    (1, 1, 1, 1, 1, None),
    (1, PACKED_QUERY_TILE + 5, PACKED_QUERY_TILE + 5, 2, 64, None),  # Sq = Skv, a ragged query block
    (2, 2 * PACKED_QUERY_TILE, 2 * PACKED_QUERY_TILE + PACKED_KEY_TILE, 3, 32, None),  # key tiles past every query
    (1, 300, 50, 2, 16, None),  # Sq > Skv: the later queries see every key
    (2, 70, 300, 3, 16, (2, 1, 1, 300)),  # a padding mask with the causal one
    (1, 150, 260, 2, 8, (150, 260)),  # a full mask with the causal one
])
@pytest.mark.parametrize("packed", [True, False])
def test_causal_attention_matches_the_reference(shape: tuple, packed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both kernel paths: key tiles past a query block are skipped, the tile across the diagonal masked."""
    if packed and not packed_path(16):
        pytest.skip("this host has no fp32 micro-kernel (FMA)")
    from tensorsmith.backends.numba import rules_attention

    monkeypatch.setattr(rules_attention, "packed_path", lambda head_dim: packed)
    feeds = attention_inputs(RNG, *shape)
    if "mask" in feeds:
        feeds["mask"][..., 0] = 0.0  # key 0 open: query 0 sees it alone
    _check(shape, feeds, causal=True)
    plain = reference.run(attention_graph(*shape), feeds)["y"]
    got = NumbaExecutable(attention_graph(*shape, causal=True)).run(feeds)["y"]
    if shape[1] > 1:  # query 0 sees only key 0 when causal: not what every key gives
        assert not np.allclose(got[:, 0], plain[:, 0], atol=1e-3)
