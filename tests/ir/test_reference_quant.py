"""Reference quantize/dequantize: per tensor and per axis, i8 and u8, round half to even, saturation."""

from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import pytest

from .refcase import covers, run_op

X = np.float32([0, 0.25, 0.75, 1.25, -0.25, -0.75, -1.25, 100, -100, 63.5, 64])


def _q(v: float, scale: float, zp: int, lo: int, hi: int) -> int:
    """Python's round() rounds half to even, as the op does."""
    return max(lo, min(hi, round(v / scale) + zp))


@covers("quantize")
def test_quantize_per_tensor_i8_hand_worked() -> None:
    got = run_op("quantize", X, scale=[0.5], zero_point=[0])
    assert got.dtype == np.int8
    assert got.tolist() == [0, 0, 2, 2, 0, -2, -2, 127, -128, 127, 127]
    assert run_op("quantize", X, scale=[0.5], zero_point=[-3]).tolist() == [-3, -3, -1, -1, -3, -5, -5, 127, -128,
                                                                            124, 125]


@covers("quantize")
def test_quantize_per_tensor_u8_hand_worked() -> None:
    got = run_op("quantize", X, scale=[0.5], zero_point=[128], dtype="u8")
    assert got.dtype == np.uint8
    assert got.tolist() == [128, 128, 130, 130, 128, 126, 126, 255, 0, 255, 255]
    assert run_op("quantize", X, scale=[0.5], zero_point=[0], dtype="u8").tolist() == [0, 0, 2, 2, 0, 0, 0, 200, 0,
                                                                                       127, 128]


@covers("quantize")
@pytest.mark.parametrize("dtype,zp", [("i8", 0), ("i8", 7), ("u8", 128), ("u8", 3)])
def test_quantize_per_tensor_matches_python_round(dtype: str, zp: int) -> None:
    lo, hi = (-128, 127) if dtype == "i8" else (0, 255)
    x = (np.arange(-300, 301, dtype=np.float32) * 0.125).astype(np.float32)  # many exact .5 ties
    got = run_op("quantize", x, scale=[0.25], zero_point=[zp], dtype=dtype)
    assert got.tolist() == [_q(v, 0.25, zp, lo, hi) for v in x.tolist()]


@covers("quantize")
@pytest.mark.parametrize("axis", [0, 1, -1, -2])
@pytest.mark.parametrize("dtype", ["i8", "u8"])
def test_quantize_per_axis_against_loop(axis: int, dtype: str) -> None:
    lo, hi = (-128, 127) if dtype == "i8" else (0, 255)
    x = (np.arange(-12, 12, dtype=np.float32) * 0.75).reshape(4, 6)
    n = x.shape[axis]
    scales = [0.25 * 2**k for k in range(n)]
    zps = [(k * 37) % 20 - (10 if dtype == "i8" else 0) for k in range(n)]
    got = run_op("quantize", x, scale=scales, zero_point=zps, axis=axis, dtype=dtype)
    for i, j in itertools.product(range(4), range(6)):
        c = (i, j)[axis % 2]
        assert got[i, j] == _q(float(x[i, j]), scales[c], zps[c], lo, hi), (i, j)


@covers("dequantize")
def test_dequantize_per_tensor_hand_worked() -> None:
    got = run_op("dequantize", np.int8([-128, -1, 0, 1, 127]), scale=[0.5], zero_point=[-1])
    assert got.dtype == np.float32
    assert got.tolist() == [-63.5, 0, 0.5, 1, 64]
    assert run_op("dequantize", np.uint8([0, 127, 128, 255]), scale=[0.25], zero_point=[128]).tolist() == [
        -32, -0.25, 0, 31.75]
    assert run_op("dequantize", np.int32([-1000, 0, 3]), scale=[0.5], zero_point=[0]).tolist() == [-500, 0, 1.5]
    i4 = np.array([-8, -1, 0, 7], ml_dtypes.int4)
    assert run_op("dequantize", i4, scale=[0.5], zero_point=[1]).tolist() == [-4.5, -1, -0.5, 3]


@covers("dequantize")
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_dequantize_per_axis_against_loop(axis: int) -> None:
    q = np.arange(0, 24, dtype=np.uint8).reshape(2, 3, 4) * 10
    n = q.shape[axis]
    scales = [0.5 + k for k in range(n)]
    zps = [100 + k for k in range(n)]
    got = run_op("dequantize", q, scale=scales, zero_point=zps, axis=axis)
    for idx in itertools.product(range(2), range(3), range(4)):
        c = idx[axis % 3]
        assert got[idx] == (int(q[idx]) - zps[c]) * scales[c]


@covers("quantize", "dequantize")
def test_round_trip_error_is_at_most_half_a_step() -> None:
    x = np.random.default_rng(3).uniform(-1, 1, 200).astype(np.float32)
    q = run_op("quantize", x, scale=[1 / 127], zero_point=[0])
    back = run_op("dequantize", q, scale=[1 / 127], zero_point=[0])
    assert np.abs(back - x).max() <= 0.5 / 127 + 1e-7
