"""ONNX import of QLinearMatMul, QLinearConv and DynamicQuantizeLinear, checked against ONNX's reference
evaluator and onnxruntime, and the forms the integer ops cannot express refused with the reason."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator
from tensorsmith.backends import reference
from tensorsmith.ir import Graph, from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError

from .test_onnx_import import make_model, ort_outputs

RNG = np.random.default_rng(11)


def ints(dtype: type, *shape: int, lo: int | None = None, hi: int | None = None) -> np.ndarray:
    """Random integers over the range of `dtype` (or [lo, hi])."""
    info = np.iinfo(dtype)
    return RNG.integers(info.min if lo is None else lo, (info.max if hi is None else hi) + 1, size=shape).astype(dtype)


def scalar(v: float | int, dtype: type) -> np.ndarray:
    """A 0-d array."""
    return np.array(v, dtype)


def assert_within_one_step(got: np.ndarray, want: np.ndarray) -> None:
    """Same shape and dtype; quantized values at most one step apart and at least 99% of them equal."""
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    assert diff.max(initial=0) <= 1
    assert np.mean(diff == 0) >= 0.99, np.mean(diff == 0)


def check_quantized(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> Graph:
    """Import, run on the reference backend, compare with ONNX's reference evaluator and onnxruntime."""
    g = from_onnx(model)
    got = reference.run(g, feeds)
    outs = [got[v.name] for v in g.outputs]
    for name, theirs in (("onnx", ReferenceEvaluator(model).run(None, feeds)), ("ort", ort_outputs(model, feeds))):
        if theirs is None:
            continue
        for o, t in zip(outs, theirs):
            t = np.asarray(t)
            if t.dtype.kind in "iu":
                assert_within_one_step(o, t)
            else:
                np.testing.assert_allclose(o, t, rtol=1e-6, err_msg=name)
    return g


def qlinear_matmul(a: np.ndarray, b: np.ndarray, a_scale: np.ndarray, a_zp: np.ndarray, b_scale: np.ndarray,
                   b_zp: np.ndarray, y_scale: float, y_zp: np.ndarray, b_input: bool = False) -> onnx.ModelProto:
    """One QLinearMatMul node; B an initializer unless `b_input`."""
    inits = {"as": a_scale, "az": a_zp, "b": b, "bs": b_scale, "bz": b_zp, "ys": scalar(y_scale, np.float32),
             "yz": y_zp}
    ins = {"a": a}
    if b_input:
        ins["b"] = inits.pop("b")
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    return make_model([node], ins, ["y"], inits, opset=13)


@pytest.mark.parametrize("a_dt,a_shape", [(np.uint8, (5, 16)), (np.int8, (2, 3, 16)), (np.uint8, (16,))])
@pytest.mark.parametrize("b_dt,per_column", [(np.int8, False), (np.int8, True), (np.uint8, True)])
@pytest.mark.parametrize("y_dt", [np.uint8, np.int8])
def test_qlinear_matmul(a_dt: type, a_shape: tuple, b_dt: type, per_column: bool, y_dt: type) -> None:
    a, n = ints(a_dt, *a_shape), 6
    if b_dt == np.int8:
        b, b_zp = ints(np.int8, 16, n, lo=-127), np.zeros(n if per_column else (), np.int8)
    else:  # u8 weights with zero point 128 (and one column off-centre): w - zp stays in [-128, 127]
        b, b_zp = ints(np.uint8, 16, n, lo=20, hi=225), np.array([128] * (n - 1) + [100], np.uint8)
    b_scale = RNG.uniform(0.002, 0.01, n if per_column else ()).astype(np.float32)
    a_zp = scalar(3 if a_dt == np.uint8 else -2, a_dt)
    y_zp = scalar(120 if y_dt == np.uint8 else -5, y_dt)
    m = qlinear_matmul(a, b, scalar(0.02, np.float32), a_zp, b_scale, b_zp, 0.1, y_zp)
    g = check_quantized(m, {"a": a})
    (q,) = [n for n in g.nodes if n.op == "qmatmul"]
    assert q.attrs["dtype"] == ("u8" if y_dt == np.uint8 else "i8") and q.attrs["out_zero_point"] == (int(y_zp),)


def test_qlinear_matmul_saturates_and_rounds_half_to_even() -> None:
    a = np.array([[1, 2, 3, 200], [0, 0, 0, 255]], np.uint8)
    b = np.array([[1], [1], [1], [1]], np.int8)
    m = qlinear_matmul(a, b, scalar(1.0, np.float32), scalar(0, np.uint8), scalar(1.0, np.float32),
                       scalar(0, np.int8), 4.0, scalar(0, np.int8))
    got = reference.run(from_onnx(m), {"a": a})["y"]
    np.testing.assert_array_equal(got, [[52], [64]])  # 206 / 4 = 51.5 -> 52 (even); 255 / 4 -> 63.75 -> 64
    m = qlinear_matmul(a, b, scalar(1.0, np.float32), scalar(0, np.uint8), scalar(1.0, np.float32),
                       scalar(0, np.int8), 1.0, scalar(0, np.int8))
    np.testing.assert_array_equal(reference.run(from_onnx(m), {"a": a})["y"], [[127], [127]])


def qlinear_conv(x: np.ndarray, w: np.ndarray, w_scale: np.ndarray, w_zp: np.ndarray, y_zp: np.ndarray,
                 bias: np.ndarray | None = None, **attrs: object) -> onnx.ModelProto:
    """One QLinearConv node with x scale 0.05 and zero point 7 (in x's dtype), y scale 0.2."""
    inits = {"xs": scalar(0.05, np.float32), "xz": scalar(7, x.dtype), "w": w, "ws": w_scale, "wz": w_zp,
             "ys": scalar(0.2, np.float32), "yz": y_zp}
    if bias is not None:
        inits["B"] = bias
    node = helper.make_node("QLinearConv", ["x", *inits], ["y"], **attrs)
    return make_model([node], {"x": x}, ["y"], inits, opset=13)


@pytest.mark.parametrize("x_dt,y_dt", [(np.uint8, np.uint8), (np.int8, np.int8), (np.uint8, np.int8)])
@pytest.mark.parametrize("per_channel,with_bias", [(True, True), (False, False)])
def test_qlinear_conv(x_dt: type, y_dt: type, per_channel: bool, with_bias: bool) -> None:
    x = ints(x_dt, 2, 4, 7, 6)
    w = ints(np.int8, 6, 2, 3, 3, lo=-127)
    ws = RNG.uniform(0.001, 0.004, 6 if per_channel else ()).astype(np.float32)
    bias = RNG.integers(-3000, 3000, 6).astype(np.int32) if with_bias else None
    y_zp = scalar(10 if y_dt == np.uint8 else -3, y_dt)
    m = qlinear_conv(x, w, ws, np.zeros(6 if per_channel else (), np.int8), y_zp, bias, pads=[1, 0, 2, 1],
                     strides=[2, 1], dilations=[1, 2], group=2)
    g = check_quantized(m, {"x": x})
    (q,) = [n for n in g.nodes if n.op == "qconv2d"]
    assert q.attrs["groups"] == 2 and list(q.attrs["pads"]) == [1, 0, 2, 1]


def test_qlinear_conv_u8_weights_with_zero_point() -> None:
    x = ints(np.uint8, 1, 3, 5, 5)
    w = ints(np.uint8, 4, 3, 3, 3, lo=10, hi=250)
    m = qlinear_conv(x, w, np.full(4, 0.003, np.float32), np.array([128, 128, 130, 127], np.uint8),
                     scalar(128, np.uint8), auto_pad="SAME_UPPER")
    g = check_quantized(m, {"x": x})
    (wv,) = [v for v in g.values() if v.is_constant and v.type.dtype.name == "i8"]
    np.testing.assert_array_equal(wv.data[2], w[2].astype(np.int32) - 130)


@pytest.mark.parametrize("b_dt,per_column", [(np.uint8, False), (np.uint8, True), (np.int8, True)])
def test_qlinear_matmul_asymmetric_weights_keep_their_zero_point(b_dt: type, per_column: bool) -> None:
    """Full-range u8 (or s8) weights with zero points far from the middle (ONNX Runtime's QUInt8 weights): w - zp
    leaves s8, so qmatmul keeps the weight in s8 (u8 less 128) with weight_zero_point (the zero point less 128)."""
    a, n = ints(np.uint8, 5, 16), 4
    b = ints(b_dt, 16, n)
    zps = [0, 255, 31, 200] if b_dt == np.uint8 else [-128, 127, 0, 60]
    b_zp = np.array(zps if per_column else zps[0], b_dt)
    b_scale = RNG.uniform(0.002, 0.01, n if per_column else ()).astype(np.float32)
    m = qlinear_matmul(a, b, scalar(0.02, np.float32), scalar(3, np.uint8), b_scale, b_zp, 0.1, scalar(120, np.uint8))
    g = check_quantized(m, {"a": a})
    (q,) = [n for n in g.nodes if n.op == "qmatmul"]
    offset = 128 if b_dt == np.uint8 else 0
    assert q.attrs["weight_zero_point"] == tuple(int(z) - offset for z in b_zp.reshape(-1))
    np.testing.assert_array_equal(q.inputs[3].data, b.astype(np.int32) - offset)
    acc = (a.astype(np.int64) - 3) @ (b.astype(np.int64) - b_zp.astype(np.int64))
    want = np.clip(np.rint(acc * (np.float32(0.02) * b_scale) / np.float32(0.1)) + 120, 0, 255).astype(np.uint8)
    assert_within_one_step(reference.run(g, {"a": a})["y"], want)


@pytest.mark.parametrize("b_dt", [np.uint8, np.int8])
def test_qlinear_matmul_with_a_batched_b_is_one_qmatmul_per_batch_entry(b_dt: type) -> None:
    a, b = ints(np.uint8, 3, 2, 8), ints(b_dt, 3, 8, 5)
    b_zp = scalar(77 if b_dt == np.uint8 else -9, b_dt)
    m = qlinear_matmul(a, b, scalar(0.02, np.float32), scalar(4, np.uint8), scalar(0.01, np.float32), b_zp, 0.2,
                       scalar(100, np.uint8))
    g = check_quantized(m, {"a": a})
    assert [n.op for n in g.nodes].count("qmatmul") == 3 and reference.run(g, {"a": a})["y"].shape == (3, 2, 5)


def test_qlinear_conv_asymmetric_u8_weights_keep_their_zero_point() -> None:
    x = ints(np.uint8, 1, 3, 5, 5)
    w = ints(np.uint8, 4, 3, 3, 3)
    m = qlinear_conv(x, w, np.full(4, 0.003, np.float32), scalar(17, np.uint8), scalar(128, np.uint8),
                     pads=[1, 1, 1, 1])
    g = check_quantized(m, {"x": x})
    (q,) = [n for n in g.nodes if n.op == "qconv2d"]
    assert q.attrs["weight_zero_point"] == (17 - 128,)


@pytest.mark.parametrize("shape,offset", [((3, 4, 5), 0.0), ((7,), 2.0), ((), -1.5), ((2, 6), -3.0)])
def test_dynamic_quantize_linear(shape: tuple, offset: float) -> None:
    x = np.asarray(RNG.normal(size=shape) + offset, np.float32)
    m = make_model([helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])], {"x": x}, ["y", "s", "z"],
                   opset=11)
    g = check_quantized(m, {"x": x})
    assert [n.op for n in g.nodes].count("quantize-dynamic") == 1
    y, s, z = (reference.run(g, {"x": x})[k] for k in ("y", "s", "z"))
    assert s.shape == z.shape == () and z.dtype == np.uint8 and y.shape == shape
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    np.testing.assert_allclose(s, (hi - lo) / 255, rtol=1e-6)


def test_matmul_integer_with_a_computed_zero_point() -> None:
    """ONNX Runtime's dynamic quantization: DynamicQuantizeLinear feeding MatMulInteger's a_zero_point."""
    x = RNG.normal(size=(4, 10)).astype(np.float32) + 0.5
    w = ints(np.int8, 10, 3, lo=-127)
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]),
             helper.make_node("MatMulInteger", ["q", "w", "z"], ["y"])]
    m = make_model(nodes, {"x": x}, ["y", "s"], {"w": w}, opset=11)
    g = check_quantized(m, {"x": x})
    got = reference.run(g, {"x": x})["y"]
    assert got.dtype == np.int32 and np.abs(got).max() > 100  # real i32 accumulations, not all zero


def test_qlinear_matmul_per_row_a_scale() -> None:
    """A 1-D a_scale / a_zero_point is one per row of a 2-D a (ONNX's definition; ONNX Runtime takes only one)."""
    a, b = ints(np.uint8, 3, 8), ints(np.int8, 8, 4, lo=-127)
    a_scale, a_zp = np.array([0.01, 0.02, 0.04], np.float32), np.array([0, 5, 200], np.uint8)
    m = qlinear_matmul(a, b, a_scale, a_zp, scalar(0.005, np.float32), scalar(0, np.int8), 0.1, scalar(128, np.uint8))
    got = reference.run(from_onnx(m), {"a": a})["y"]
    acc = (a.astype(np.int64) - a_zp[:, None]) @ b.astype(np.int64)
    want = np.clip(np.rint(acc * (a_scale[:, None] * np.float32(0.005)) / np.float32(0.1)) + 128, 0, 255)
    assert_within_one_step(got, want.astype(np.uint8))
    assert np.sum((want > 0) & (want < 255)) >= 8  # mostly not saturated: the per-row scales matter


def test_qlinear_matmul_reads_a_computed_activation_quantization() -> None:
    """DynamicQuantizeLinear's scale and zero point (computed at run time) feeding QLinearMatMul."""
    x = RNG.normal(size=(4, 12)).astype(np.float32)
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]),
             helper.make_node("QLinearMatMul", ["q", "s", "z", "b", "bs", "bz", "ys", "yz"], ["y"])]
    inits = {"b": ints(np.int8, 12, 5, lo=-127), "bs": scalar(0.01, np.float32), "bz": scalar(0, np.int8),
             "ys": scalar(0.05, np.float32), "yz": scalar(128, np.uint8)}
    g = check_quantized(make_model(nodes, {"x": x}, ["y"], inits, opset=13), {"x": x})
    assert [n.op for n in g.nodes if n.op in ("quantize-dynamic", "qmatmul")] == ["quantize-dynamic", "qmatmul"]


@pytest.mark.parametrize("n_scales", [1, 5])
def test_qlinear_matmul_with_a_computed_b_scale(n_scales: int) -> None:
    """b_scale is an input of qmatmul, so it may be computed (here: a graph input); B itself must be constant."""
    a, b = ints(np.uint8, 3, 12), ints(np.int8, 12, 5, lo=-127)
    bs = RNG.uniform(0.005, 0.02, n_scales).astype(np.float32)
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    inits = {"as": scalar(0.02, np.float32), "az": scalar(9, np.uint8), "b": b, "bz": scalar(0, np.int8),
             "ys": scalar(0.1, np.float32), "yz": scalar(100, np.uint8)}
    g = check_quantized(make_model([node], {"a": a, "bs": bs}, ["y"], inits, opset=13), {"a": a, "bs": bs})
    (q,) = [n for n in g.nodes if n.op == "qmatmul"]
    assert not q.inputs[4].is_constant and q.inputs[4].type.shape == (5,)


def test_dynamic_quantize_linear_of_zeros_has_scale_one() -> None:
    """All zeros: ONNX Runtime's scale 1 (ONNX's reference evaluator says 1/255); q and the zero point are 0."""
    x = np.zeros((2, 3), np.float32)
    m = make_model([helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])], {"x": x}, ["y", "s", "z"],
                   opset=11)
    got = reference.run(from_onnx(m), {"x": x})
    assert float(got["s"]) == 1.0 and int(got["z"]) == 0 and not got["y"].any()
    theirs = ort_outputs(m, {"x": x})
    if theirs is not None:
        assert float(theirs[1]) == 1.0


REFUSED = [
    ("b is computed at run time", lambda: qlinear_matmul(
        ints(np.uint8, 2, 4), ints(np.int8, 4, 3), scalar(1, np.float32), scalar(0, np.uint8), scalar(1, np.float32),
        scalar(0, np.int8), 1.0, scalar(0, np.uint8), b_input=True)),
    ("the integer matmul \\(qmatmul\\) takes a 2-D B", lambda: qlinear_matmul(
        ints(np.uint8, 2, 4), ints(np.int8, 2, 4, 3), scalar(1, np.float32), scalar(0, np.uint8),
        scalar(1, np.float32), scalar(0, np.int8), 1.0, scalar(0, np.uint8))),
    ("one scale per tensor or per output channel \\(3, axis 1 of b\\)", lambda: qlinear_matmul(
        ints(np.uint8, 2, 4), ints(np.int8, 4, 3), scalar(1, np.float32), scalar(0, np.uint8),
        np.full(4, 0.1, np.float32), np.zeros(4, np.int8), 1.0, scalar(0, np.uint8))),
    ("per-row output scales", lambda: make_model(
        [helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])],
        {"a": ints(np.uint8, 2, 4)}, ["y"],
        {"as": scalar(1, np.float32), "az": scalar(0, np.uint8), "b": ints(np.int8, 4, 3),
         "bs": scalar(1, np.float32), "bz": scalar(0, np.int8), "ys": np.ones(2, np.float32),
         "yz": np.zeros(2, np.uint8)}, opset=13)),
    ("only 2-D convolution", lambda: make_model(
        [helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])],
        {"x": ints(np.uint8, 1, 2, 9)}, ["y"],
        {"xs": scalar(1, np.float32), "xz": scalar(0, np.uint8), "w": ints(np.int8, 3, 2, 3),
         "ws": scalar(1, np.float32), "wz": scalar(0, np.int8), "ys": scalar(1, np.float32),
         "yz": scalar(0, np.uint8)}, opset=13)),
]


@pytest.mark.parametrize("why,make", REFUSED,
                         ids=["computed-b", "3-d-b", "b-scale-per-row-of-b", "per-row-y", "conv1d"])
def test_unexpressible_forms_are_refused_with_the_reason(why: str, make: object) -> None:
    model = make()  # type: ignore[operator]
    with pytest.raises(OnnxImportError, match=why) as e:
        from_onnx(model)
    op = model.graph.node[0].op_type
    assert f"({op}, outputs ['y'])" in str(e.value) and "unsupported" in str(e.value)
