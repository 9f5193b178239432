"""Numba backend against the reference: pooling, normalization, softmax, reductions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .numba_check import check_op, op_graph

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RNG = np.random.default_rng(5)
DIM = st.sampled_from([1, 2, 3, 5, 7, 16, 31])


def _u(*shape: int) -> np.ndarray:
    return RNG.uniform(-2, 2, shape).astype(np.float32)


@st.composite
def pool_cases(draw):  # type: ignore[no-untyped-def]
    """Input shape and attributes of a valid 2-D pooling."""
    kh, kw = draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 2, 3, 4]))
    dh, dw = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2]))
    pads = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)), draw(st.integers(0, kh - 1)),
            draw(st.integers(0, kw - 1)))
    h = draw(st.integers(dh * (kh - 1) + 1, 12))
    w = draw(st.integers(dw * (kw - 1) + 1, 12))
    attrs = {"kernel": (kh, kw), "strides": (draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 2]))),
             "pads": pads, "dilations": (dh, dw), "ceil_mode": draw(st.booleans())}
    return (draw(st.sampled_from([1, 2, 0])), draw(DIM), h, w), attrs


@SETTINGS
@given(case=pool_cases())
def test_maxpool2d(case: tuple) -> None:
    shape, attrs = case
    check_op("maxpool2d", _u(*shape), exact=True, **attrs)


@SETTINGS
@given(case=pool_cases(), include=st.booleans())
def test_avgpool2d(case: tuple, include: bool) -> None:
    shape, attrs = case
    check_op("avgpool2d", _u(*shape), count_include_pad=include, rtol=1e-5, atol=1e-6, **attrs)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 5, 7, 9), (3, 1, 2, 2), (0, 2, 4, 4), (1, 2, 31, 17)])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_plain_2x2_maxpool(shape: tuple[int, ...], ceil_mode: bool) -> None:
    """The 2x2 / stride-2 path (odd sizes drop the last row/column; ceil mode takes the general kernel)."""
    x = _u(*shape)
    if x.size:
        x.reshape(-1)[::7] = np.nan  # NaN wins, as in the reference
    check_op("maxpool2d", x, kernel=(2, 2), strides=(2, 2), ceil_mode=ceil_mode, exact=True)
    check_op("maxpool2d", RNG.integers(-100, 100, shape).astype(np.int8), kernel=(2, 2), strides=(2, 2), exact=True)
    check_op("maxpool2d", RNG.integers(0, 256, shape).astype(np.uint8), kernel=(2, 2), strides=(2, 2), exact=True)


def test_maximum_lets_a_nan_win_and_orders_integers_by_their_sign() -> None:
    from numba import njit
    from tensorsmith.backends.numba.mathfn import maximum

    pair_max = njit(lambda a, b: maximum(a, b))
    for dt in (np.float32, np.float64):
        values = [dt(v) for v in (-np.inf, -1.5, 0.0, 2.0, np.inf, np.nan)]
        for a in values:
            for b in values:
                got = pair_max(a, b)
                assert np.isnan(got) if np.isnan(a) or np.isnan(b) else got == max(a, b)
    assert pair_max(np.int8(-3), np.int8(2)) == 2 and pair_max(np.uint8(200), np.uint8(3)) == 200
    assert pair_max(np.int64(-(2**40)), np.int64(-1)) == -1


def test_plain_2x2_maxpool_takes_its_own_kernel() -> None:
    from tensorsmith import runtime
    from tensorsmith.ir import GraphBuilder, f32

    b = GraphBuilder("pool")
    b.output(b.maxpool2d(b.input("x", f32[1, 2, 6, 6]), (2, 2), strides=(2, 2), name="y"))
    kernels = [p.kernel for p in runtime.compile(b.build(), backend="numba").profile({"x": _u(1, 2, 6, 6)}).nodes]
    assert kernels == ["maxpool2x2"]


@pytest.mark.parametrize("op", ["maxpool2d", "avgpool2d"])
def test_f32_windows_run_on_phase_planes_with_nan_and_infinities(op: str) -> None:
    """Max and average pooling of f32 run on k_phase_planes; a NaN in a window wins a max, -inf padding never
    does, and +-inf pass through both as the reference has them."""
    from tensorsmith import runtime
    from tensorsmith.ir import GraphBuilder, f32

    x = _u(2, 3, 11, 9)
    x[0, 0, 2, 3], x[1, 2, 5, 5], x[0, 1, 0, 0] = np.nan, np.inf, -np.inf
    b = GraphBuilder("pool")
    b.output(b.op(op, b.input("x", f32[x.shape]), kernel=(3, 3), strides=(2, 1), pads=(1, 1, 1, 1), name="y"))
    g = b.build()
    kernels = [p.kernel for p in runtime.compile(g, backend="numba").profile({"x": x}).nodes]
    assert op.replace("2d", "_planes") in kernels
    check_op(op, x, kernel=(3, 3), strides=(2, 1), pads=(1, 1, 1, 1), exact=op == "maxpool2d", rtol=1e-6)


def test_integer_maxpool() -> None:
    x = RNG.integers(-100, 100, (1, 2, 5, 5)).astype(np.int8)
    check_op("maxpool2d", x, kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1), exact=True)


@SETTINGS
@given(shape=st.tuples(st.sampled_from([1, 2, 0]), DIM, DIM, DIM))
def test_global_avgpool(shape: tuple[int, ...]) -> None:
    check_op("global-avgpool", _u(*shape), rtol=1e-5, atol=1e-6)


@st.composite
def shape_and_axis(draw, min_rank: int = 1):  # type: ignore[no-untyped-def]
    """A shape of rank min_rank..4 and an axis (negative half the time)."""
    shape = tuple(draw(DIM) for _ in range(draw(st.integers(min_rank, 4))))
    axis = draw(st.integers(0, len(shape) - 1))
    return shape, axis - len(shape) if draw(st.booleans()) else axis


@SETTINGS
@given(case=shape_and_axis())
def test_softmax(case: tuple) -> None:
    shape, axis = case
    check_op("softmax", _u(*shape) * 10, axis=axis, rtol=1e-5, atol=1e-6)


def test_softmax_with_masked_positions() -> None:
    x = _u(2, 5)
    x[0, 1:3] = -np.inf
    x[1, :] = -1e30
    check_op("softmax", x, rtol=1e-5, atol=1e-7)


def test_softmax_special_values_follow_the_reference() -> None:
    """A NaN anywhere in a row makes the row NaN; +inf gives NaN; a row of -inf gives NaN (0/0)."""
    x = _u(5, 40)
    x[0, 7] = np.nan
    x[1, 39] = np.nan
    x[2, 3] = np.inf
    x[3, :] = -np.inf
    with np.errstate(invalid="ignore"):
        check_op("softmax", x, rtol=1e-5, atol=1e-7)


@SETTINGS
@given(case=shape_and_axis(), affine=st.sampled_from([0, 1, 2]), const=st.booleans())
def test_layernorm(case: tuple, affine: int, const: bool) -> None:
    shape, axis = case
    x = _u(*shape) * 3 + 1
    params = [_u(*shape[axis:]) for _ in range(affine)]
    consts = tuple(range(1, affine + 1)) if const else ()
    # f32's x - mean loses digits where a group's spread is small against its values: the error grows with
    # max |x| / sqrt(var + eps) (the reference computes in float64)
    groups = x.astype(np.float64).reshape(-1, int(np.prod(shape[axis:])))
    cond = float((np.abs(groups).max(axis=1) / np.sqrt(groups.var(axis=1) + 1e-5)).max()) if groups.size else 0.0
    check_op("layernorm", x, *params, consts=consts, axis=axis, epsilon=1e-5, rtol=1e-4, atol=1e-5 + 1e-6 * cond)


@SETTINGS
@given(shape=st.tuples(st.sampled_from([1, 2, 0]), DIM, DIM), spatial=st.integers(0, 2))
def test_batchnorm(shape: tuple[int, ...], spatial: int) -> None:
    shape = shape + (3,) * spatial
    c = shape[1]
    check_op("batchnorm", _u(*shape), _u(c), _u(c), _u(c), np.abs(_u(c)) + 0.1, consts=(1, 2, 3, 4),
             epsilon=1e-3, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_lrn(size: int) -> None:
    check_op("lrn", _u(2, 7, 3, 4), size=size, alpha=1e-3, beta=0.75, bias=1.5, rtol=1e-5, atol=1e-6)


@st.composite
def reduce_cases(draw):  # type: ignore[no-untyped-def]
    """A shape, a set of axes (possibly non-adjacent, possibly empty = all) and keepdims."""
    shape = tuple(draw(DIM) for _ in range(draw(st.integers(1, 4))))
    axes = sorted(draw(st.sets(st.integers(0, len(shape) - 1))))
    axes = [a - len(shape) if draw(st.booleans()) else a for a in axes]
    return shape, axes, draw(st.booleans())


@pytest.mark.parametrize("op", ["reduce-sum", "reduce-mean", "reduce-max"])
@SETTINGS
@given(case=reduce_cases())
def test_reductions(op: str, case: tuple) -> None:
    shape, axes, keep = case
    check_op(op, _u(*shape), axes=axes, keepdims=keep, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["reduce-sum", "reduce-mean", "reduce-max"])
def test_integer_reductions(op: str) -> None:
    x = RNG.integers(-1000, 1000, (3, 4, 5)).astype(np.int32)
    check_op(op, x, axes=[0, 2], keepdims=False, exact=True)
    check_op(op, x, axes=[], keepdims=True, exact=True)


def test_sum_and_mean_over_an_empty_axis() -> None:
    x = np.zeros((3, 0, 2), np.float32)
    check_op("reduce-sum", x, axes=[1], keepdims=False, exact=True)


def test_global_avgpool_runs_its_parallel_twin_only_on_large_inputs() -> None:
    """A mean reads each value once: below about 80,000 values a parallel region costs more than it saves."""
    from tensorsmith.runtime.numba_exec import NumbaExecutable

    for shape, parallel in (((4, 64, 8, 8), False), ((1, 2048, 7, 7), True)):
        g, _ = op_graph("global-avgpool", _u(*shape))
        kernels = [s.kernel for s in NumbaExecutable(g).plan.steps if not s.is_view]
        assert kernels == ["global_avgpool[par]" if parallel else "global_avgpool"], (shape, kernels)
