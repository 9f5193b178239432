"""Integer overflow is defined and the same on both backends: elementwise integer ops wrap (two's complement,
as numpy), requantization saturates, int32 accumulators cannot overflow (the type rule bounds K)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from tensorsmith.backends import reference
from tensorsmith.ir import GraphBuilder, TypeInferenceError, dtype_from_numpy, f32, i32, u8
from tensorsmith.ir.ops.integer import MAX_ACC_K
from tensorsmith.ir.regions import make_region
from tensorsmith.runtime.numba_exec import NumbaExecutable

from .numba_check import SERIAL

INT_DTYPES = [np.int32, np.int64, np.int8, np.uint8]


def extremes(dt: type) -> np.ndarray:
    """Every bound of `dt` and its neighbours, and small values, as a [k] array."""
    info = np.iinfo(dt)
    vals = [info.min, info.min + 1, info.max - 1, info.max, 0, 1, 2, -1, -2, 7]
    return np.array([v for v in vals if info.min <= v <= info.max], dt)


def _pairs(dt: type) -> tuple[np.ndarray, np.ndarray]:
    e = extremes(dt)
    a, b = np.meshgrid(e, e, indexing="ij")
    return a.reshape(-1).copy(), b.reshape(-1).copy()


def _both(g: object, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    with np.errstate(all="ignore"):
        return reference.run(g, feeds), NumbaExecutable(g, parallel_threshold=SERIAL).run(feeds)  # type: ignore[arg-type]


@pytest.mark.parametrize("dt", INT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "maximum", "minimum"])
def test_integer_binary_ops_wrap_at_the_bounds_like_the_reference(op: str, dt: type) -> None:
    a, b = _pairs(dt)
    g = GraphBuilder("wrap")
    x, y = g.input("a", dtype_from_numpy(dt)[a.shape]), g.input("b", dtype_from_numpy(dt)[b.shape])
    g.output(g.op(op, x, y))
    graph = g.build()
    ref, got = _both(graph, {"a": a, "b": b})
    for k in ref:
        assert_array_equal(got[k], ref[k], err_msg=f"{op} {np.dtype(dt).name}")
    if op == "add":
        info = np.iinfo(dt)
        assert info.min in ref[graph.outputs[0].name]  # the sum max + 1 wrapped to min
        assert (ref[graph.outputs[0].name][(a == info.max) & (b == 1)] == info.min).all()


@pytest.mark.parametrize("dt", INT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", ["neg", "abs", "relu", "clip"])
def test_integer_unary_ops_at_the_bounds_match_the_reference(op: str, dt: type) -> None:
    x = extremes(dt)
    g = GraphBuilder("unary")
    v = g.input("x", dtype_from_numpy(dt)[x.shape])
    g.output(g.clip(v, min=-100.5, max=1e12) if op == "clip" else g.op(op, v))
    graph = g.build()
    ref, got = _both(graph, {"x": x})
    for k in ref:
        assert_array_equal(got[k], ref[k], err_msg=f"{op} {np.dtype(dt).name}")


def test_fused_integer_region_wraps_like_the_equations() -> None:
    a, b = _pairs(np.int32)
    g = GraphBuilder("region")
    x, y = g.input("a", i32[a.shape]), g.input("b", i32[b.shape])
    g.output(g.clip(g.div(g.sub(g.mul(g.add(x, y), y), x), y), min=-(2**31), max=2**31 - 1))
    graph = g.build()
    make_region(graph, list(graph.nodes))
    ref, got = _both(graph, {"a": a, "b": b})
    for k in ref:
        assert_array_equal(got[k], ref[k])


def _qlinear_graph(out: str, x: np.ndarray, w: np.ndarray, out_scale: float, out_zp: int) -> object:
    g = GraphBuilder("requant")
    v = g.input("x", u8[x.shape])
    xs, xz = g.const(np.array([0.5], np.float32), "xs"), g.const(np.array([0], np.int32), "xz")
    ws = g.const(np.full(w.shape[0], 0.25, np.float32), "ws")
    attrs = {} if out == "f32" else {"out_scale": [out_scale], "out_zero_point": [out_zp]}
    g.output(g.op("qlinear", v, xs, xz, g.const(w, "w"), ws, g.const(np.zeros(w.shape[0], np.float32), "bias"),
                  dtype=out, **attrs))
    return g.build()


@pytest.mark.parametrize("out,zp", [("u8", 128), ("i8", 0)])
def test_requantize_saturates_at_the_output_range(out: str, zp: int) -> None:
    """Full-range operands: x = 255 against weights -128 / 127 give accumulators far outside the output range."""
    k = 300
    x = np.full((4, k), 255, np.uint8)
    x[1] = 0
    x[2, ::2] = 0
    w = np.zeros((6, k), np.int8)
    w[0], w[1], w[2, :3] = -128, 127, 1
    w[3] = np.tile(np.array([127, -128], np.int8), k // 2)
    graph = _qlinear_graph(out, x, w, out_scale=0.01, out_zp=zp)
    ref, got = _both(graph, {"x": x})
    y = ref[graph.outputs[0].name]
    lo, hi = (0, 255) if out == "u8" else (-128, 127)
    assert_array_equal(got[graph.outputs[0].name], y)
    assert y[0, 0] == lo and y[0, 1] == hi  # saturated both ways
    assert y[1, 0] == zp  # x = 0: exactly the zero point


def test_accumulators_are_exact_at_full_range() -> None:
    """255 * -128 * K, the largest magnitude an int32 accumulator holds for this K, on both backends."""
    k = 2048
    x = np.full((3, k), 255, np.uint8)
    w = np.full((4, k), -128, np.int8)
    w[1] = 127
    graph = _qlinear_graph("f32", x, w, 0.0, 0)
    ref, got = _both(graph, {"x": x})
    y = ref[graph.outputs[0].name]
    assert y[0, 0] == np.float32(0.5 * 0.25) * np.float32(255 * -128 * k)
    assert_array_equal(got[graph.outputs[0].name], y)


def test_reduction_length_that_could_overflow_int32_is_refused() -> None:
    g = GraphBuilder("too_long")
    v = g.input("x", u8[1, MAX_ACC_K + 1])
    xs, xz = g.const(np.array([1.0], np.float32), "xs"), g.const(np.array([0], np.int32), "xz")
    w = g.const(np.zeros((1, MAX_ACC_K + 1), np.int8), "w")
    with pytest.raises((TypeInferenceError, ValueError), match="int32 accumulator may overflow"):
        g.op("qlinear", v, xs, xz, w, g.const(np.ones(1, np.float32), "ws"))


SATURATING_CASES = np.array([np.nan, np.inf, -np.inf, 3e9, -3e9, 1e20, 2.7, -2.7, 300, -300, 127.9, -128.9,
                             255.5, -0.9, 2147483520.0, -2147483648.0], np.float32)


def _saturated(x: np.ndarray, dt: str) -> np.ndarray:
    """The defined float -> integer cast, element by element: truncate, saturate, NaN to 0."""
    info = np.iinfo(np.dtype({"i32": np.int32, "i64": np.int64, "i8": np.int8, "u8": np.uint8}[dt]))
    out = [0 if np.isnan(v) else info.min if v < info.min else info.max if v > info.max else int(v) for v in x]
    return np.array(out, info.dtype)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("dt", ["i32", "i64", "i8", "u8"])
def test_float_to_integer_cast_truncates_and_saturates_on_both_backends(dt: str, fused: bool) -> None:
    """NaN gives 0, out-of-range values the integer's min or max, in-range values truncate toward zero."""
    x = np.tile(SATURATING_CASES, 5)  # long enough for the vectorized loop body as well as its remainder
    g = GraphBuilder("cast")
    g.output(g.op("cast", g.op("add", g.input("x", f32[x.shape]), g.const(np.zeros(1, np.float32), "z")), dtype=dt))
    graph = g.build()
    if fused:
        make_region(graph, list(graph.nodes))
    ref, got = _both(graph, {"x": x})
    want = _saturated(x, dt)
    for k in ref:
        assert_array_equal(ref[k], want)
        assert_array_equal(got[k], want)
