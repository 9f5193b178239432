"""The fuse pass: regions it builds, its report, its options, exported ONNX forms, user patterns."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tensorsmith.backends import reference
from tensorsmith.ir import Graph, GraphBuilder, f32, from_onnx, verify
from tensorsmith.passes import FUSION_PATTERNS, Const, PassContext, Var, fusion_pattern, op, run_pipeline
from tensorsmith.passes.fuse_patterns import scalar

RNG = np.random.default_rng(0)


def _ops(g: Graph) -> list[str]:
    return [n.op for n in g.nodes]


def _body_ops(g: Graph) -> list[list[str]]:
    return [[m.op for m in n.attrs["body"].nodes] for n in g.nodes if n.op == "fused"]


def _run(g: Graph, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    out = reference.run(g, inputs)
    return [out[v.name] for v in g.outputs]


def two_layer() -> Graph:
    b = GraphBuilder("ffn")
    x = b.input("x", f32[4, 8])
    h = b.linear(x, RNG.standard_normal((16, 8)).astype(np.float32), name="fc1")
    a = b.gelu(b.add(h, RNG.standard_normal(16).astype(np.float32), name="fc1.b"), name="act")
    y = b.linear(a, RNG.standard_normal((8, 16)).astype(np.float32), name="fc2")
    b.output(b.relu(b.add(y, x, name="res"), name="out"))
    return b.build()


def test_two_layers_become_two_regions_equal_bit_for_bit() -> None:
    g = two_layer()
    ctx = PassContext()
    out = run_pipeline(g, "fuse", ctx=ctx)
    assert _ops(out) == ["fused", "fused"]
    assert _body_ops(out) == [["linear", "add", "gelu"], ["linear", "add", "relu"]]
    report = ctx.records[-1].report
    assert report.splitlines()[0] == "fused 2 region(s): linear+bias+gelu x1, linear+residual+relu x1"
    inputs = {"x": RNG.standard_normal((4, 8)).astype(np.float32)}
    for a, b in zip(_run(g, inputs), _run(out, inputs)):
        np.testing.assert_array_equal(a, b)


def test_report_names_near_misses_with_the_reason() -> None:
    b = GraphBuilder("miss")
    x = b.input("x", f32[2, 8])
    h = b.linear(x, np.ones((4, 8), np.float32), name="fc1")
    b.output(b.gelu(h, name="act"), b.sigmoid(h, name="gate"))
    ctx = PassContext()
    out = run_pipeline(b.build(), "fuse", ctx=ctx)
    assert "fused" not in _ops(out)
    assert "gelu %act after %fc1 not fused: %fc1 has 2 readers" in ctx.records[-1].report


def test_options_turn_each_step_off() -> None:
    g = two_layer()
    assert _ops(run_pipeline(g, "fuse{epilogues=false,elementwise=false}")) == _ops(g)
    only_eltwise = run_pipeline(g, "fuse{epilogues=false}")
    assert _body_ops(only_eltwise) == [["add", "gelu"], ["add", "relu"]]


def test_fuse_is_idempotent() -> None:
    once = run_pipeline(two_layer(), "fuse")
    ctx = PassContext()
    twice = run_pipeline(once, "fuse", ctx=ctx)
    assert _ops(twice) == _ops(once) and not ctx.records[-1].changed


def _onnx_model(nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], shape: list[int],
                out_shape: list[int] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "exported", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape or shape)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _check_onnx_form(model: onnx.ModelProto, want_ops: list[str], shape: list[int]) -> Graph:
    g = from_onnx(model)
    out = run_pipeline(g, "fuse")
    assert [op for ops in ([n.op] if n.op != "fused" else [m.op for m in n.attrs["body"].nodes]
                           for n in out.nodes) for op in ops] == want_ops
    x = {"x": RNG.standard_normal(shape).astype(np.float32) * 3}
    np.testing.assert_allclose(_run(out, x)[0], _run(g, x)[0], rtol=1e-5, atol=1e-5)
    return out


def test_layernorm_as_pytorch_exports_it() -> None:
    h = helper.make_node
    nodes = [h("ReduceMean", ["x"], ["mu"], axes=[-1]), h("Sub", ["x", "mu"], ["d"]),
             h("Pow", ["d", "two"], ["sq"]), h("ReduceMean", ["sq"], ["var"], axes=[-1]),
             h("Add", ["var", "eps"], ["ve"]), h("Sqrt", ["ve"], ["sd"]), h("Div", ["d", "sd"], ["n"]),
             h("Mul", ["n", "gamma"], ["s"]), h("Add", ["s", "beta"], ["y"])]
    inits = {"two": 2.0, "eps": 1e-12, "gamma": RNG.standard_normal(6), "beta": RNG.standard_normal(6)}
    out = _check_onnx_form(_onnx_model(nodes, inits, [2, 5, 6]), ["layernorm"], [2, 5, 6])
    assert out.nodes[0].attrs["epsilon"] == pytest.approx(1e-12)


def test_gelu_erf_as_pytorch_exports_it_fuses_into_the_linear() -> None:
    h = helper.make_node
    nodes = [h("MatMul", ["x", "w"], ["mm"]), h("Add", ["mm", "b"], ["hh"]), h("Div", ["hh", "sqrt2"], ["d"]),
             h("Erf", ["d"], ["e"]), h("Add", ["e", "one"], ["e1"]), h("Mul", ["hh", "e1"], ["m"]),
             h("Mul", ["m", "half"], ["y"])]
    inits = {"w": RNG.standard_normal((6, 3)), "b": RNG.standard_normal(3), "sqrt2": np.sqrt(2.0), "one": 1.0,
             "half": 0.5}
    out = _check_onnx_form(_onnx_model(nodes, inits, [4, 6], [4, 3]), ["linear", "add", "gelu"], [4, 6])
    assert _ops(out) == ["fused"]


def test_gelu_tanh_form_as_tensorflow_writes_it() -> None:
    h = helper.make_node
    nodes = [h("Pow", ["x", "three"], ["c"]), h("Mul", ["c", "k1"], ["c1"]), h("Add", ["x", "c1"], ["i"]),
             h("Mul", ["i", "k2"], ["i2"]), h("Tanh", ["i2"], ["t"]), h("Add", ["t", "one"], ["t1"]),
             h("Mul", ["x", "half"], ["xh"]), h("Mul", ["xh", "t1"], ["y"])]
    inits = {"three": 3.0, "k1": 0.044715, "k2": np.sqrt(2 / np.pi), "one": 1.0, "half": 0.5}
    out = _check_onnx_form(_onnx_model(nodes, inits, [3, 7]), ["gelu"], [3, 7])
    assert out.nodes[0].attrs["approximate"] == "tanh"


def test_a_near_gelu_is_left_alone() -> None:
    b = GraphBuilder("almost")
    x = b.input("x", f32[2, 3])
    e = b.add(b.erf(b.div(x, b.const(np.float32(1.5), "s"))), b.const(np.float32(1.0), "one"))
    b.output(b.mul(b.mul(x, e), b.const(np.float32(0.5), "half"), name="y"))
    out = run_pipeline(b.build(), "fuse")
    assert "gelu" not in {op for ops in _body_ops(out) for op in ops}


@pytest.fixture
def relu6_pattern():  # type: ignore[no-untyped-def]
    """A user's pattern, registered for one test: min(relu(x), 6) is clip(x, 0, 6), an epilogue activation."""

    @fusion_pattern("relu6-as-clip", op("minimum", op("relu", Var("x")), Const("six", scalar(6.0))))
    def relu6(rw, x, six):  # type: ignore[no-untyped-def]
        return rw.emit("clip", x, min=0.0, max=6.0)

    yield
    FUSION_PATTERNS[:] = [r for r in FUSION_PATTERNS if r.name != "relu6-as-clip"]


def test_user_pattern_makes_relu6_an_epilogue(relu6_pattern) -> None:  # type: ignore[no-untyped-def]
    b = GraphBuilder("mobilenet_block")
    x = b.input("x", f32[1, 3, 5, 5])
    c = b.conv2d(x, RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), pads=1, name="conv")
    b.output(b.minimum(b.relu(c), b.const(np.float32(6.0), "six"), name="y"))
    g = b.build()
    ctx = PassContext()
    out = verify(run_pipeline(g, "fuse", ctx=ctx))
    assert _body_ops(out) == [["conv2d", "clip"]]
    assert "recognized: relu6-as-clip x1" in ctx.records[-1].report
    x_in = {"x": RNG.standard_normal((1, 3, 5, 5)).astype(np.float32) * 4}
    np.testing.assert_array_equal(_run(out, x_in)[0], _run(g, x_in)[0])


def test_registering_a_pattern_name_twice_is_refused(relu6_pattern) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="already registered"):
        fusion_pattern("relu6-as-clip", op("relu", Var("x")))(lambda rw, x: None)


def test_bert_layer_attention_is_recognized_bit_for_bit() -> None:
    from tensorsmith.bench.models import load_model

    m = load_model("bert-base-layer")
    ctx = PassContext()
    out = run_pipeline(m.graph, "fuse", ctx=ctx)
    assert _ops(out).count("attention") == 1 and "softmax" not in _ops(out)
    assert "recognized: attention x1" in ctx.records[-1].report
    att = next(n for n in out.nodes if n.op == "attention")
    assert att.attrs["heads"] == 12 and att.attrs["scale"] == 0.125
    for a, b in zip(_run(m.graph, m.inputs), _run(out, m.inputs)):
        np.testing.assert_array_equal(a, b)


def test_attention_probabilities_read_twice_stay_decomposed() -> None:
    b = GraphBuilder("probs_out")
    q = b.input("q", f32[1, 3, 8])
    heads = [b.transpose(b.reshape(q, [1, 3, 2, 4]), [0, 2, 1, 3]) for _ in range(2)]
    kt = b.transpose(b.reshape(q, [1, 3, 2, 4]), [0, 2, 3, 1])
    p = b.softmax(b.matmul(heads[0], kt), axis=-1, name="p")
    b.output(b.matmul(p, heads[1], name="ctx"), p)
    out = run_pipeline(b.build(), "fuse")
    assert "attention" not in _ops(out)


def test_attention_as_pytorch_exports_a_transformer_encoder_layer() -> None:
    pytest.importorskip("torch")
    from tensorsmith.bench.fusion import load_case

    case = load_case("torch-encoder-layer")
    assert case is not None
    ctx = PassContext()
    out = run_pipeline(case.graph, "fuse", ctx=ctx)
    report = ctx.records[-1].report
    assert "attention x1" in report and "gelu-erf x1" in report and "layernorm x2" in report
    assert "softmax" not in _ops(out) and "transpose" not in _ops(out)
    np.testing.assert_allclose(_run(out, case.inputs)[0], _run(case.graph, case.inputs)[0], rtol=1e-5, atol=1e-5)


def _masked_attention(mask: np.ndarray | None) -> Graph:
    """Decomposed two-head attention over 4 positions, with `mask` added as a constant (or a graph input)."""
    b = GraphBuilder("masked")
    q = b.input("q", f32[1, 4, 8])
    qh = b.transpose(b.reshape(q, [1, 4, 2, 4]), [0, 2, 1, 3])
    kt = b.transpose(b.reshape(q, [1, 4, 2, 4]), [0, 2, 3, 1])
    s = b.matmul(qh, kt)
    s = b.add(s, b.input("mask", f32[4, 4]) if mask is None else b.const(mask, "mask"))
    ctx = b.matmul(b.softmax(s, axis=-1), qh)
    b.output(b.reshape(b.transpose(ctx, [0, 2, 1, 3]), [1, 4, 8], name="y"))
    return b.build()


def test_a_constant_causal_mask_becomes_the_causal_flag_and_others_stay_masks() -> None:
    causal = np.where(np.arange(4)[None, :] > np.arange(4)[:, None], -np.inf, 0.0).astype(np.float32)
    feeds = {"q": np.random.default_rng(5).standard_normal((1, 4, 8)).astype(np.float32)}
    out = run_pipeline(_masked_attention(causal), "fuse")
    (att,) = [n for n in out.nodes if n.op == "attention"]
    assert att.attrs["causal"] and len(att.inputs) == 3
    np.testing.assert_array_equal(_run(out, feeds)[0], _run(_masked_attention(causal), feeds)[0])
    near = causal.copy()
    near[3, 0] = -np.inf  # one more key hidden: not the causal mask
    for g in (_masked_attention(near), _masked_attention(None)):  # not causal; a mask given at run time
        (att,) = [n for n in run_pipeline(g, "fuse").nodes if n.op == "attention"]
        assert not att.attrs["causal"] and len(att.inputs) == 4


def test_the_causal_layer_benchmark_case_fuses_to_causal_attention() -> None:
    from tensorsmith.bench.fusion import load_case

    case = load_case("causal-layer-s512")
    assert case is not None
    (att,) = [n for n in run_pipeline(case.graph, "fuse").nodes if n.op == "attention"]
    assert att.attrs["causal"] and len(att.inputs) == 3 and att.inputs[0].type.shape == (1, 512, 384)
