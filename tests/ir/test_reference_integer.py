"""Reference rules of the integer ops against hand-worked cases: rounding half to even, saturation, zero points."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from tensorsmith.backends.reference.integer import exact_in_f64
from tensorsmith.ir import BuildError, ExecutionError, GraphBuilder, f32, i8, u8
from tensorsmith.ir.ops.integer import MAX_ACC_K_SHIFTED

from .refcase import covers, run_graph, run_op

F = np.float32


def _dynamic(x: np.ndarray, granularity: str) -> list[np.ndarray]:
    b = GraphBuilder("qd")
    v = b.input("x", f32[x.shape])
    outs = b.op_multi("quantize-dynamic", v, granularity=granularity)
    b.output(*outs)
    res = run_graph(b.build(), {"x": x.astype(F)})
    return [res[o.name] for o in outs]


@covers("quantize-dynamic")
def test_quantize_dynamic_per_tensor_rounds_half_to_even() -> None:
    q, s, z = _dynamic(np.array([0, 1.25, 1.75, 2.25, 127.5, 3.0], F), "tensor")  # range [0, 127.5]: scale 0.5
    assert s.tolist() == [0.5] and z.tolist() == [0] and s.dtype == np.float32 and z.dtype == np.int32
    assert q.dtype == np.uint8 and q.tolist() == [0, 2, 4, 4, 255, 6]  # 2.5 -> 2, 3.5 -> 4, 4.5 -> 4


@covers("quantize-dynamic")
def test_quantize_dynamic_per_row_widens_to_zero() -> None:
    x = np.array([[-25.5, 102.0, 0.25, 0.75], [0, 0, 0, 0], [1.0, 127.5, 0.5, 0.25]], F)
    q, s, z = _dynamic(x, "row")
    assert s.tolist() == [0.5, 1.0, 0.5]  # all zeros: scale 1
    assert z.tolist() == [51, 0, 0]  # 25.5 / 0.5 = 51; a positive row's range starts at 0
    assert q[0].tolist() == [0, 255, 51, 53]  # 0.5 -> 0, 1.5 -> 2 (half to even), plus 51
    assert q[1].tolist() == [0, 0, 0, 0]
    assert q[2].tolist() == [2, 255, 1, 0]  # 0.5 -> 0


X = np.array([[10, 20]], np.uint8)
W = np.array([[1, -2], [3, 4]], np.int8)
WS, BIAS = np.array([0.25, 1.0], F), np.array([1.0, -1.0], F)


def _q(op: str, x: np.ndarray, sx: list[float], zx: list[int], w: np.ndarray, **attrs: object) -> np.ndarray:
    return run_op(op, x, np.array(sx, F), np.array(zx, np.int32), w, WS, BIAS, **attrs)


@covers("qlinear")
def test_qlinear_dequantizes_hand_worked() -> None:
    # x - zp = [5, 15]; acc = [5 - 30, 15 + 60] = [-25, 75]; y = 0.5 * [0.25, 1] * acc + [1, -1]
    assert _q("qlinear", X, [0.5], [5], W).tolist() == [[-2.125, 36.5]]


@covers("qlinear")
def test_qlinear_requantizes_half_to_even_and_saturates() -> None:
    # y / 0.25 = [-8.5, 146]: -8.5 -> -8 (half to even), + 10 -> [2, 156]
    assert _q("qlinear", X, [0.5], [5], W, dtype="u8", out_scale=[0.25], out_zero_point=[10]).tolist() == [[2, 156]]
    assert _q("qlinear", X, [0.5], [5], W, dtype="i8", out_scale=[0.25], out_zero_point=[0]).tolist() == [[-8, 127]]
    per_channel = _q("qlinear", X, [0.5], [5], W, dtype="u8", out_scale=[0.25, 0.1], out_zero_point=[0, 0])
    assert per_channel.tolist() == [[0, 255]]  # -8 clips to 0, 365 to 255


@covers("qlinear")
def test_qlinear_per_row_and_signed_activations() -> None:
    x = np.array([[10, 20], [0, 255]], np.uint8)
    # row 1: x - 0 = [0, 255]: acc = [-510, 1020]; y = 2 * [0.25, 1] * acc + [1, -1]
    assert _q("qlinear", x, [0.5, 2.0], [5, 0], W).tolist() == [[-2.125, 36.5], [-254.0, 2039.0]]
    xs = np.array([[-10, 20]], np.int8)  # x - zp = [-5, 25]: acc = [-55, 85]
    assert _q("qlinear", xs, [1.0], [-5], W).tolist() == [[-55 * 0.25 + 1, 85 - 1]]


@covers("qmatmul")
def test_qmatmul_reads_the_weight_as_k_by_n() -> None:
    assert _q("qmatmul", X, [0.5], [5], np.ascontiguousarray(W.T)).tolist() == [[-2.125, 36.5]]


@covers("qlinear")
def test_qlinear_subtracts_the_weight_zero_point_hand_worked() -> None:
    # x - zp = [5, 15]; w - [-3, 2] = [[4, 1], [1, 2]]: acc = [20 + 15, 5 + 30] = [35, 35]
    y = _q("qlinear", X, [0.5], [5], W, weight_zero_point=[-3, 2])
    assert y.tolist() == [[0.5 * 0.25 * 35 + 1, 0.5 * 35 - 1]]
    # one zero point for all channels: w - 127 = [[-126, -129], [-124, -123]]: acc = [-630 - 1935, -620 - 1845]
    y = _q("qlinear", X, [1.0], [5], W, weight_zero_point=[127], dtype="i8", out_scale=[100.0], out_zero_point=[0])
    assert y.tolist() == [[-6, -25]]  # -2565 * 0.25 + 1 = -640.25 -> -6; -2465 - 1 -> -24.66 -> -25
    assert _q("qmatmul", X, [0.5], [5], np.ascontiguousarray(W.T), weight_zero_point=[-3, 2]).tolist() == \
        [[0.5 * 0.25 * 35 + 1, 0.5 * 35 - 1]]


@covers("qconv2d")
def test_qconv2d_subtracts_the_weight_zero_point_per_output_channel() -> None:
    x = np.arange(1, 10, dtype=np.uint8).reshape(1, 1, 3, 3)  # x - 1 = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    w = np.array([[[[1]]], [[[1]]]], np.int8)
    y = run_op("qconv2d", x, np.array([1.0], F), np.array([1], np.int32), w, np.ones(2, F),
               weight_zero_point=[0, 3])  # channel 1: (x - 1) * (1 - 3)
    assert y[0, 0].tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert y[0, 1].tolist() == [[0, -2, -4], [-6, -8, -10], [-12, -14, -16]]


def test_weight_zero_points_are_checked() -> None:
    b = GraphBuilder("bad")
    x = b.input("x", u8[2, 4])
    operands = (x, np.ones(1, F), np.zeros(1, np.int32), np.ones((5, 4), np.int8), np.ones(5, F))
    with pytest.raises(BuildError, match="weight_zero_point must have 1 or 5 values"):
        b.op("qlinear", *operands, weight_zero_point=[1, 2])
    with pytest.raises(BuildError, match=r"weight_zero_point must lie in \[-128, 127\], got \[1, 128\]"):
        b.op("qlinear", *operands, weight_zero_point=[1, 128, 1, 1, 1])
    long = b.input("long", u8[1, MAX_ACC_K_SHIFTED + 1])
    wide = (long, np.ones(1, F), np.zeros(1, np.int32), np.ones((1, MAX_ACC_K_SHIFTED + 1), np.int8), np.ones(1, F))
    b.op("qlinear", *wide)  # within the limit without a weight zero point
    with pytest.raises(BuildError, match=f"reduction length {MAX_ACC_K_SHIFTED + 1} exceeds {MAX_ACC_K_SHIFTED}"):
        b.op("qlinear", *wide, weight_zero_point=[1])


@covers("qlinear")
def test_qlinear_refuses_weights_outside_weight_bits() -> None:
    with pytest.raises(ExecutionError, match=r"weight_bits=7 holds weights in \[-64, 63\]"):
        _q("qlinear", X, [0.5], [5], np.array([[1, 100], [0, 0]], np.int8), weight_bits=7)


@covers("qconv2d")
def test_qconv2d_pads_with_the_zero_point() -> None:
    x = np.arange(1, 10, dtype=np.uint8).reshape(1, 1, 3, 3)  # x - 1 = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    w = np.array([[[[1, 0], [0, -1]]]], np.int8)  # out[i, j] = c[i, j] - c[i + 1, j + 1]
    y = run_op("qconv2d", x, np.array([0.5], F), np.array([1], np.int32), w, np.array([2.0], F),
               np.array([0.5], F), pads=[1, 1, 1, 1])
    acc = np.array([[0, -1, -2, 0], [-3, -4, -4, 2], [-6, -4, -4, 5], [0, 6, 7, 8]], F)
    assert y.tolist() == [[(acc + 0.5).tolist()]]


@covers("qlinear")
def test_qlinear_of_extreme_operands_equals_the_int64_product() -> None:
    """The float64 product of the integer operands is exact: 255 - 0 against -128 over 4096 terms, and mixed."""
    rng = np.random.default_rng(3)
    k = 4096
    x = np.where(rng.random((3, k)) < 0.9, 255, 0).astype(np.uint8)
    x[0] = 255
    w = np.where(rng.random((4, k)) < 0.5, -128, 127).astype(np.int8)
    w[0] = -128
    acc = x.astype(np.int64) @ w.astype(np.int64).T
    assert acc[0, 0] == -255 * 128 * k
    operands = (x, np.array([1.0], F), np.array([0], np.int32), w, np.ones(4, F))
    y = run_op("qlinear", *operands, dtype="i8", out_scale=[1.0], out_zero_point=[0])
    assert_array_equal(y, np.clip(acc, -128, 127))
    assert_array_equal(run_op("qlinear", *operands), acc.astype(F))


def test_float64_products_are_used_only_where_they_are_exact() -> None:
    xc = np.full((1, 8), 255, np.int64)
    w = np.full((1, 8), -128, np.int8)
    assert exact_in_f64(xc, w, 2**53 // (255 * 128) - 1)
    assert not exact_in_f64(xc, w, 2**53 // (255 * 128) + 1)
    assert exact_in_f64(np.zeros((0, 8), np.int64), w, 8)


def test_integer_ops_check_their_operands() -> None:
    b = GraphBuilder("bad")
    x = b.input("x", u8[2, 4])
    with pytest.raises(BuildError, match="x_scale"):
        b.op("qlinear", x, np.ones(3, F), np.zeros(3, np.int32), np.ones((5, 4), np.int8), np.ones(5, F))
    with pytest.raises(BuildError, match="weight must be i8"):
        b.op("qlinear", x, np.ones(1, F), np.zeros(1, np.int32), np.ones((5, 4), np.uint8), np.ones(5, F))
    with pytest.raises(BuildError, match="out_scale"):
        b.op("qlinear", x, np.ones(1, F), np.zeros(1, np.int32), np.ones((5, 4), np.int8), np.ones(5, F), dtype="u8")


def _qadd(a: np.ndarray, sa: float, za: int, b: np.ndarray, sb: float, zb: int, **attrs: object) -> np.ndarray:
    return run_op("qadd", a, np.array([sa], F), np.array([za], np.int32), b, np.array([sb], F),
                  np.array([zb], np.int32), **attrs)


@covers("qadd")
def test_qadd_rounds_half_to_even_and_saturates() -> None:
    a = np.array([10, 11, 12, 0, 255, 128], np.uint8)  # zero point 10, scale 0.5: 0, 0.5, 1, -5, 122.5, 59
    b = np.array([0, 0, 1, 0, 127, -128], np.int8)  # zero point 0, scale 0.5: 0, 0, 0.5, 0, 63.5, -64
    y = _qadd(a, 0.5, 10, b, 0.5, 0, dtype="u8", out_scale=1.0, out_zero_point=3)
    # sums 0, 0.5, 1.5, -5, 186, -5 -> rint 0, 0, 2, -5, 186, -5 -> +3 -> 3, 3, 5, -2 (saturates to 0), 189, -2 -> 0
    assert y.dtype == np.uint8 and y.tolist() == [3, 3, 5, 0, 189, 0]
    s8 = _qadd(a, 0.5, 10, b, 0.5, 0, dtype="i8", out_scale=0.5, out_zero_point=-100)
    assert s8.dtype == np.int8 and s8.tolist() == [-100, -99, -97, -110, 127, -110]


@covers("qadd")
def test_qadd_equals_dequantize_add_quantize() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (3, 50)).astype(np.uint8)
    b = rng.integers(-128, 128, (3, 50)).astype(np.int8)
    bld = GraphBuilder("qdq")
    va, vb = bld.input("a", u8[3, 50]), bld.input("b", i8[3, 50])
    s = bld.add(bld.dequantize(va, 0.031, 121), bld.dequantize(vb, 0.0173, -7))
    bld.output(bld.quantize(s, 0.047, -3, dtype="i8"))
    want = next(iter(run_graph(bld.build(), {"a": a, "b": b}).values()))
    got = _qadd(a, 0.031, 121, b, 0.0173, -7, dtype="i8", out_scale=0.047, out_zero_point=-3)
    np.testing.assert_array_equal(got, want)


def test_qadd_type_errors_name_the_operand() -> None:
    bld = GraphBuilder("bad")
    a, b = bld.input("a", u8[2, 3]), bld.input("b", u8[3, 2])
    s, z = bld.const(np.array([1.0], F), "s"), bld.const(np.array([0], np.int32), "z")
    with pytest.raises(BuildError, match=r"qadd: a \[2, 3\] and b \[3, 2\] must have one shape"):
        bld.op("qadd", a, s, z, b, s, z)
    with pytest.raises(BuildError, match="qadd: b must be u8 or i8, got f32"):
        bld.op("qadd", a, s, z, bld.input("c", f32[2, 3]), s, z)
    with pytest.raises(BuildError, match="out_zero_point must lie in"):
        bld.op("qadd", a, s, z, a, s, z, dtype="i8", out_zero_point=200)
    with pytest.raises(BuildError, match="out_scale must be positive"):
        bld.op("qadd", a, s, z, a, s, z, out_scale=0.0)
    with pytest.raises(BuildError, match=r"a_scale must be f32\[1\]"):
        bld.op("qadd", a, z, z, a, s, z)
