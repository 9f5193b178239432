"""Reference semantics of linear algebra, normalization, softmax and reductions against loops."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from .refcase import covers, run_op

RNG = np.random.default_rng(1)


def rand(*shape: int) -> np.ndarray:
    return RNG.uniform(-2, 2, shape).astype(np.float32)


@covers("linear")
def test_linear_against_loop() -> None:
    x, w, b = rand(2, 3, 4), rand(5, 4), rand(5)
    got = run_op("linear", x, w, b)
    assert got.shape == (2, 3, 5)
    for i, j, n in itertools.product(range(2), range(3), range(5)):
        want = sum(float(x[i, j, k]) * float(w[n, k]) for k in range(4)) + float(b[n])
        assert math.isclose(got[i, j, n], want, rel_tol=1e-5, abs_tol=1e-5)
    assert_array_equal(run_op("linear", np.float32([[1, 2]]), np.float32([[3, 4], [5, -6], [0, 1]])), [[11, -7, 2]])


def test_linear_with_empty_reduction_is_the_bias() -> None:
    x, w, b = np.zeros((3, 0), np.float32), np.zeros((4, 0), np.float32), rand(4)
    assert_array_equal(run_op("linear", x, w, b), np.broadcast_to(b, (3, 4)))
    assert run_op("linear", np.zeros((0, 2), np.float32), rand(4, 2)).shape == (0, 4)


@covers("matmul")
def test_matmul_batched_broadcast_against_loop() -> None:
    a, b = rand(2, 1, 3, 4), rand(5, 4, 2)
    got = run_op("matmul", a, b)
    assert got.shape == (2, 5, 3, 2)
    for p, q, i, j in itertools.product(range(2), range(5), range(3), range(2)):
        want = sum(float(a[p, 0, i, k]) * float(b[q, k, j]) for k in range(4))
        assert math.isclose(got[p, q, i, j], want, rel_tol=1e-5, abs_tol=1e-5)


@covers("matmul")
def test_matmul_vector_cases() -> None:
    m = np.float32([[1, 2], [3, 4], [5, 6]])
    assert_array_equal(run_op("matmul", np.float32([1, -1, 2]), m), [8, 10])
    assert_array_equal(run_op("matmul", m, np.float32([1, -1])), [-1, -1, -1])
    dot = run_op("matmul", np.float32([1, 2, 3]), np.float32([4, 5, 6]))
    assert dot.shape == () and dot == 32


@covers("global-avgpool")
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 6), (1, 2, 2, 3, 2)])
def test_global_avgpool_against_loop(shape: tuple[int, ...]) -> None:
    x = rand(*shape)
    got = run_op("global-avgpool", x)
    assert got.shape == shape[:2] + (1,) * (len(shape) - 2)
    for n, c in itertools.product(range(shape[0]), range(shape[1])):
        vals = x[n, c].reshape(-1).tolist()
        assert math.isclose(got[n, c].item(), sum(vals) / len(vals), rel_tol=1e-6, abs_tol=1e-6)


@covers("batchnorm")
@pytest.mark.parametrize("shape", [(2, 3, 2, 2), (4, 3)])
def test_batchnorm_against_loop(shape: tuple[int, ...]) -> None:
    x = rand(*shape)
    scale, bias, mean = rand(3), rand(3), rand(3)
    var = RNG.uniform(0.1, 2, 3).astype(np.float32)
    got = run_op("batchnorm", x, scale, bias, mean, var, epsilon=1e-3)
    for idx in itertools.product(*map(range, shape)):
        c = idx[1]
        want = (float(x[idx]) - float(mean[c])) / math.sqrt(float(var[c]) + 1e-3) * float(scale[c]) + float(bias[c])
        assert math.isclose(got[idx], want, rel_tol=1e-5, abs_tol=1e-5)


def _layernorm_loop(x: np.ndarray, axis: int, scale: np.ndarray | None, bias: np.ndarray | None,
                    eps: float) -> np.ndarray:
    lead, tail = x.shape[:axis], x.shape[axis:]
    out = np.zeros(x.shape)
    for i in itertools.product(*map(range, lead)):
        vals = [float(v) for v in x[i].reshape(-1)]
        mu = sum(vals) / len(vals)
        var = sum((v - mu) ** 2 for v in vals) / len(vals)
        for k, j in enumerate(itertools.product(*map(range, tail))):
            y = (vals[k] - mu) / math.sqrt(var + eps)
            if scale is not None:
                y *= float(scale[j])
            if bias is not None:
                y += float(bias[j])
            out[i + j] = y
    return out


@covers("layernorm")
@pytest.mark.parametrize("axis,affine", [(-1, 2), (2, 1), (1, 2), (1, 0), (0, 2)])
def test_layernorm_against_loop(axis: int, affine: int) -> None:
    x = rand(2, 3, 4)
    tail = x.shape[axis:]
    scale = rand(*tail) if affine >= 1 else None
    bias = rand(*tail) if affine >= 2 else None
    args = [a for a in (x, scale, bias) if a is not None]
    got = run_op("layernorm", *args, axis=axis, epsilon=1e-5)
    assert_allclose(got, _layernorm_loop(x, axis % 3, scale, bias, 1e-5), rtol=1e-5, atol=1e-5)


@covers("layernorm")
def test_layernorm_constant_row_gives_bias() -> None:
    x = np.float32([[3, 3, 3, 3], [1, 2, 3, 4]])
    got = run_op("layernorm", x, np.ones(4, np.float32), np.float32([0.5, 0, 0, 0]), epsilon=1e-5)
    assert_allclose(got[0], [0.5, 0, 0, 0], atol=1e-6)
    s = math.sqrt(1.25 + 1e-5)
    assert_allclose(got[1], [-1.5 / s + 0.5, -0.5 / s, 0.5 / s, 1.5 / s], rtol=1e-6)


@covers("softmax")
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_against_loop(axis: int) -> None:
    x = rand(2, 3, 4) * 4
    got = run_op("softmax", x, axis=axis)
    ax = axis % 3
    for idx in itertools.product(*map(range, x.shape)):
        others = [idx[:ax] + (k,) + idx[ax + 1:] for k in range(x.shape[ax])]
        want = math.exp(float(x[idx])) / sum(math.exp(float(x[o])) for o in others)
        assert math.isclose(got[idx], want, rel_tol=1e-5)


@covers("softmax")
def test_softmax_large_values_are_stable() -> None:
    got = run_op("softmax", np.float32([1000, 1001, 1002]))
    assert_allclose(got, [0.09003057317038046, 0.24472847105479764, 0.6652409557748219], rtol=1e-6)


def _lrn_loop(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """ONNX LRN: the sum runs over channels [c - floor((size-1)/2), c + ceil((size-1)/2)]."""
    out = np.zeros(x.shape)
    c_count = x.shape[1]
    for idx in itertools.product(*map(range, x.shape)):
        c = idx[1]
        lo, hi = max(0, c - (size - 1) // 2), min(c_count - 1, c + math.ceil((size - 1) / 2))
        sq = sum(float(x[(idx[0], k) + idx[2:]]) ** 2 for k in range(lo, hi + 1))
        out[idx] = float(x[idx]) / (bias + alpha / size * sq) ** beta
    return out


@covers("lrn")
@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_lrn_against_loop(size: int) -> None:
    x = rand(2, 5, 2, 2)
    got = run_op("lrn", x, size=size, alpha=0.3, beta=0.75, bias=2.0)
    assert_allclose(got, _lrn_loop(x, size, 0.3, 0.75, 2.0), rtol=1e-5, atol=1e-6)


@covers("reduce-sum", "reduce-mean", "reduce-max")
def test_reductions_hand_worked() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert_array_equal(run_op("reduce-sum", x, axes=[1], keepdims=False), [3, 12])
    assert_array_equal(run_op("reduce-sum", x, axes=[1]), [[3], [12]])
    all_kept = run_op("reduce-sum", x)
    assert all_kept.shape == (1, 1) and all_kept[0, 0] == 15
    scalar = run_op("reduce-sum", x, axes=[], keepdims=False)
    assert scalar.shape == () and scalar == 15
    assert_array_equal(run_op("reduce-mean", x, axes=[0], keepdims=False), [1.5, 2.5, 3.5])
    assert_array_equal(run_op("reduce-mean", x, axes=[-1]), [[1], [4]])
    assert_array_equal(run_op("reduce-max", x * -1, axes=[-1], keepdims=False), [0, -3])
    assert run_op("reduce-max", x, keepdims=False) == 5
    assert_array_equal(run_op("reduce-sum", np.int32([[1, -2], [3, 4]]), axes=[0], keepdims=False), [4, 2])
    assert_array_equal(run_op("reduce-max", np.int8([[-128, -5], [3, -7]]), axes=[1], keepdims=False), [-5, 3])


@covers("reduce-sum", "reduce-mean", "reduce-max")
@pytest.mark.parametrize("axes,keepdims", [((0, 2), True), ((0, 2), False), ((-1,), False), ((), True),
                                           ((1, -3), True)])
def test_reductions_against_loop(axes: tuple[int, ...], keepdims: bool) -> None:
    x = rand(2, 3, 4)
    red = {a % 3 for a in axes} or {0, 1, 2}
    kept = [d for d in range(3) if d not in red]
    fns = {"reduce-sum": sum, "reduce-mean": lambda v: sum(v) / len(v), "reduce-max": max}
    for op, fn in fns.items():
        got = run_op(op, x, axes=list(axes), keepdims=keepdims)
        shape = tuple(1 if d in red else x.shape[d] for d in range(3)) if keepdims else tuple(x.shape[d] for d in kept)
        assert got.shape == shape
        for out_idx in itertools.product(*[range(x.shape[d]) for d in kept]):
            vals = []
            for red_idx in itertools.product(*[range(x.shape[d]) for d in sorted(red)]):
                full = dict(zip(kept, out_idx)) | dict(zip(sorted(red), red_idx))
                vals.append(float(x[tuple(full[d] for d in range(3))]))
            pos = tuple(0 if d in red else full[d] for d in range(3)) if keepdims else out_idx
            assert math.isclose(got[pos], fn(vals), rel_tol=1e-5, abs_tol=1e-5), (op, pos)
