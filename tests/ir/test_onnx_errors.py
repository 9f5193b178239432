"""ONNX import: error reports, input shapes, initializers listed as inputs, and value names."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from tensorsmith.backends import reference
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError

from .test_onnx_import import check, make_model, one_node, rand


def test_every_unsupported_operator_is_listed_with_its_place() -> None:
    x = rand(1, 2, 4, 4)
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Unique", ["a"], ["b"], name="up1"),
        helper.make_node("NonMaxSuppression", ["b", "k"], ["c"], name="top"),
        helper.make_node("Unique", ["c"], ["d"], name="up2"),
        helper.make_node("FusedGemm", ["d"], ["e"], domain="com.microsoft"),
        helper.make_node("Relu", ["e"], ["y"]),
    ]
    inits = {"scales": np.array([1, 1, 2, 2], np.float32), "k": np.array([1], np.int64)}
    m = make_model(nodes, {"x": x}, ["y"], inits)
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(OnnxImportError) as info:
        from_onnx(m)
    msg = str(info.value)
    assert "unsupported operator Unique (2x)" in msg and "'up1'" in msg and "'up2'" in msg
    assert "unsupported operator NonMaxSuppression (1x)" in msg and "'top'" in msg
    assert "unsupported operator com.microsoft.FusedGemm" in msg
    assert len(info.value.problems) == 3


def test_conversion_problems_are_collected_too() -> None:
    x = rand(2, 6)
    nodes = [helper.make_node("Reshape", ["x", "s"], ["a"]), helper.make_node("Erf", ["a"], ["b"]),
             helper.make_node("Squeeze", ["x", "ax"], ["c"]), helper.make_node("Add", ["b", "c"], ["y"])]
    m = make_model(nodes, {"x": x, "s": np.array([3, 4], np.int64)}, ["y"], {"ax": np.array([0], np.int64)},
                   opset=13)
    with pytest.raises(OnnxImportError) as info:
        from_onnx(m)
    assert len(info.value.problems) == 2
    assert "node #0 (Reshape" in info.value.problems[0] and "must be a constant" in info.value.problems[0]
    assert "node #2 (Squeeze" in info.value.problems[1] and "cannot squeeze axes [0]" in info.value.problems[1]


def test_symbolic_dimension_needs_input_shapes() -> None:
    x = rand(2, 3)
    m = one_node("Relu", {"x": x})
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    with pytest.raises(OnnxImportError, match=r"dimension 0 is symbolic \('N'\); pass input_shapes"):
        from_onnx(m)
    g = from_onnx(m, input_shapes={"x": (5, 3)})
    assert g.inputs[0].type.shape == (5, 3)
    with pytest.raises(OnnxImportError, match="dimension 1 is fixed to 3"):
        from_onnx(m, input_shapes={"x": (5, 4)})
    with pytest.raises(OnnxImportError, match="has rank 1"):
        from_onnx(m, input_shapes={"x": (5,)})
    with pytest.raises(OnnxImportError, match=r"unknown input\(s\) \['z'\]"):
        from_onnx(m, input_shapes={"z": (1,)})


def test_initializers_listed_as_inputs_are_constants() -> None:
    x = rand(2, 4)
    m = one_node("Gemm", {"x": x}, {"w": rand(3, 4), "b": rand(3)}, transB=1)
    for name in ("w", "b"):  # the way exporters before IR version 4 wrote weights
        m.graph.input.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    g = check(m, {"x": x}, atol=1e-5)
    assert [v.name for v in g.inputs] == ["x"]
    assert {c.name for c in g.constants} == {"w", "b"}


def test_inputs_and_outputs_keep_their_onnx_names_inner_names_are_plain() -> None:
    x = rand(3)
    nodes = [helper.make_node("Relu", ["in:0"], ["a/b"]), helper.make_node("Neg", ["a/b"], ["a_b"]),
             helper.make_node("Abs", ["a_b"], ["out 1"]), helper.make_node("Identity", ["in:0"], ["out/2"])]
    m = make_model(nodes, {"in:0": x}, ["out 1", "out/2"])
    g = from_onnx(m)
    names = [v.name for v in g.values()]
    assert len(names) == len(set(names))
    inner = [v.name for n in g.nodes for v in n.outputs if v not in g.outputs]
    assert inner and all(ch.isalnum() or ch in "_.-" for n in inner for ch in n)
    assert [v.name for v in g.outputs] == ["out 1", "out/2"]
    assert g.inputs[0].name == "in:0"
    got = reference.run(g, {"in:0": x})
    np.testing.assert_array_equal(got["out 1"], np.abs(-np.maximum(x, 0)))
    np.testing.assert_array_equal(got["out/2"], x)


def test_constant_output_and_dead_nodes() -> None:
    x = rand(2)
    nodes = [helper.make_node("Relu", ["x"], ["unused"]), helper.make_node("Shape", ["x"], ["y"]),
             helper.make_node("Neg", ["x"], ["z"])]
    g = from_onnx(make_model(nodes, {"x": x}, ["y", "z"]))
    assert [n.op for n in g.nodes] == ["neg"]
    assert g.outputs[0].is_constant and g.outputs[0].name == "y"
    np.testing.assert_array_equal(g.outputs[0].data, [2])


def test_model_from_file_and_bytes(tmp_path: object) -> None:
    x = rand(2, 2)
    m = one_node("Relu", {"x": x})
    path = tmp_path / "m.onnx"  # type: ignore[operator]
    onnx.save(m, str(path))
    assert from_onnx(path).name == "test"
    assert from_onnx(m.SerializeToString()).name == "test"
    with pytest.raises(OnnxImportError, match="does not exist"):
        from_onnx(tmp_path / "missing.onnx")  # type: ignore[operator]


def test_unsupported_dtype_and_old_opset() -> None:
    x = rand(2).astype(np.uint16)
    with pytest.raises(OnnxImportError, match="element type UINT16 has no IR dtype"):
        from_onnx(one_node("Relu", {"x": x}))
    with pytest.raises(OnnxImportError, match="opset 5 is older"):
        from_onnx(one_node("Relu", {"x": rand(2)}, opset=5))


def test_operator_schema_newer_than_reviewed_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    if onnx.defs.onnx_opset_version() < 28:
        pytest.skip("needs an onnx release with Cast version 28")
    from tensorsmith.ir import onnx_import

    monkeypatch.setattr(onnx_import, "MAX_SCHEMA", 25)
    x = rand(2)
    with pytest.raises(OnnxImportError, match=r"Cast version 28 \(newer than opset 25\)"):
        from_onnx(one_node("Cast", {"x": x}, to=10, opset=28))
    check(one_node("Relu", {"x": x}, opset=28), {"x": x}, ort=False)  # Relu's schema is older: fine


def test_training_mode_is_reported() -> None:
    x = rand(2, 3)
    m = one_node("Dropout", {"x": x}, {"r": np.array(0.5, np.float32), "t": np.array(True)}, opset=13)
    with pytest.raises(OnnxImportError, match="training_mode=true"):
        from_onnx(m)
    zero = one_node("Dropout", {"x": x}, {"r": np.array(0.0, np.float32), "t": np.array(True)}, n_out=2, opset=13)
    g = check(zero, {"x": x})  # a zero ratio drops nothing: the input and a mask of ones
    assert all(n.op == "identity" for n in g.nodes)
