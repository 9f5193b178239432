"""ONNX import of elementwise math, activations, softmax, reductions and quantization."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from tensorsmith.ir import from_onnx

from .test_onnx_import import check, make_model, one_node, rand


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Pow"])
@pytest.mark.parametrize("sa,sb", [((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3))])
def test_binary_broadcasting(op: str, sa: tuple, sb: tuple) -> None:
    a, b = rand(*sa), rand(*sb)
    if op == "Pow":
        a = np.abs(a) + 0.1
    feeds = {"a": a, "b": b}
    check(one_node(op, feeds), feeds, rtol=1e-5, atol=1e-5)


def test_integer_division_truncates_toward_zero() -> None:
    feeds = {"a": np.array([7, -7, 7, -7, 0], np.int64), "b": np.array([2, 2, -2, -2, 3], np.int64)}
    check(one_node("Div", feeds), feeds)


def test_pow_with_integer_exponent_constant() -> None:
    x = rand(3, 4)
    check(one_node("Pow", {"x": x}, {"e": np.array(2, np.int64)}, opset=15), {"x": x})


def test_legacy_broadcast_attribute() -> None:
    x = rand(2, 3, 4)
    b = rand(3)
    m = one_node("Add", {"x": x}, {"b": b}, broadcast=1, axis=1, opset=6)
    check(m, {"x": x}, expected=[x + b.reshape(3, 1)])  # b's axis 0 lines up with x's axis 1


@pytest.mark.parametrize("op", ["Sum", "Mean", "Max", "Min"])
def test_variadic(op: str) -> None:
    feeds = {"a": rand(2, 3), "b": rand(3), "c": rand(2, 1)}
    check(one_node(op, feeds), feeds)


UNARY = ["Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Neg", "Abs", "Reciprocal", "Softsign", "Softplus", "Elu",
         "Selu", "LeakyRelu", "HardSigmoid", "HardSwish"]


@pytest.mark.parametrize("op", UNARY)
def test_unary(op: str) -> None:
    x = rand(3, 5) * 3
    check(one_node(op, {"x": x}), {"x": x}, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["Sqrt", "Log"])
def test_unary_positive(op: str) -> None:
    x = np.abs(rand(4, 3)) + 0.01
    check(one_node(op, {"x": x}), {"x": x})


@pytest.mark.parametrize("attrs", [dict(alpha=0.3), dict(alpha=2.0)])
@pytest.mark.parametrize("op", ["LeakyRelu", "Elu"])
def test_activation_attributes(op: str, attrs: dict) -> None:
    x = rand(3, 5)
    check(one_node(op, {"x": x}, **attrs), {"x": x})


@pytest.mark.parametrize("slope_shape,opset", [((1,), 16), ((3, 1, 1), 16), ((5,), 16), ((3,), 6)])
def test_prelu(slope_shape: tuple, opset: int) -> None:
    x = rand(2, 3, 4, 5)
    slope = rand(*slope_shape)
    m = one_node("PRelu", {"x": x}, {"s": slope}, opset=opset)
    if opset < 7:  # opset 6: a 1-D slope runs along the channel axis
        want = np.where(x > 0, x, x * slope.reshape(3, 1, 1))
        check(m, {"x": x}, expected=[want])
    else:
        check(m, {"x": x})


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_opset20(approximate: str) -> None:
    x = rand(4, 6) * 3
    check(one_node("Gelu", {"x": x}, approximate=approximate, opset=20), {"x": x})


@pytest.mark.parametrize("opset,lo,hi", [(6, -0.5, 0.5), (13, -0.5, None), (13, None, 0.2), (13, None, None)])
def test_clip(opset: int, lo: float | None, hi: float | None) -> None:
    x = rand(3, 4)
    if opset < 11:
        attrs = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
        check(one_node("Clip", {"x": x}, opset=opset, **attrs), {"x": x})
        return
    names = ["x", "lo" if lo is not None else "", "hi" if hi is not None else ""]
    while names[-1] == "":
        names.pop()
    inits = {k: np.array(v, np.float32) for k, v in (("lo", lo), ("hi", hi)) if v is not None}
    check(make_model([helper.make_node("Clip", names, ["y"])], {"x": x}, ["y"], inits, opset), {"x": x})


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset,axis", [(11, 1), (11, -1), (13, 1), (13, 0), (11, 0)])
def test_softmax_axis_semantics(op: str, opset: int, axis: int) -> None:
    x = rand(2, 3, 4) * 3
    m = one_node(op, {"x": x}, axis=axis, opset=opset)
    if opset >= 13:
        check(m, {"x": x})
        return
    # before opset 13 the input is coerced to 2-D at `axis` (the evaluator ignores this)
    ax = axis % x.ndim
    f = x.reshape(int(np.prod(x.shape[:ax])), -1).astype(np.float64)
    f = f - f.max(1, keepdims=True)
    total = np.exp(f).sum(1, keepdims=True)
    f = f - np.log(total) if op == "LogSoftmax" else np.exp(f) / total
    check(m, {"x": x}, expected=[f.reshape(x.shape).astype(np.float32)])


REDUCE = ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceSumSquare", "ReduceL1", "ReduceL2"]


@pytest.mark.parametrize("op", REDUCE)
@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([0, -1], 0), (None, 1)])
def test_reductions(op: str, opset: int, axes: list | None, keepdims: int) -> None:
    x = rand(3, 4, 5)
    axes_as_input = opset >= 18 or (op == "ReduceSum" and opset >= 13)
    if axes is None:
        m = one_node(op, {"x": x}, keepdims=keepdims, opset=opset)
    elif axes_as_input:
        m = one_node(op, {"x": x}, {"a": np.array(axes, np.int64)}, keepdims=keepdims, opset=opset)
    else:
        m = one_node(op, {"x": x}, axes=axes, keepdims=keepdims, opset=opset)
    check(m, {"x": x}, rtol=1e-5, atol=1e-5)


def test_reduce_noop_with_empty_axes_and_empty_set() -> None:
    x = rand(3, 4)
    g = check(one_node("ReduceSum", {"x": x}, noop_with_empty_axes=1, opset=13), {"x": x})
    assert g.nodes == [] or [n.op for n in g.nodes] == ["identity"]
    e = np.zeros((2, 0, 3), np.float32)
    check(one_node("ReduceMax", {"x": e}, {"a": np.array([1], np.int64)}, keepdims=1, opset=18), {"x": e})


@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_min_of_booleans_is_all(keepdims: int) -> None:
    x = np.array([[True, False, True], [True, True, True]])
    g = check(one_node("ReduceMin", {"x": x}, {"a": np.array([1], np.int64)}, keepdims=keepdims, opset=20), {"x": x})
    assert [n.op for n in g.nodes] == ["logical-not", "reduce-max", "logical-not"]


def test_reduce_min_of_unsigned_is_reported() -> None:
    x = np.arange(6, dtype=np.uint8).reshape(2, 3)
    with pytest.raises(ValueError, match="ReduceMin of"):
        from_onnx(one_node("ReduceMin", {"x": x}, axes=[1], opset=13))


@pytest.mark.parametrize("zp_dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("per_axis", [False, True])
def test_quantize_dequantize(zp_dtype: type, per_axis: bool) -> None:
    x = rand(2, 3, 4) * 4
    scale = np.array([0.05, 0.02, 0.1], np.float32) if per_axis else np.array(0.03, np.float32)
    zp = (np.array([3, -2, 0]) if zp_dtype == np.int8 else np.array([128, 120, 5])) if per_axis else np.array(4)
    zp = zp.astype(zp_dtype)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)]
    m = make_model(nodes, {"x": x}, ["q", "y"], {"s": scale, "z": zp}, opset=19)
    g = check(m, {"x": x})
    q = [n for n in g.nodes if n.op == "quantize"][0]
    assert q.attrs["axis"] == (1 if per_axis else None)


def test_dequantized_weights_feed_a_conv() -> None:
    x = rand(1, 2, 5, 5)
    wq = np.random.default_rng(1).integers(-100, 100, size=(3, 2, 3, 3)).astype(np.int8)
    nodes = [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
             helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    inits = {"wq": wq, "ws": np.array([0.01, 0.02, 0.03], np.float32), "wz": np.zeros(3, np.int8)}
    g = check(make_model(nodes, {"x": x}, ["y"], inits, opset=19), {"x": x}, atol=1e-5)
    assert [n.op for n in g.nodes] == ["dequantize", "conv2d"]


@pytest.mark.parametrize("a_dt,b_dt,zps", [(np.uint8, np.uint8, False), (np.int8, np.int8, False),
                                           (np.uint8, np.int8, True), (np.uint8, np.uint8, True)])
@pytest.mark.parametrize("b_const", [True, False])
def test_matmul_integer(a_dt: type, b_dt: type, zps: bool, b_const: bool) -> None:
    gen = np.random.default_rng(2)
    a = gen.integers(0 if a_dt == np.uint8 else -128, 127, size=(3, 4)).astype(a_dt)
    b = gen.integers(0 if b_dt == np.uint8 else -128, 127, size=(4, 5)).astype(b_dt)
    ins, inits, names = {"a": a}, {}, ["a", "b"]
    (inits if b_const else ins)["b"] = b
    if zps:
        inits.update(az=np.array([3, 0, 7], a_dt), bz=np.arange(5).astype(b_dt))
        names += ["az", "bz"]
    m = make_model([helper.make_node("MatMulInteger", names, ["y"])], ins, ["y"], inits, opset=13)
    az = inits.get("az", np.zeros(3)).astype(np.int32)[:, None]  # a 1-D a_zero_point is per row of A
    bz = inits.get("bz", np.zeros(5)).astype(np.int32)
    want = (a.astype(np.int32) - az) @ (b.astype(np.int32) - bz)
    check(m, ins, expected=[want])  # the evaluator does not broadcast a per-row zero point


@pytest.mark.parametrize("zps", [False, True])
def test_conv_integer(zps: bool) -> None:
    gen = np.random.default_rng(4)
    x = gen.integers(0, 255, size=(1, 2, 5, 5)).astype(np.uint8)
    w = gen.integers(0, 255, size=(3, 2, 3, 3)).astype(np.uint8)
    names, inits = ["x", "w"], {"w": w}
    if zps:
        names += ["xz", "wz"]
        inits.update(xz=np.array(100, np.uint8), wz=np.array(120, np.uint8))
    m = make_model([helper.make_node("ConvInteger", names, ["y"], pads=[1, 1, 1, 1])], {"x": x}, ["y"], inits, 13)
    check(m, {"x": x})
