"""Reference semantics of elementwise ops against hand-worked values and Python's math module."""

from __future__ import annotations

import itertools
import math
import operator

import ml_dtypes
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from .refcase import covers, run_op

X = np.array([-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.5], np.float32)


@covers("add", "sub", "mul", "maximum", "minimum")
def test_binary_hand_worked_with_row_broadcast() -> None:
    a = np.array([[1, -2, 3], [4, 5, -6]], np.float32)
    b = np.array([10, 20, -30], np.float32)
    assert_array_equal(run_op("add", a, b), [[11, 18, -27], [14, 25, -36]])
    assert_array_equal(run_op("sub", a, b), [[-9, -22, 33], [-6, -15, 24]])
    assert_array_equal(run_op("mul", a, b), [[10, -40, -90], [40, 100, 180]])
    assert_array_equal(run_op("maximum", a, b), [[10, 20, 3], [10, 20, -6]])
    assert_array_equal(run_op("minimum", a, b), [[1, -2, -30], [4, 5, -30]])


@covers("add")
def test_add_broadcasts_both_operands_and_scalars() -> None:
    col = np.array([[1], [2]], np.float32)
    row = np.array([10, 20, 30], np.float32)
    assert_array_equal(run_op("add", col, row), [[11, 21, 31], [12, 22, 32]])
    assert_array_equal(run_op("add", np.float32(5), col), [[6], [7]])
    assert_array_equal(run_op("add", np.array([1, 2], np.int32), np.array([3, -4], np.int32)), [4, -2])


_PY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
       "pow": operator.pow, "maximum": max, "minimum": min}


@covers(*_PY)
@pytest.mark.parametrize("shapes", [((3, 1, 4), (2, 1)), ((4,), (2, 3, 1)), ((1, 3), (1,)), ((), (2, 2))])
def test_binary_broadcast_against_loop(shapes: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    rng = np.random.default_rng(0)
    sa, sb = shapes
    a = rng.uniform(0.5, 2.0, sa).astype(np.float32)
    b = rng.uniform(0.5, 2.0, sb).astype(np.float32)
    rank = max(len(sa), len(sb))
    out_shape = tuple(max(([1] * (rank - len(s)) + list(s))[i] for s in (sa, sb)) for i in range(rank))
    for op, fn in _PY.items():
        got = run_op(op, a, b)
        assert got.shape == out_shape
        for idx in itertools.product(*map(range, out_shape)):
            ia = tuple(i % d for i, d in zip(idx[rank - len(sa):], sa))
            ib = tuple(i % d for i, d in zip(idx[rank - len(sb):], sb))
            want = fn(float(a[ia]), float(b[ib]))
            assert math.isclose(float(got[idx]), want, rel_tol=1e-6), (op, idx)


@covers("div")
def test_div_float_and_integer_rounds_toward_zero() -> None:
    assert_array_equal(run_op("div", np.array([1, -3, 7], np.float32), np.array([2, 4, -0.5], np.float32)),
                       [0.5, -0.75, -14])
    a = [7, -7, 7, -7, 6, -6, 0, 1, -1, 9, -9]
    b = [2, 2, -2, -2, 3, 3, 5, 3, 3, -4, -4]
    want = [3, -3, -3, 3, 2, -2, 0, 0, 0, -2, 2]
    assert want == [math.trunc(x / y) for x, y in zip(a, b)]
    for dt in (np.int32, np.int8, np.int64):
        got = run_op("div", np.array(a, dt), np.array(b, dt))
        assert got.dtype == dt
        assert_array_equal(got, want)


@covers("pow")
def test_pow_hand_worked() -> None:
    assert_allclose(run_op("pow", np.array([2, 3, 4, 9], np.float32), np.array([3, 2, 0.5, -0.5], np.float32)),
                    [8, 9, 2, 1 / 3], rtol=1e-6)
    assert_array_equal(run_op("pow", np.array([2, -3], np.int32), np.array([3, 2], np.int32)), [8, 9])


@covers("relu", "neg", "abs", "identity", "dropout")
def test_sign_ops_float_and_int() -> None:
    assert_array_equal(run_op("relu", X), [0, 0, 0, 0, 0.25, 1, 2.5])
    assert_array_equal(run_op("neg", X), [3, 1, 0.5, 0, -0.25, -1, -2.5])
    assert_array_equal(run_op("abs", X), [3, 1, 0.5, 0, 0.25, 1, 2.5])
    ints = np.array([-3, 0, 4], np.int8)
    assert_array_equal(run_op("relu", ints), [0, 0, 4])
    assert_array_equal(run_op("neg", ints), [3, 0, -4])
    assert_array_equal(run_op("abs", ints.astype(np.int32)), [3, 0, 4])
    assert_array_equal(run_op("identity", X), X)
    assert_array_equal(run_op("dropout", X, ratio=0.9), X)  # inference: no scaling, nothing dropped


@covers("gelu")
def test_gelu_exact_and_tanh_forms() -> None:
    exact = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in X.tolist()]
    tanh = [0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))) for v in X.tolist()]
    assert_allclose(run_op("gelu", X), exact, rtol=1e-6, atol=1e-7)
    assert_allclose(run_op("gelu", X, approximate="tanh"), tanh, rtol=1e-6, atol=1e-7)
    one = np.array([1.0], np.float32)
    assert_allclose(run_op("gelu", one), [0.8413447460685429], rtol=1e-7)
    assert_allclose(run_op("gelu", one, approximate="tanh"), [0.8411919906082768], rtol=1e-7)


@covers("sigmoid", "tanh", "erf", "exp")
def test_transcendentals_against_math() -> None:
    x = np.array([-30.0, -3.0, -0.5, 0.0, 0.7, 2.0, 20.0], np.float32)
    checks = {
        "sigmoid": lambda v: 1 / (1 + math.exp(-v)),
        "tanh": math.tanh,
        "erf": math.erf,
        "exp": math.exp,
    }
    for op, fn in checks.items():
        want = [fn(v) for v in x.tolist()]
        assert_allclose(run_op(op, x), want, rtol=1e-6, atol=0, err_msg=op)
    far = run_op("sigmoid", np.array([-100.0, 100.0], np.float32))
    assert 0 < far[0] < 1e-40 and far[1] == 1  # no overflow warning, no underflow to zero


@covers("sqrt", "log")
def test_sqrt_and_log_against_math() -> None:
    x = np.array([1e-6, 0.25, 1.0, 2.0, 1e6], np.float32)
    assert_allclose(run_op("sqrt", x), [math.sqrt(v) for v in x.tolist()], rtol=1e-7)
    assert_allclose(run_op("log", x), [math.log(v) for v in x.tolist()], rtol=1e-6)
    assert_array_equal(run_op("sqrt", np.array([0.0, 4.0, 9.0], np.float32)), [0, 2, 3])


@covers("sigmoid", "exp")
def test_half_precision_inputs_keep_their_dtype() -> None:
    h = np.array([0.0, 1.0], np.float16)
    out = run_op("exp", h)
    assert out.dtype == np.float16
    assert_allclose(out.astype(np.float64), [1.0, math.e], rtol=1e-3)
    bf = np.array([0.0, 2.0], ml_dtypes.bfloat16)
    out = run_op("sigmoid", bf)
    assert out.dtype == ml_dtypes.bfloat16
    assert_allclose(out.astype(np.float64), [0.5, 1 / (1 + math.exp(-2))], rtol=1e-2)


@covers("clip")
def test_clip_float_and_integer() -> None:
    assert_array_equal(run_op("clip", X, min=-1.0, max=2.0), [-1, -1, -0.5, 0, 0.25, 1, 2])
    assert_array_equal(run_op("clip", X, min=0.0), [0, 0, 0, 0, 0.25, 1, 2.5])
    assert_array_equal(run_op("clip", X), X)  # defaults are -inf, +inf
    ints = np.arange(8, dtype=np.int32)
    assert_array_equal(run_op("clip", ints, min=1.5, max=5.5), [2, 2, 2, 3, 4, 5, 5, 5])
    out = run_op("clip", np.array([-128, 0, 127], np.int8), min=-1000.0, max=3.0)
    assert out.dtype == np.int8
    assert_array_equal(out, [-128, 0, 3])
    # bounds outside the dtype's range saturate (the real result -60.5 is 0 in u8), never wrap
    u = np.array([0, 7, 255], np.uint8)
    assert_array_equal(run_op("clip", u, min=-60.5, max=-60.5), [0, 0, 0])
    assert_array_equal(run_op("clip", u, min=300.0, max=400.0), [255, 255, 255])


@covers("cast")
def test_cast_truncates_and_rounds() -> None:
    x = np.array([1.7, -1.7, 2.5, -0.0, 0.3], np.float32)
    assert_array_equal(run_op("cast", x, dtype="i32"), [1, -1, 2, 0, 0])
    assert_array_equal(run_op("cast", x, dtype="bool"), [True, True, True, False, True])
    assert_array_equal(run_op("cast", np.array([-128, 5], np.int8), dtype="f32"), [-128.0, 5.0])
    third = run_op("cast", np.array([1 / 3, 65519.0], np.float32), dtype="f16")
    assert third.dtype == np.float16
    assert third.astype(np.float64).tolist() == [0.333251953125, 65504.0]
    bf = run_op("cast", np.array([1.01171875, 1.00390625], np.float32), dtype="bf16")
    assert bf.astype(np.float64).tolist() == [1.015625, 1.0]  # ties to even at 8 significant bits
    assert_array_equal(run_op("cast", np.array([True, False]), dtype="i32"), [1, 0])
