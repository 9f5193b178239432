"""`to_onnx`: graphs of ONNX-expressible ops written as ONNX, imported again and compared
(and run by onnxruntime when it is installed)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
from tensorsmith.backends import reference
from tensorsmith.ir import Graph, GraphBuilder, f32, from_onnx, i8, i32, i64, to_onnx, u8
from tensorsmith.ir.onnx_export import EXPORTERS, OnnxExportError

from .test_onnx_import import ort_outputs

RNG = np.random.default_rng(3)


def w(*shape: int) -> np.ndarray:
    """Random f32 weights."""
    return RNG.normal(size=shape).astype(np.float32)


def cnn() -> Graph:
    b = GraphBuilder("cnn")
    x = b.input("x", f32[2, 4, 9, 9])
    h = b.conv2d(x, w(6, 2, 3, 3), w(6), strides=(2, 1), pads=(1, 0, 2, 1), dilations=(1, 2), groups=2)
    h = b.batchnorm(h, w(6), w(6), w(6), np.abs(w(6)) + 0.5, epsilon=1e-3)
    h = b.relu(h)
    h = b.maxpool2d(h, [3, 2], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=True)
    h = b.avgpool2d(h, [2, 2], strides=[1, 1], pads=[1, 1, 0, 0], count_include_pad=True)
    g = b.global_avgpool(h)
    y = b.softmax(b.linear(b.flatten(g), w(5, 6), w(5)), axis=-1)
    b.output(y, b.lrn(h, size=3, alpha=1e-3, beta=0.75, bias=1.5))
    return b.build()


def mlp3d() -> Graph:
    b = GraphBuilder("mlp3d")
    x = b.input("x", f32[2, 3, 8])
    h = b.linear(x, w(16, 8), w(16))
    h = b.gelu(b.gelu(h), approximate="tanh")
    h = b.layernorm(h, w(16), w(16), epsilon=1e-4)
    h = b.layernorm(b.dropout(h), axis=1)
    b.output(b.identity(b.linear(h, w(4, 16))))
    return b.build()


def elementwise() -> Graph:
    b = GraphBuilder("elementwise")
    x = b.input("x", f32[3, 4])
    y = b.input("y", f32[4])
    pos = b.add(b.abs(x), np.float32(0.5))
    unit = b.clip(x, min=-0.9, max=0.9)
    outs = [b.sub(x, y), b.mul(x, y), b.div(x, pos), b.pow(pos, y), b.maximum(x, y), b.minimum(x, y),
            b.sigmoid(x), b.tanh(x), b.erf(x), b.sqrt(pos), b.exp(x), b.log(pos), b.neg(x),
            b.clip(x, min=-0.5, max=0.7), b.clip(x, max=0.1),
            *(b.op(op, x) for op in ("floor", "ceil", "round", "sign", "sin", "cos", "tan", "atan", "sinh", "cosh",
                                     "asinh")),
            *(b.op(op, unit) for op in ("asin", "acos", "atanh")), b.op("acosh", b.add(pos, np.float32(1.0)))]
    b.output(*outs)
    return b.build()


def shapes() -> Graph:
    b = GraphBuilder("shapes")
    x = b.input("x", f32[2, 3, 4])
    r = b.transpose(b.reshape(x, [6, 4]), [1, 0])
    c = b.concat([r, b.const(w(4, 2))], axis=1)
    s = b.slice(c, starts=[3, -1], ends=[-10, 0], axes=[0, 1], steps=[-1, -2])
    gt = b.gather(x, np.array([[2, 0], [1, 1]], np.int64), axis=2)
    m = b.matmul(x, b.transpose(x, [0, 2, 1]))
    i = b.cast(b.clip(b.cast(b.mul(x, np.float32(10)), dtype="i32"), min=-7.5, max=3.2), dtype="f32")
    outs = [s, gt, m, i, b.reduce_sum(x, axes=[1], keepdims=False), b.reduce_mean(x, axes=[0, 2]),
            b.reduce_max(x, axes=[]), b.div(b.cast(x, dtype="i32"), np.int32(3)), b.op("argmax", x, axis=2),
            b.op("argmin", x, axis=0, keepdims=False, select_last_index=True),
            b.op("cumsum", x, axis=1, exclusive=True, reverse=True),
            b.op("gather-elements", x, np.array([[[1], [-1], [0]]] * 2, np.int64), axis=2),
            b.op("mod", x, np.float32(0.75), fmod=True), *b.op_multi("topk", x, k=2, axis=1, largest=False),
            b.op("scatter-elements", x, np.array([[[0, 2]] * 3] * 2, np.int64), np.ones((2, 3, 2), np.float32),
                 axis=2, reduction="add"),
            b.op("gather-nd", x, np.array([[[2], [0]], [[1], [-1]]], np.int64), batch_dims=1),
            b.op("scatter-nd", x, np.array([[1, 2], [0, 0]], np.int64), np.ones((2, 4), np.float32), reduction="mul")]
    b.output(*outs)
    return b.build()


def quant() -> Graph:
    b = GraphBuilder("quant")
    x = b.input("x", f32[2, 3, 4])
    q = b.quantize(x, 0.05, 128, dtype="u8")
    qa = b.quantize(x, [0.02, 0.04, 0.03], [1, -2, 0], axis=1, dtype="i8")
    wq = b.const(RNG.integers(-100, 100, size=(5, 4)).astype(np.int8), "wq")
    wd = b.dequantize(wq, [0.01] * 5, [0] * 5, axis=0)
    b.output(b.dequantize(q), b.dequantize(qa), b.linear(x, wd))
    return b.build()


def attention() -> Graph:
    b = GraphBuilder("attention")
    q, kv = b.input("q", f32[2, 5, 12]), b.input("kv", f32[2, 7, 12])
    mask = b.input("mask", f32[2, 1, 1, 7])
    y = b.attention(q, kv, b.tanh(kv), mask, heads=3)
    b.output(y, b.attention(y, q, q, heads=2, scale=0.3, causal=True))
    return b.build()


def logic() -> Graph:
    """Comparisons, logical ops and where on run-time values: an attention-style mask from an int64 input."""
    b = GraphBuilder("logic")
    x, y, m = b.input("x", f32[3, 4]), b.input("y", f32[4]), b.input("m", i64[3, 4])
    lt, ge, eq = b.op("less", x, y), b.op("greater-equal", x, np.float32(0.1)), b.op("equal", m, np.int64(0))
    near = b.op("logical-and", b.op("less-equal", x, y), b.op("greater", x, b.neg(y)))
    cond = b.op("logical-or", b.op("logical-xor", lt, ge), b.op("logical-not", near))
    b.output(b.op("where", cond, x, y), b.op("where", eq, np.float32(-1e9), x), b.cast(near, dtype="f32"))
    return b.build()


GRAPHS: dict[str, Callable[[], Graph]] = {f.__name__: f for f in (cnn, mlp3d, elementwise, shapes, quant, attention,
                                                                   logic)}


def integer() -> Graph:
    """The integer ops: per-row and per-tensor dynamic quantization, f32 and requantized products, a conv, a qadd,
    products and convolutions with weight zero points."""
    b = GraphBuilder("integer")
    x, img = b.input("x", f32[2, 5, 32]), b.input("img", f32[1, 3, 8, 8])
    q, s, z = b.op_multi("quantize-dynamic", x, granularity="row")
    w = RNG.integers(-128, 128, (7, 32)).astype(np.int8)
    ws, bias = RNG.uniform(0.005, 0.01, 7).astype(np.float32), RNG.normal(size=7).astype(np.float32)
    y = b.op("qlinear", q, s, z, w, ws, bias)
    u = b.op("qmatmul", q, s, z, np.ascontiguousarray(w.T), ws, dtype="u8", out_scale=[0.05], out_zero_point=[100])
    qi, si, zi = b.op_multi("quantize-dynamic", img)
    c = b.op("qconv2d", qi, si, zi, RNG.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8),
             RNG.uniform(0.005, 0.01, 4).astype(np.float32), pads=[1, 1, 1, 1], strides=[2, 2], dtype="i8",
             out_scale=[0.02, 0.03, 0.04, 0.05], out_zero_point=[0, 1, -1, 2])
    u2 = b.op("qmatmul", q, s, z, np.ascontiguousarray(w.T[:, ::-1]), ws, dtype="i8", out_scale=[0.04],
              out_zero_point=[-5])
    r = b.op("qadd", u, b.const(np.array([0.05], np.float32), "us"), b.const(np.array([100], np.int32), "uz"), u2,
             b.const(np.array([0.04], np.float32), "u2s"), b.const(np.array([-5], np.int32), "u2z"), dtype="i8",
             out_scale=0.07, out_zero_point=3)
    shifted = b.op("qlinear", q, s, z, w, ws, bias, weight_zero_point=[int(v) for v in RNG.integers(-128, 128, 7)])
    c_shifted = b.op("qconv2d", qi, si, zi, RNG.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8),
                     RNG.uniform(0.005, 0.01, 4).astype(np.float32), pads=[1, 1, 1, 1], weight_zero_point=[100])
    c_channels = b.op("qconv2d", qi, si, zi, RNG.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8),
                      RNG.uniform(0.005, 0.01, 4).astype(np.float32), weight_zero_point=[-128, 0, 5, 127])
    c_groups = b.op("qconv2d", qi, si, zi, RNG.integers(-128, 128, (6, 1, 3, 3)).astype(np.int8),
                    RNG.uniform(0.005, 0.01, 6).astype(np.float32), pads=[1, 0, 1, 0], groups=3,
                    weight_zero_point=[int(v) for v in RNG.integers(-128, 128, 6)])
    b.output(y, u, c, s, z, r, shifted, c_shifted, c_channels, c_groups)
    return b.build()


def _feeds(g: Graph) -> dict[str, np.ndarray]:
    return {v.name: RNG.normal(size=v.type.shape).astype(v.type.dtype.np_dtype) for v in g.inputs}


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("opset", [17, 20])
def test_roundtrip(name: str, opset: int) -> None:
    g = GRAPHS[name]()
    feeds = _feeds(g)
    with np.errstate(all="ignore"):
        want = reference.run(g, feeds)
    model = to_onnx(g, opset=opset)
    assert model.opset_import[0].version == opset
    g2 = from_onnx(model)
    assert [v.name for v in g2.outputs] == [v.name for v in g.outputs]
    with np.errstate(all="ignore"):
        got = reference.run(g2, feeds)
    for v in g.outputs:
        np.testing.assert_allclose(got[v.name], want[v.name], rtol=1e-5, atol=1e-5)
    theirs = ort_outputs(model, feeds)
    if theirs is not None:
        for v, t in zip(g.outputs, theirs):
            tol = 1.0 if v.type.dtype.name in ("i8", "u8") else 1e-4  # a quantized value may round one step off
            np.testing.assert_allclose(t, want[v.name], rtol=1e-4, atol=tol)


def test_every_exporter_is_exercised() -> None:
    used = {n.op for f in (*GRAPHS.values(), integer) for n in f().nodes}
    assert used == set(EXPORTERS)


def test_integer_ops_export_to_what_onnx_runtime_computes_exactly() -> None:
    """Their ONNX forms (Round, Where, MatMulInteger, ConvInteger...) do not import back; ORT runs them."""
    g = integer()
    feeds = _feeds(g)
    want = reference.run(g, feeds)
    theirs = ort_outputs(to_onnx(g), feeds)
    if theirs is None:
        pytest.skip("onnxruntime is not installed")
    for v, t in zip(g.outputs, theirs):
        np.testing.assert_array_equal(t, want[v.name], err_msg=v.name)


def test_attention_exports_as_standard_ops() -> None:
    kinds = {n.op_type for n in to_onnx(attention()).graph.node}
    assert {"Reshape", "Transpose", "MatMul", "Mul", "Add", "Softmax"} <= kinds and "Attention" not in kinds


def test_gelu_form_depends_on_opset() -> None:
    g = mlp3d()
    assert "Gelu" not in {n.op_type for n in to_onnx(g, opset=17).graph.node}
    assert "Gelu" in {n.op_type for n in to_onnx(g, opset=20).graph.node}


def test_outputs_that_are_inputs_or_constants(tmp_path: object) -> None:
    b = GraphBuilder("passthrough")
    x = b.input("x", f32[2])
    c = b.const(np.arange(3, dtype=np.float32), "c")
    b.output(b.relu(x), x, c)
    g = b.build()
    path = tmp_path / "p.onnx"  # type: ignore[operator]
    to_onnx(g, path=path)
    g2 = from_onnx(path)
    got = reference.run(g2, {"x": np.array([-1.0, 2.0], np.float32)})
    outs = [got[v.name] for v in g2.outputs]
    np.testing.assert_array_equal(outs[1], [-1.0, 2.0])
    np.testing.assert_array_equal(outs[2], [0.0, 1.0, 2.0])


def test_unexportable_ops_are_all_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(EXPORTERS, "relu")
    monkeypatch.delitem(EXPORTERS, "sigmoid")
    b = GraphBuilder("g")
    x = b.input("x", f32[2])
    b.output(b.sigmoid(b.relu(x)))
    with pytest.raises(OnnxExportError, match=r"relu \(e\.g\. %relu0\); sigmoid \(e\.g\. %sigmoid1\)"):
        to_onnx(b.build())


def test_opset_limits() -> None:
    with pytest.raises(OnnxExportError, match="opset 13 or newer"):
        to_onnx(cnn(), opset=11)
    with pytest.raises(OnnxExportError, match=r"layernorm.*needs opset 17"):
        to_onnx(mlp3d(), opset=16)
    b = GraphBuilder("dil")
    x = b.input("x", f32[1, 1, 8, 8])
    b.output(b.avgpool2d(x, [2, 2], dilations=(2, 2)))
    with pytest.raises(OnnxExportError, match="needs opset 19"):
        to_onnx(b.build())
    assert isinstance(to_onnx(b.build(), opset=19), onnx.ModelProto)


def test_integer_input_graph() -> None:
    b = GraphBuilder("ints")
    x = b.input("x", i32[4])
    b.output(b.clip(b.mul(x, np.int32(3)), min=-4.5, max=7.9))
    g = b.build()
    feeds = {"x": np.array([-3, -1, 2, 5], np.int32)}
    got = reference.run(from_onnx(to_onnx(g)), feeds)
    np.testing.assert_array_equal(list(got.values())[0], reference.run(g, feeds)[g.outputs[0].name])


def test_integer_products_export_as_matmul_and_conv_integer() -> None:
    b = GraphBuilder("int8")
    x = b.input("x", u8[1, 2, 5, 5])
    a = b.input("a", i8[3, 4])
    wq = RNG.integers(-100, 100, size=(5, 4)).astype(np.int8)
    c = b.conv2d(x, RNG.integers(0, 200, size=(3, 2, 3, 3)).astype(np.uint8), pads=1)
    lin = b.linear(a, wq, RNG.integers(-50, 50, size=5).astype(np.int8))
    mm = b.matmul(a, b.const(wq.T.copy(), "wt"))
    b.output(c, lin, mm)
    g = b.build()
    assert [v.type.dtype.name for v in g.outputs] == ["i32", "i32", "i32"]
    model = to_onnx(g, opset=17)
    assert {"ConvInteger", "MatMulInteger"} <= {n.op_type for n in model.graph.node}
    feeds = {"x": RNG.integers(0, 255, size=(1, 2, 5, 5)).astype(np.uint8),
             "a": RNG.integers(-128, 127, size=(3, 4)).astype(np.int8)}
    want = reference.run(g, feeds)
    got = reference.run(from_onnx(model), feeds)
    for v in g.outputs:
        np.testing.assert_array_equal(got[v.name], want[v.name])
    theirs = ort_outputs(model, feeds)
    if theirs is not None:
        for v, t in zip(g.outputs, theirs):
            np.testing.assert_array_equal(t, want[v.name])


def test_widened_8bit_products_export_as_integer_ops_again() -> None:
    """MatMulInteger / ConvInteger with zero points import as i32 products of cast(q) - zero point; they go
    back to ONNX as MatMulInteger / ConvInteger on the 8-bit tensors (ONNX has no int32 Conv)."""
    x, w = RNG.integers(0, 255, (2, 3, 5, 5)).astype(np.uint8), RNG.integers(-127, 127, (4, 3, 3, 3)).astype(np.int8)
    a, wm = RNG.integers(0, 255, (3, 6)).astype(np.uint8), RNG.integers(-127, 127, (6, 5)).astype(np.int8)
    nodes = [onnx.helper.make_node("ConvInteger", ["x", "w", "xz"], ["c"], pads=[1, 1, 1, 1]),
             onnx.helper.make_node("MatMulInteger", ["a", "wm", "az"], ["m"])]
    inits = [onnx.numpy_helper.from_array(v, k) for k, v in
             {"w": w, "wm": wm, "xz": np.array(131, np.uint8), "az": np.array(7, np.uint8)}.items()]
    graph = onnx.helper.make_graph(nodes, "wide", [onnx.helper.make_tensor_value_info(k, onnx.TensorProto.UINT8, s)
                                                   for k, s in (("x", x.shape), ("a", a.shape))],
                                   [onnx.helper.make_empty_tensor_value_info(k) for k in ("c", "m")], inits)
    g = from_onnx(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)]))
    assert {n.inputs[0].type.dtype.name for n in g.nodes if n.op in ("conv2d", "linear")} == {"i32"}
    model = to_onnx(g)
    assert sorted(n.op_type for n in model.graph.node if "Integer" in n.op_type) == ["ConvInteger", "MatMulInteger"]
    assert "Conv" not in {n.op_type for n in model.graph.node}
    feeds = {"x": x, "a": a}
    want = reference.run(g, feeds)
    np.testing.assert_array_equal(want["m"], (a.astype(np.int32) - 7) @ wm.astype(np.int32))
    theirs = ort_outputs(model, feeds)
    if theirs is not None:
        for name, t in zip(("c", "m"), theirs):
            np.testing.assert_array_equal(t, want[name])


def test_widened_constants_are_written_as_8bit_initializers() -> None:
    """cast(constant u8 zero point) and an i32 weight within int8 (built, not imported) go out as 8-bit tensors."""
    b = GraphBuilder("wide_consts")
    x = b.input("x", u8[2, 6])
    zp = b.cast(b.const(np.array([9], np.uint8), "zp"), dtype="i32")
    xi = b.sub(b.cast(x, dtype="i32"), zp)
    b.output(b.linear(xi, RNG.integers(-128, 128, (3, 6)).astype(np.int32)))
    g = b.build()
    model = to_onnx(g)
    (mmi,) = [n for n in model.graph.node if n.op_type == "MatMulInteger"]
    assert len(mmi.input) == 3  # A, B and A's zero point
    feeds = {"x": RNG.integers(0, 255, (2, 6)).astype(np.uint8)}
    theirs = ort_outputs(model, feeds)
    want = reference.run(g, feeds)[g.outputs[0].name]
    assert np.abs(want).max() > 100
    if theirs is not None:
        np.testing.assert_array_equal(theirs[0], want)


def test_i32_products_without_8bit_operands() -> None:
    """An i32 linear on i32 data exports as MatMul (ONNX Runtime has no int32 Gemm); an i32 conv2d is refused."""
    b = GraphBuilder("wide")
    x = b.input("x", i32[3, 4])
    b.output(b.linear(x, RNG.integers(-1000, 1000, (2, 4)).astype(np.int32)))
    g = b.build()
    model = to_onnx(g)
    assert [n.op_type for n in model.graph.node] == ["MatMul"]
    feeds = {"x": RNG.integers(-1000, 1000, (3, 4)).astype(np.int32)}
    theirs = ort_outputs(model, feeds)
    if theirs is not None:
        np.testing.assert_array_equal(theirs[0], reference.run(g, feeds)[g.outputs[0].name])
    b = GraphBuilder("wide_conv")
    x = b.input("x", i32[1, 2, 4, 4])
    b.output(b.conv2d(x, RNG.integers(-1000, 1000, (3, 2, 3, 3)).astype(np.int32)))
    with pytest.raises(OnnxExportError, match="conv2d.*only as ConvInteger of 8-bit tensors"):
        to_onnx(b.build())


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer-block"])
def test_zoo_models_roundtrip(name: str) -> None:
    from tensorsmith.bench.models.registry import load_model

    m = load_model(name)
    model = to_onnx(m.graph)
    want = reference.run(m.graph, m.inputs)
    got = reference.run(from_onnx(model), m.inputs)
    for v in m.graph.outputs:
        np.testing.assert_allclose(got[v.name], want[v.name], rtol=1e-5, atol=1e-5)
    theirs = ort_outputs(model, m.inputs)
    if theirs is not None:
        for v, t in zip(m.graph.outputs, theirs):
            np.testing.assert_allclose(t, want[v.name], rtol=1e-4, atol=1e-5)


def test_causal_attention_comes_back_causal_through_onnx_and_fuse() -> None:
    """Exported with its mask as a constant, imported as standard ops, recognized again by `fuse`."""
    from tensorsmith.passes import run_pipeline

    b = GraphBuilder("decoder")
    x = b.input("x", f32[2, 6, 8])
    b.output(b.attention(x, x, x, heads=2, causal=True, name="y"))
    g = b.build()
    back = run_pipeline(from_onnx(to_onnx(g)), "fuse")
    (att,) = [n for n in back.nodes if n.op == "attention"]
    assert att.attrs["causal"] and len(att.inputs) == 3
    feeds = {"x": np.random.default_rng(3).standard_normal((2, 6, 8)).astype(np.float32)}
    np.testing.assert_array_equal(reference.run(back, feeds)[back.outputs[0].name], reference.run(g, feeds)["y"])
