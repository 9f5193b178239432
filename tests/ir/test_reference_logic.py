"""Reference rules of the comparisons, logical ops, where, the rounding maps, argmax / argmin, cumsum, gather-elements,
mod and topk against hand-worked cases (IEEE NaN, signed zeros, ties)."""

from __future__ import annotations

import math
import warnings

import numpy as np
from numpy.testing import assert_array_equal
from tensorsmith.ir import GraphBuilder, f32

from .refcase import covers, run_graph, run_op

NAN, INF = float("nan"), float("inf")
A = np.array([NAN, 1.0, -0.0, 2.0, -INF, 3.0], np.float32)
B = np.array([NAN, 2.0, 0.0, 2.0, -INF, NAN], np.float32)


def _scalar(fn) -> list[bool]:  # type: ignore[no-untyped-def]
    """fn applied to the pairs of A and B as Python floats (IEEE comparisons, independent of numpy)."""
    return [bool(fn(float(a), float(b))) for a, b in zip(A, B)]


@covers("equal", "less", "less-equal", "greater", "greater-equal")
def test_comparisons_are_ieee() -> None:
    cases = {"equal": lambda a, b: a == b, "less": lambda a, b: a < b, "less-equal": lambda a, b: a <= b,
             "greater": lambda a, b: a > b, "greater-equal": lambda a, b: a >= b}
    for op, fn in cases.items():
        got = run_op(op, A, B)
        assert got.dtype == np.bool_ and got.tolist() == _scalar(fn), op
    assert run_op("equal", A, B).tolist() == [False, False, True, True, True, False]  # NaN != NaN, 0 == -0
    broadcast = run_op("less", np.array([[1], [5]], np.int64), np.array([2, 6], np.int64))
    assert broadcast.tolist() == [[True, True], [False, True]]


@covers("logical-and", "logical-or", "logical-xor", "logical-not")
def test_logical_truth_tables() -> None:
    p = np.array([False, False, True, True])
    q = np.array([False, True, False, True])
    assert run_op("logical-and", p, q).tolist() == [False, False, False, True]
    assert run_op("logical-or", p, q).tolist() == [False, True, True, True]
    assert run_op("logical-xor", p, q).tolist() == [False, True, True, False]
    assert run_op("logical-not", p).tolist() == [True, True, False, False]


@covers("where")
def test_where_picks_and_broadcasts() -> None:
    cond = np.array([[True], [False]])
    a = np.array([1, 2, 3], np.int64)
    b = np.array([[10, 20, 30], [40, 50, 60]], np.int64)
    assert_array_equal(run_op("where", cond, a, b), [[1, 2, 3], [40, 50, 60]])
    got = run_op("where", np.array([True, False]), np.array([NAN, 1.0], np.float32), np.array([0.0, NAN], np.float32))
    assert math.isnan(got[0]) and math.isnan(got[1]) and got.dtype == np.float32


@covers("floor", "ceil", "round", "sign", "sin", "cos")
def test_rounding_sign_and_trigonometry_hand_worked() -> None:
    x = np.array([-2.5, -0.5, 0.5, 1.5, 2.7, -0.0], np.float32)
    assert run_op("floor", x).tolist() == [-3.0, -1.0, 0.0, 1.0, 2.0, -0.0]
    assert run_op("ceil", x).tolist() == [-2.0, -0.0, 1.0, 2.0, 3.0, -0.0]
    assert run_op("round", x).tolist() == [-2.0, -0.0, 0.0, 2.0, 3.0, -0.0]  # halves to even
    assert run_op("sign", x).tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0, 0.0]
    assert math.isnan(run_op("sign", np.array([NAN], np.float32))[0])
    t = np.array([0.0, math.pi / 2, math.pi], np.float32)
    np.testing.assert_allclose(run_op("sin", t), [0.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(run_op("cos", t), [1.0, 0.0, -1.0], atol=1e-6)


@covers("tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh")
def test_circular_and_hyperbolic_functions_hand_worked() -> None:
    """Values known in closed form; outside a domain NaN, at a pole an infinity, without a numpy warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(run_op("tan", np.array([0.0, math.pi / 4], np.float32)), [0.0, 1.0], rtol=1e-6)
        got = run_op("asin", np.array([1.0, 0.5, 2.0], np.float32))
        np.testing.assert_allclose(got[:2], [math.pi / 2, math.pi / 6], rtol=1e-6)
        assert math.isnan(got[2]) and got.dtype == np.float32
        got = run_op("acos", np.array([-1.0, 0.5, -1.5], np.float32))
        np.testing.assert_allclose(got[:2], [math.pi, math.pi / 3], rtol=1e-6)
        assert math.isnan(got[2])
        np.testing.assert_allclose(run_op("atan", np.array([1.0, -np.inf], np.float32)), [math.pi / 4, -math.pi / 2])
        np.testing.assert_allclose(run_op("sinh", np.array([0.0, 1.0], np.float32)), [0.0, (math.e - 1 / math.e) / 2],
                                   rtol=1e-6)
        np.testing.assert_allclose(run_op("cosh", np.array([0.0, 1.0], np.float32)), [1.0, (math.e + 1 / math.e) / 2],
                                   rtol=1e-6)
        assert run_op("cosh", np.array([100.0], np.float32))[0] == np.inf  # overflows float32
        np.testing.assert_allclose(run_op("asinh", np.array([0.0, 1.0], np.float32)), [0.0, math.log(1 + math.sqrt(2))],
                                   rtol=1e-6)
        got = run_op("acosh", np.array([1.0, 2.0, 0.5], np.float32))
        np.testing.assert_allclose(got[:2], [0.0, math.log(2 + math.sqrt(3))], rtol=1e-6)
        assert math.isnan(got[2])
        got = run_op("atanh", np.array([0.5, 1.0, -1.0, 2.0], np.float32))
        np.testing.assert_allclose(got[0], 0.5 * math.log(3.0), rtol=1e-6)
        assert got[1] == np.inf and got[2] == -np.inf and math.isnan(got[3])


@covers("argmax", "argmin")
def test_arg_extremes_hand_worked() -> None:
    x = np.array([[1.0, 3.0, 3.0, -2.0], [NAN, 0.0, NAN, 5.0]], np.float32)
    assert run_op("argmax", x, axis=1).tolist() == [[1], [0]]  # the first of equal maxima; NaN counts as largest
    assert run_op("argmax", x, axis=1, keepdims=False, select_last_index=True).tolist() == [2, 2]
    assert run_op("argmin", x, axis=1, keepdims=False).tolist() == [3, 0]  # NaN counts as smallest too
    assert run_op("argmin", x, axis=0, keepdims=False).tolist() == [1, 1, 1, 0]
    got = run_op("argmax", np.array([[2, 7, 7]], np.int64), axis=-1, select_last_index=True)
    assert got.tolist() == [[2]] and got.dtype == np.int64


@covers("cumsum")
def test_cumsum_hand_worked() -> None:
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)
    assert run_op("cumsum", x, axis=1).tolist() == [[1, 3, 6], [4, 9, 15]]
    assert run_op("cumsum", x, axis=1, exclusive=True).tolist() == [[0, 1, 3], [0, 4, 9]]
    assert run_op("cumsum", x, axis=1, reverse=True).tolist() == [[6, 5, 3], [15, 11, 6]]
    assert run_op("cumsum", x, axis=0, exclusive=True, reverse=True).tolist() == [[4, 5, 6], [0, 0, 0]]
    wraps = run_op("cumsum", np.array([100, 100], np.int8), axis=0)
    assert wraps.tolist() == [100, -56] and wraps.dtype == np.int8  # in the input dtype


@covers("gather-elements")
def test_gather_elements_hand_worked() -> None:
    data = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.int64)
    idx = np.array([[1, 2, 0], [2, 0, 0]], np.int64)
    assert run_op("gather-elements", data, idx, axis=0).tolist() == [[4, 8, 3], [7, 2, 3]]
    assert run_op("gather-elements", data, np.array([[-1], [0], [1]], np.int64), axis=1).tolist() == [[3], [4], [8]]


@covers("mod")
def test_mod_takes_the_divisors_sign_and_fmod_the_dividends() -> None:
    a = np.array([7, -7, 7, -7, 5], np.int64)
    b = np.array([3, 3, -3, -3, 0], np.int64)
    assert run_op("mod", a, b).tolist() == [1, 2, -2, -1, 0]  # by 0: 0
    assert run_op("mod", a, b, fmod=True).tolist() == [1, -1, 1, -1, 0]
    x = np.array([5.5, -5.5, 1.0], np.float32)
    y = np.array([2.0, 2.0, 0.0], np.float32)
    got = run_op("mod", x, y, fmod=True)
    assert got[:2].tolist() == [1.5, -1.5] and math.isnan(got[2])


@covers("topk")
def test_topk_hand_worked() -> None:
    b = GraphBuilder("topk")
    x = b.input("x", f32[2, 5])
    b.output(*b.op_multi("topk", x, k=3, axis=1), *b.op_multi("topk", x, k=2, axis=1, largest=False))
    g = b.build()
    data = np.array([[1.0, 3.0, 3.0, -2.0, NAN], [0.0, 5.0, 4.0, 5.0, 1.0]], np.float32)
    got = run_graph(g, {"x": data})
    values, idx, low, low_idx = (got[v.name] for v in g.outputs)
    assert idx.tolist() == [[1, 2, 0], [1, 3, 2]] and values[1].tolist() == [5.0, 5.0, 4.0]  # ties in index order
    assert low_idx.tolist() == [[3, 0], [0, 4]] and idx.dtype == np.int64
    assert low[0].tolist() == [-2.0, 1.0]


@covers("scatter-elements")
def test_scatter_elements_hand_worked() -> None:
    data = np.zeros((3, 3), np.float32)
    idx = np.array([[1, 0, 2], [0, 2, 1]], np.int64)
    upd = np.array([[1.0, 1.1, 1.2], [2.0, 2.1, 2.2]], np.float32)
    got = run_op("scatter-elements", data, idx, upd, axis=0)
    np.testing.assert_array_equal(got, np.array([[2.0, 1.1, 0.0], [1.0, 0.0, 2.2], [0.0, 2.1, 1.2]], np.float32))
    dup = np.array([[1, 1]], np.int64)  # duplicates: in update order
    one = np.array([[10.0, 20.0, 30.0]], np.float32)
    vals = np.array([[2.0, 5.0]], np.float32)
    assert run_op("scatter-elements", one, dup, vals, axis=1).tolist() == [[10.0, 5.0, 30.0]]
    assert run_op("scatter-elements", one, dup, vals, axis=1, reduction="add").tolist() == [[10.0, 27.0, 30.0]]
    assert run_op("scatter-elements", one, dup, vals, axis=1, reduction="min").tolist() == [[10.0, 2.0, 30.0]]
    assert run_op("scatter-elements", one, np.array([[-1]], np.int64), np.array([[7.0]], np.float32),
                  axis=1, reduction="mul").tolist() == [[10.0, 20.0, 210.0]]


@covers("gather-nd", "scatter-nd")
def test_nd_indexing_hand_worked() -> None:
    data = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    assert run_op("gather-nd", data, np.array([[1, 2], [0, -1]], np.int64)).tolist() == [[20, 21, 22, 23],
                                                                                          [8, 9, 10, 11]]
    batched = run_op("gather-nd", data, np.array([[[2, 3]], [[0, 1]]], np.int64), batch_dims=1)
    assert batched.tolist() == [[11], [13]]  # per batch entry: data[0, 2, 3], data[1, 0, 1]
    out = run_op("scatter-nd", np.zeros((3, 2), np.float32), np.array([[2], [0], [2]], np.int64),
                 np.array([[1, 2], [3, 4], [5, 6]], np.float32), reduction="add")
    assert out.tolist() == [[3, 4], [0, 0], [6, 8]]  # the two updates of row 2 add up
