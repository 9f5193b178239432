"""Fused regions in the IR: built from equations, printed and parsed, verified, run, inlined again."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf
from tensorsmith.backends import reference
from tensorsmith.ir import Graph, GraphBuilder, Node, Value, VerificationError, assert_graphs_equal, f32, parse, verify
from tensorsmith.ir.regions import RegionError, inline_regions, make_region, region_anchor, region_label
from tensorsmith.passes import run_pipeline

from .refcase import covers, run_graph

RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 8)).astype(np.float32)
B = RNG.standard_normal(4).astype(np.float32)


def mlp() -> Graph:
    """x -> h = linear -> a = gelu -> y = add(a, x2), where x2 = x's first 4 columns * 2 is a second input."""
    b = GraphBuilder("g")
    x = b.input("x", f32[3, 8])
    r = b.input("r", f32[3, 4])
    a = b.gelu(b.linear(x, W, B, name="h"), name="a")
    b.output(b.add(a, r, name="y"))
    return b.build()


def fused_mlp() -> tuple[Graph, Node]:
    g = mlp()
    node = make_region(g, list(g.nodes))
    return verify(g), node


def feeds() -> dict[str, np.ndarray]:
    return {"x": RNG.standard_normal((3, 8)).astype(np.float32), "r": RNG.standard_normal((3, 4)).astype(np.float32)}


def test_make_region_binds_outer_values_to_parameters_once() -> None:
    g, node = fused_mlp()
    body = node.attrs["body"]
    assert [n.op for n in g.nodes] == ["fused"]
    assert [v.name for v in node.inputs] == ["x", "h.weight", "h.bias", "r"]
    assert [v.name for v in body.inputs] == ["x", "h.weight", "h.bias", "r"]
    assert all(not p.is_constant for p in body.inputs) and not body.constants
    assert node.outputs[0] is g.outputs[0] and node.outputs[0].name == "y"
    assert region_label(body) == "linear+gelu+add" and region_anchor(body) is body.nodes[0]


def test_fused_graph_equals_unfused_bit_for_bit_on_the_reference() -> None:
    inputs = feeds()
    want = reference.run(mlp(), inputs)["y"]
    g, _ = fused_mlp()
    got = reference.run(g, inputs)["y"]
    assert got.dtype == want.dtype and np.array_equal(got, want)


@covers("fused")
def test_reference_runs_the_body_against_numpy() -> None:
    g, _ = fused_mlp()
    inputs = feeds()
    got = run_graph(g, inputs)["y"]
    h = inputs["x"].astype(np.float64) @ W.T.astype(np.float64) + B
    want = 0.5 * h * (1 + erf(h / np.sqrt(2))) + inputs["r"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_text_form_round_trips_with_a_body() -> None:
    g, _ = fused_mlp()
    text = g.to_text()
    assert "body=graph linear_gelu_add(%x: f32[3,8]" in text
    again = parse(text)
    assert_graphs_equal(g, again)
    assert again.to_text() == text
    verify(again)


def test_copy_shares_the_body_like_a_constant() -> None:
    g, node = fused_mlp()
    c = g.copy()
    assert c.nodes[0].attrs["body"] is node.attrs["body"] and c.nodes[0] is not node
    assert_graphs_equal(g, c)


def test_inline_regions_gives_back_the_unfused_graph() -> None:
    g, _ = fused_mlp()
    assert inline_regions(g) == 1
    assert_graphs_equal(verify(g), mlp())


def test_make_region_refuses_a_value_read_outside() -> None:
    g = mlp()
    h = g.nodes[0]
    extra = Node("relu", [h.outputs[0]], {}, [Value("z", h.outputs[0].type)])
    g.nodes.append(extra)
    g.outputs.append(extra.outputs[0])
    with pytest.raises(RegionError, match="%h .* also read outside"):
        make_region(g, g.nodes[:3])


def test_verify_names_a_body_fault_and_the_fused_node() -> None:
    g, node = fused_mlp()
    body = node.attrs["body"]
    body.nodes[1].outputs[0].type = f32[3, 5]
    with pytest.raises(VerificationError) as info:
        verify(g)
    assert info.value.kind == "shape-mismatch" and info.value.node is node
    assert "in body linear_gelu_add" in str(info.value) and "%a" in str(info.value)


def test_verify_refuses_parameter_types_that_differ_from_inputs() -> None:
    g, node = fused_mlp()
    node.attrs["body"].inputs[3].type = f32[3, 5]
    with pytest.raises(VerificationError, match="input 3 is f32\\[3,4\\] but body parameter %r is f32\\[3,5\\]"):
        verify(g)


def test_verify_refuses_wrong_parameter_count_and_constants_in_a_body() -> None:
    g, node = fused_mlp()
    node.inputs.pop()
    with pytest.raises(VerificationError, match="takes 4 parameter"):
        verify(g)
    g, node = fused_mlp()
    body = node.attrs["body"]
    const = Value("k", f32[4], np.ones(4, np.float32))
    body.nodes[2].inputs[1] = const
    with pytest.raises(VerificationError, match="holds constant\\(s\\) @k"):
        verify(g)


def test_verify_refuses_a_body_with_two_outputs() -> None:
    g, node = fused_mlp()
    body = node.attrs["body"]
    body.outputs.append(body.nodes[0].outputs[0])
    with pytest.raises(VerificationError, match="must have one output"):
        verify(g)


def test_parse_refuses_a_body_reading_an_outer_value() -> None:
    g, _ = fused_mlp()
    text = g.to_text().replace("%y = add(%a, %r)", "%y = add(%a, %zz)")
    with pytest.raises(ValueError, match="%zz used but never defined"):
        parse(text)


def test_cse_merges_identical_regions() -> None:
    b = GraphBuilder("twice")
    x = b.input("x", f32[2, 4])
    p = b.relu(b.neg(x, name="n1"), name="p")
    q = b.relu(b.neg(x, name="n2"), name="q")
    b.output(b.add(p, q, name="y"))
    g = b.build()
    make_region(g, g.nodes[0:2])
    make_region(g, g.nodes[1:3])
    out = run_pipeline(verify(g), "cse")
    assert [n.op for n in out.nodes] == ["fused", "add"]


def test_onnx_export_inlines_regions() -> None:
    from tensorsmith.ir import from_onnx, to_onnx

    g, _ = fused_mlp()
    model = to_onnx(g)
    back = from_onnx(model)
    inputs = feeds()
    np.testing.assert_allclose(reference.run(back, inputs)["y"], reference.run(g, inputs)["y"], rtol=1e-6,
                               atol=1e-6)
