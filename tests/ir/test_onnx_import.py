"""ONNX import of matrix, convolution, pooling and normalization operators, checked against
ONNX's own reference implementation (onnx.reference.ReferenceEvaluator)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from tensorsmith.backends import reference
from tensorsmith.ir import Graph, from_onnx

RNG = np.random.default_rng(0)


def rand(*shape: int, dtype: type = np.float32) -> np.ndarray:
    """Random normal test data."""
    return RNG.normal(size=shape).astype(dtype)


def make_model(nodes: list[onnx.NodeProto], inputs: dict[str, np.ndarray], outputs: list[str],
               inits: dict[str, np.ndarray] | None = None, opset: int = 17) -> onnx.ModelProto:
    """A one-graph ONNX model; graph inputs are typed from the example arrays."""
    vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
           for n, a in inputs.items()]
    outs = [helper.make_empty_tensor_value_info(n) for n in outputs]
    init = [numpy_helper.from_array(np.asarray(a), n) for n, a in (inits or {}).items()]
    graph = helper.make_graph(nodes, "test", vis, outs, initializer=init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def ort_outputs(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray] | None:
    """onnxruntime's outputs, or None when it is not installed or cannot run the model."""
    try:
        import onnxruntime
    except ImportError:
        return None
    onnxruntime.set_default_logger_severity(3)
    try:
        opts = onnxruntime.SessionOptions()  # no graph rewrites: e.g. QDQ fusion changes the numerics
        opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = onnxruntime.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return sess.run(None, feeds)
    except Exception:  # noqa: BLE001 - an opset or type onnxruntime lacks: no second opinion
        return None


def assert_outputs(outs: list[np.ndarray], expected: list[np.ndarray], rtol: float, atol: float) -> None:
    """Same count, shapes, dtypes, and values within tolerance."""
    assert len(outs) == len(expected)
    for o, e in zip(outs, expected):
        e = np.asarray(e)
        assert o.shape == e.shape, (o.shape, e.shape)
        assert o.dtype == e.dtype, (o.dtype, e.dtype)
        np.testing.assert_allclose(o, e, rtol=rtol, atol=atol)


def check(model: onnx.ModelProto, feeds: dict[str, np.ndarray], rtol: float = 1e-5, atol: float = 1e-6,
          expected: list[np.ndarray] | None = None, ort: bool = True, **import_args: object) -> Graph:
    """Import `model`, run it on the reference backend and compare with ONNX's reference evaluator
    (or `expected`), and with onnxruntime when it is installed, can run the model and `ort` is set."""
    if expected is None:
        expected = ReferenceEvaluator(model).run(None, feeds)
    graph = from_onnx(model, **import_args)
    with np.errstate(all="ignore"):
        got = reference.run(graph, feeds)
    outs = [got[v.name] for v in graph.outputs]
    assert_outputs(outs, expected, rtol, atol)
    theirs = ort_outputs(model, feeds) if ort else None
    if theirs is not None:
        assert_outputs(outs, theirs, max(rtol, 1e-5), max(atol, 1e-5))
    return graph


def one_node(op: str, inputs: dict[str, np.ndarray], inits: dict[str, np.ndarray] | None = None,
             n_out: int = 1, opset: int = 17, **attrs: object) -> onnx.ModelProto:
    """A model of one node reading `inputs` then `inits` (in that order); "" skips an input slot."""
    names = list(inputs) + list(inits or {})
    outs = [f"y{i}" for i in range(n_out)]
    return make_model([helper.make_node(op, names, outs, **attrs)], inputs, outs, inits, opset)


@pytest.mark.parametrize("trans_a,trans_b,alpha,beta,c_shape,b_const", [
    (0, 0, 1.0, 1.0, (5,), True), (0, 1, 1.0, 1.0, (1, 5), True), (1, 0, 0.5, 2.0, (3, 5), True),
    (1, 1, 2.0, 0.0, (3, 5), False), (0, 0, 1.0, 1.0, (3, 1), False), (0, 1, 1.5, 1.0, (), True),
    (0, 0, 1.0, 1.0, None, True), (0, 0, 1.0, 1.0, (5,), False), (0, 1, 1.0, 1.0, (5,), False),
])
def test_gemm(trans_a: int, trans_b: int, alpha: float, beta: float, c_shape: tuple | None, b_const: bool) -> None:
    a = rand(4, 3) if trans_a else rand(3, 4)
    b = rand(5, 4) if trans_b else rand(4, 5)
    inits = {"b": b} if b_const else {}
    ins = {"a": a} if b_const else {"a": a, "b": b}
    if c_shape is not None:
        inits["c"] = rand(*c_shape)
    g = check(one_node("Gemm", ins, inits, transA=trans_a, transB=trans_b, alpha=alpha, beta=beta), ins, atol=1e-5)
    if b_const or trans_b:  # a computed B^T is the linear's weight as it is
        assert any(n.op == "linear" for n in g.nodes)


def test_matmul_constant_weight_becomes_linear() -> None:
    x = rand(2, 3, 4)
    g = check(one_node("MatMul", {"x": x}, {"w": rand(4, 6)}), {"x": x})
    assert [n.op for n in g.nodes] == ["linear"]


@pytest.mark.parametrize("sa,sb", [((2, 3, 4), (2, 4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((1, 3, 4), (2, 4, 2))])
def test_matmul_runtime(sa: tuple, sb: tuple) -> None:
    feeds = {"a": rand(*sa), "b": rand(*sb)}
    check(one_node("MatMul", feeds), feeds)


CONV_CASES = [
    # (input shape, weight shape, attrs)
    ((1, 3, 9, 8), (4, 3, 3, 3), dict(pads=[1, 0, 2, 1], strides=[2, 1])),
    ((2, 4, 7, 7), (6, 2, 3, 2), dict(group=2, dilations=[2, 1])),
    ((1, 4, 6, 6), (4, 1, 3, 3), dict(group=4, auto_pad="SAME_UPPER", strides=[2, 2])),
    ((1, 2, 7, 6), (3, 2, 4, 3), dict(auto_pad="SAME_LOWER")),
    ((1, 2, 7, 6), (3, 2, 3, 3), dict(auto_pad="VALID", strides=[2, 2])),
    ((2, 3, 11), (5, 3, 3), dict(pads=[2, 1], strides=[2], dilations=[2])),
    ((1, 4, 10), (4, 2, 4), dict(group=2, auto_pad="SAME_UPPER")),
    ((2, 3, 5, 6, 4), (4, 3, 2, 3, 2), dict(pads=[1, 0, 1, 0, 1, 1], strides=[2, 1, 2])),
    ((1, 4, 6, 5, 5), (6, 2, 3, 2, 2), dict(group=2, dilations=[2, 1, 2])),
    ((1, 2, 5, 5, 5), (2, 2, 3, 3, 3), dict(auto_pad="SAME_UPPER", strides=[2, 2, 2])),
]


@pytest.mark.parametrize("xs,ws,attrs", CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv(xs: tuple, ws: tuple, attrs: dict, bias: bool) -> None:
    inits = {"w": rand(*ws)}
    if bias:
        inits["b"] = rand(ws[0])
    x = rand(*xs)
    check(one_node("Conv", {"x": x}, inits, **attrs), {"x": x}, atol=1e-5)


def test_conv_runtime_weight() -> None:
    feeds = {"x": rand(1, 2, 6, 6), "w": rand(3, 2, 3, 3)}
    check(one_node("Conv", feeds, pads=[1, 1, 1, 1]), feeds, atol=1e-5)


CONV_T_CASES = [
    ((1, 3, 4, 5), (3, 2, 3, 3), dict(strides=[2, 3], pads=[1, 0, 1, 2], output_padding=[1, 0])),
    ((2, 4, 3, 3), (4, 3, 2, 2), dict(group=2, dilations=[2, 1])),
    ((1, 2, 3, 4), (2, 3, 3, 3), dict(strides=[2, 2], output_shape=[7, 8])),
    ((1, 2, 3, 4), (2, 3, 3, 3), dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    ((1, 2, 4, 4), (2, 2, 3, 3), dict(pads=[3, 3, 3, 3])),
    ((2, 3, 6), (3, 2, 3), dict(strides=[2], pads=[1, 0], output_padding=[1])),
]


def conv_transpose_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray, strides: list[int], pads: list[int],
                       dilations: list[int], out_pad: list[int], group: int) -> np.ndarray:
    """ConvTranspose by its definition (scatter-add of every input pixel times the kernel), 1-D or 2-D."""
    r = x.ndim - 2
    xs = x.reshape(x.shape[:2] + (1,) * (2 - r) + x.shape[2:])
    ws = w.reshape(w.shape[:2] + (1,) * (2 - r) + w.shape[2:])
    s, d = ([1] * (2 - r) + list(v) for v in (strides, dilations))
    op = [0] * (2 - r) + list(out_pad)
    pb, pe = [0] * (2 - r) + list(pads[:r]), [0] * (2 - r) + list(pads[r:])
    n, ci, h, wd = xs.shape
    _, cog, kh, kw = ws.shape
    cig = ci // group
    full = [s[0] * (h - 1) + d[0] * (kh - 1) + 1 + op[0], s[1] * (wd - 1) + d[1] * (kw - 1) + 1 + op[1]]
    y = np.zeros((n, cog * group, *full))
    for c in range(ci):
        g = c // cig
        for i in range(kh):
            for j in range(kw):
                contrib = xs[:, c, :, :, None] * ws[c, :, i, j][None, None, None, :]  # n h w co
                y[:, g * cog:(g + 1) * cog, i * d[0]:i * d[0] + s[0] * (h - 1) + 1:s[0],
                  j * d[1]:j * d[1] + s[1] * (wd - 1) + 1:s[1]] += contrib.transpose(0, 3, 1, 2)
    y = y[:, :, pb[0]:full[0] - pe[0], pb[1]:full[1] - pe[1]] + b.reshape(1, -1, 1, 1)
    return y.reshape(y.shape[:2] + y.shape[4 - r:]).astype(np.float32)


@pytest.mark.parametrize("xs,ws,attrs", CONV_T_CASES)
def test_conv_transpose(xs: tuple, ws: tuple, attrs: dict) -> None:
    x, w = rand(*xs), rand(*ws)
    g = attrs.get("group", 1)
    b = rand(ws[1] * g)
    model = one_node("ConvTranspose", {"x": x}, {"w": w, "b": b}, **attrs)
    r = len(xs) - 2
    strides, out_pad = attrs.get("strides", [1] * r), attrs.get("output_padding", [0] * r)
    dil, pads = attrs.get("dilations", [1] * r), list(attrs.get("pads", [0] * 2 * r))
    if "output_shape" in attrs or "auto_pad" in attrs:  # pads from the spec's total-padding rule
        out = attrs.get("output_shape") or [xs[2 + i] * strides[i] for i in range(r)]
        for i in range(r):
            total = strides[i] * (xs[2 + i] - 1) + out_pad[i] + (ws[2 + i] - 1) * dil[i] + 1 - out[i]
            upper = attrs.get("auto_pad") == "SAME_UPPER"
            pads[i], pads[i + r] = (total // 2, total - total // 2) if upper else (total - total // 2, total // 2)
    want = conv_transpose_ref(x, w, b, strides, pads, dil, out_pad, g)
    check(model, {"x": x}, atol=1e-5, expected=[want])  # the evaluator lacks groups, 1-D and output_shape


POOL_CASES = [
    ((1, 2, 7, 7), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ((1, 2, 8, 7), dict(kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1)),
    ((1, 2, 7, 7), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)),
    ((1, 2, 6, 6), dict(kernel_shape=[2, 2], auto_pad="SAME_UPPER", strides=[2, 2])),
    ((1, 2, 7, 6), dict(kernel_shape=[3, 3], auto_pad="SAME_LOWER")),
    ((2, 3, 11), dict(kernel_shape=[3], strides=[2], pads=[1, 1])),
    ((2, 3, 6, 7, 5), dict(kernel_shape=[2, 3, 2], strides=[2, 2, 1], pads=[1, 1, 0, 0, 1, 1])),
    ((1, 2, 5, 5, 5), dict(kernel_shape=[3, 3, 3], strides=[2, 2, 2], ceil_mode=1, count_include_pad=1,
                           pads=[1, 1, 1, 1, 1, 1])),
]


@pytest.mark.parametrize("xs,attrs", POOL_CASES)
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pool(xs: tuple, attrs: dict, op: str) -> None:
    if op == "MaxPool":
        attrs = {k: v for k, v in attrs.items() if k != "count_include_pad"}
    x = rand(*xs)
    check(one_node(op, {"x": x}, **attrs), {"x": x})


@pytest.mark.parametrize("xs,dil", [((1, 1, 20, 18), [2, 3]), ((1, 2, 30), [3])])
def test_maxpool_dilations(xs: tuple, dil: list) -> None:
    x = rand(*xs)
    k = [3] * len(dil)
    check(one_node("MaxPool", {"x": x}, kernel_shape=k, dilations=dil, strides=[2] * len(dil), pads=[1] * 2 * len(dil),
                   opset=12), {"x": x})


def test_an_output_the_importer_does_not_produce_is_reported() -> None:
    """BatchNormalization's running mean (output 1, training statistics) read by the graph: named, not guessed."""
    x = rand(1, 2, 4, 4)
    stats = {n: np.ones(2, np.float32) for n in ("s", "b", "m", "v")}
    m = make_model([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "mean"])], {"x": x},
                   ["y", "mean"], inits=stats, opset=9)
    with pytest.raises(ValueError, match="output 1 of node #0.*BatchNormalization"):
        from_onnx(m)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool(op: str) -> None:
    x = rand(2, 3, 5, 4)
    check(one_node(op, {"x": x}), {"x": x})


@pytest.mark.parametrize("xs,opset", [((2, 3, 4, 5), 9), ((2, 3), 15), ((2, 3, 4), 6)])
def test_batchnorm(xs: tuple, opset: int) -> None:
    x = rand(*xs)
    c = xs[1]
    inits = {"s": rand(c), "b": rand(c), "m": rand(c), "v": np.abs(rand(c)) + 0.5}
    extra = {"is_test": 1} if opset < 7 else {}
    shape = (1, c) + (1,) * (x.ndim - 2)
    s, b, m, v = (inits[k].reshape(shape) for k in "sbmv")
    want = ((x - m) / np.sqrt(v + 1e-3) * s + b).astype(np.float32)  # the evaluator's opset-9 kernel differs
    check(one_node("BatchNormalization", {"x": x}, inits, epsilon=1e-3, opset=opset, **extra), {"x": x}, atol=1e-5,
          expected=[want])


@pytest.mark.parametrize("axis,bias,scale_shape", [(-1, True, None), (1, False, None), (2, True, (1, 5)),
                                                   (0, True, None)])
def test_layernorm(axis: int, bias: bool, scale_shape: tuple | None) -> None:
    x = rand(2, 3, 4, 5)
    norm = x.shape[axis:] if axis >= 0 else x.shape[axis:]
    inits = {"s": rand(*(scale_shape or norm))}
    if bias:
        inits["b"] = rand(*norm)
    check(one_node("LayerNormalization", {"x": x}, inits, axis=axis, epsilon=1e-4), {"x": x}, atol=1e-5)


def test_layernorm_mean_and_inv_std_outputs() -> None:
    x = rand(3, 4, 6)
    m = one_node("LayerNormalization", {"x": x}, {"s": rand(6)}, n_out=3, axis=-1)
    check(m, {"x": x}, atol=1e-5)


def test_instancenorm() -> None:
    x = rand(2, 3, 4, 5)
    check(one_node("InstanceNormalization", {"x": x}, {"s": rand(3), "b": rand(3)}, epsilon=1e-5), {"x": x}, atol=1e-5)


@pytest.mark.parametrize("size", [3, 4])
def test_lrn(size: int) -> None:
    x = rand(1, 6, 4, 4)
    sq = x.astype(np.float64) ** 2
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    square_sum = np.stack([sq[:, max(0, c - lo):c + hi + 1].sum(1) for c in range(6)], axis=1)
    want = (x / (2.0 + 1e-3 / size * square_sum) ** 0.7).astype(np.float32)  # the spec's formula
    check(one_node("LRN", {"x": x}, size=size, alpha=1e-3, beta=0.7, bias=2.0), {"x": x}, expected=[want])
