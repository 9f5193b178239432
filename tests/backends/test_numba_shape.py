"""Numba backend against the reference: reshape, transpose, slice, concat, gather, quantization."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorsmith.ir import GraphBuilder, f32, i64
from tensorsmith.runtime.numba_exec import NumbaExecutable

from .numba_check import check, check_op

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RNG = np.random.default_rng(3)
DIM = st.sampled_from([1, 2, 3, 5, 7])


def _u(*shape: int) -> np.ndarray:
    return RNG.uniform(-2, 2, shape).astype(np.float32)


@st.composite
def shapes(draw, lo: int = 1, hi: int = 5):  # type: ignore[no-untyped-def]
    """A shape of rank lo..hi."""
    return tuple(draw(DIM) for _ in range(draw(st.integers(lo, hi))))


@SETTINGS
@given(shape=shapes(), data=st.data())
def test_transpose_then_elementwise(shape: tuple[int, ...], data: st.DataObject) -> None:
    perm = data.draw(st.permutations(range(len(shape))))
    b = GraphBuilder("t")
    x = b.input("x", f32[shape])
    t = b.transpose(x, perm)
    b.output(t, b.relu(t), b.reshape(t, (-1,)))
    check(b.build(), {"x": _u(*shape)}, exact=True)


@SETTINGS
@given(shape=shapes(1, 4), data=st.data())
def test_slice(shape: tuple[int, ...], data: st.DataObject) -> None:
    axes = data.draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True))
    starts, ends, steps = [], [], []
    for ax in axes:
        d = shape[ax]
        step = data.draw(st.sampled_from([1, 1, 2, -1, 3]))
        starts.append(data.draw(st.integers(-d - 1, d + 1)))
        ends.append(data.draw(st.integers(-d - 1, d + 1)))
        steps.append(step)
    b = GraphBuilder("s")
    x = b.input("x", f32[shape])
    s = b.slice(x, starts, ends, axes, steps)
    b.output(s, b.neg(s))
    check(b.build(), {"x": _u(*shape)}, exact=True)


@SETTINGS
@given(shape=shapes(1, 4), data=st.data())
def test_concat(shape: tuple[int, ...], data: st.DataObject) -> None:
    axis = data.draw(st.integers(0, len(shape) - 1))
    parts = []
    for _ in range(data.draw(st.integers(1, 3))):
        s = list(shape)
        s[axis] = data.draw(st.sampled_from([0, 1, 2, 5]))
        parts.append(_u(*s))
    check_op("concat", *parts, consts=(1,), axis=axis - len(shape) * data.draw(st.integers(0, 1)), exact=True)


@SETTINGS
@given(shape=shapes(1, 3), idx_shape=shapes(0, 2), data=st.data())
def test_gather(shape: tuple[int, ...], idx_shape: tuple[int, ...], data: st.DataObject) -> None:
    axis = data.draw(st.integers(0, len(shape) - 1))
    d = shape[axis]
    dtype = data.draw(st.sampled_from([np.int64, np.int32]))
    idx = RNG.integers(-d, d, idx_shape).astype(dtype)
    check_op("gather", _u(*shape), idx, axis=axis, exact=True)
    check_op("gather", _u(*shape), idx, consts=(0,), axis=axis, exact=True)


def test_gather_out_of_range_names_the_node() -> None:
    b = GraphBuilder("g")
    idx = b.input("idx", i64[3])
    b.output(b.gather(_u(4, 2), idx, name="lookup"))
    exe = NumbaExecutable(b.build())
    with pytest.raises(IndexError, match="lookup.*index 4 is out of range"):
        exe.run({"idx": np.array([0, 4, 1])})


def test_reshape_flatten_identity_are_views() -> None:
    b = GraphBuilder("v")
    x = b.input("x", f32[2, 3, 4])
    r = b.reshape(x, (6, 4))
    f = b.flatten(b.relu(x), axis=2)
    b.output(r, f, b.op("identity", r))
    g = b.build()
    check(g, {"x": _u(2, 3, 4)}, exact=True)
    exe = NumbaExecutable(g)
    assert [s.kernel for s in exe.plan.steps if not s.is_view] == ["unary_relu"]


@pytest.mark.parametrize(("axis", "dtype", "zp"), [(None, "i8", 3), (1, "u8", 128), (-1, "i8", -5), (0, "u8", 0)])
def test_quantize_dequantize_exact(axis: int | None, dtype: str, zp: int) -> None:
    x = _u(3, 4, 5) * 50
    x[0, 0, :3] = [0.5, 1.5, -2.5]  # ties round to even
    c = 1 if axis is None else x.shape[axis]
    scale = np.abs(_u(c)) + 0.05 if axis is not None else [0.37]
    zps = [zp] * c
    check_op("quantize", x, scale=scale, zero_point=zps, axis=axis, dtype=dtype, exact=True)
    q = RNG.integers(-128 if dtype == "i8" else 0, 128 if dtype == "i8" else 256, x.shape).astype(
        np.int8 if dtype == "i8" else np.uint8)
    check_op("dequantize", q, scale=scale, zero_point=zps, axis=axis, exact=True)


@pytest.mark.parametrize(("axis", "dtype", "zp"), [(None, "i8", -3), (1, "u8", 200), (None, "u8", 0)])
def test_quantize_of_long_runs_near_rounding_ties_is_exact(axis: int | None, dtype: str, zp: int) -> None:
    """Runs longer than a work item (QUANTIZE_CHUNK) through the vector path: values at and next to every
    x / scale = m + 1/2 quantize as the reference's true division does."""
    scale = [0.0137] if axis is None else [0.0137, 0.25, 3.0]
    m = RNG.integers(-300, 300, (2, 3, 5003)).astype(np.float32) + np.float32(0.5)
    per = np.asarray(scale, np.float32).reshape((1, -1, 1)) if axis is not None else np.float32(scale[0])
    x = (m * per).astype(np.float32)
    x = np.where(RNG.random(x.shape) < 0.3, np.nextafter(x, np.float32(np.inf)), x)
    x = np.where(RNG.random(x.shape) < 0.3, np.nextafter(x, np.float32(-np.inf)), x).astype(np.float32)
    x[0, 0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    c = 1 if axis is None else 3
    check_op("quantize", x, scale=scale[:c], zero_point=[zp] * c, axis=axis, dtype=dtype, exact=True)


def test_every_small_permutation_of_a_rank4_tensor() -> None:
    x = _u(2, 3, 1, 4)
    b = GraphBuilder("perms")
    xv = b.input("x", f32[x.shape])
    b.output(*[b.relu(b.transpose(xv, p)) for p in itertools.permutations(range(4))])
    check(b.build(), {"x": x}, exact=True)
