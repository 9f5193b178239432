"""Grouped dequantize (scale input, group_size along an axis): type rule, reference semantics, text form."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.ir import GraphBuilder, f32, graphs_equal, i8, parse, verify
from tensorsmith.ir.builder import BuildError

from .refcase import covers, run_op


@covers("dequantize")
def test_grouped_hand_worked_with_a_short_last_group() -> None:
    x = np.int8([[1, -2, 3, 4, -5], [7, 0, -1, 2, 6]])
    scale = np.float32([[0.5, 2.0, 10.0], [1.0, 0.25, 4.0]])  # groups of 2 along axis 1: [0,1], [2,3], [4]
    got = run_op("dequantize", x, scale, axis=1, group_size=2)
    assert got.dtype == np.float32
    assert got.tolist() == [[0.5, -1.0, 6.0, 8.0, -50.0], [7.0, 0.0, -0.25, 0.5, 24.0]]


@covers("dequantize")
def test_grouped_along_axis_0_repeats_rows() -> None:
    x = np.arange(-3, 3, dtype=np.int8).reshape(3, 2)
    scale = np.float32([[1.0, 2.0], [3.0, 4.0]])  # groups of 2 rows: [0, 1], [2]
    got = run_op("dequantize", x, scale, axis=0, group_size=2)
    assert got.tolist() == [[-3.0, -4.0], [-1.0, 0.0], [3.0, 8.0]]


@pytest.mark.parametrize("attrs,scale_shape,match", [
    ({"axis": 1, "group_size": 2}, (2, 2), r"scale of shape \[2, 3\]"),
    ({"axis": 1, "group_size": 0}, (2, 3), "group_size >= 1"),
    ({"group_size": 2}, (2, 3), "needs the axis"),
    ({"axis": 1, "group_size": 2, "scale": [1.0], "zero_point": [0]}, (2, 3), "must be empty"),
])
def test_grouped_type_errors_name_the_shapes(attrs: dict, scale_shape: tuple[int, ...], match: str) -> None:
    b = GraphBuilder("g")
    x = b.input("x", i8[2, 5])
    s = b.input("s", f32[scale_shape])
    with pytest.raises(BuildError, match=match):
        b.op("dequantize", x, s, **attrs)


def test_group_size_without_a_scale_input_and_no_scale_at_all_are_refused() -> None:
    b = GraphBuilder("g")
    x = b.input("x", i8[2, 4])
    with pytest.raises(BuildError, match="needs the scale as a second input"):
        b.op("dequantize", x, scale=[1.0], zero_point=[0], axis=None, group_size=2)
    with pytest.raises(BuildError, match="no scale"):
        b.op("dequantize", x)


def test_grouped_text_form_round_trips_with_the_scale_as_a_constant() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[1, 6])
    q = b.const(np.int8([[1, 2, 3, 4, 5, 6], [-1, -2, -3, -4, -5, -6]]), "w.i8")
    s = b.const(np.float32([[0.5, 0.25], [1.0, 2.0]]), "w.scale")
    w = b.op("dequantize", q, s, axis=1, group_size=4)
    b.output(b.linear(x, w, name="y"))
    g = b.build()
    text = g.to_text()
    assert "dequantize(@w.i8, @w.scale) {axis=1, group_size=4}" in text
    assert graphs_equal(verify(parse(text)), g)


def test_grouped_dequantize_exports_as_blocked_dequantize_linear_and_imports_back() -> None:
    from tensorsmith.backends import reference
    from tensorsmith.ir import from_onnx, to_onnx
    from tensorsmith.ir.onnx_export import OnnxExportError

    rng = np.random.default_rng(2)
    b = GraphBuilder("g")
    x = b.input("x", f32[2, 10])
    q = b.const(rng.integers(-7, 8, (3, 10)).astype(np.int8), "w.i8")
    s = b.const(rng.uniform(0.1, 1.0, (3, 3)).astype(np.float32), "w.scale")
    b.output(b.linear(x, b.op("dequantize", q, s, axis=1, group_size=4), name="y"))
    g = b.build()
    model = to_onnx(g, opset=21)
    node = next(n for n in model.graph.node if n.op_type == "DequantizeLinear")
    assert {a.name: a.i for a in node.attribute} == {"axis": 1, "block_size": 4}
    feeds = {"x": rng.standard_normal((2, 10)).astype(np.float32)}
    np.testing.assert_allclose(reference.run(from_onnx(model), feeds)["y"], reference.run(g, feeds)["y"], rtol=1e-6)
    with pytest.raises((OnnxExportError, ValueError), match="needs opset 21"):
        to_onnx(g, opset=20)
