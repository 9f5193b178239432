"""ONNX comparisons, And / Or / Xor / Not and Where on run-time values: imported as the IR's logic ops, checked
against ONNX's reference evaluator and ONNX Runtime on both backends (on constants they fold at import)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError

from .test_onnx_import import make_model, ort_outputs

RNG = np.random.default_rng(17)


def _agree(model, feeds: dict[str, np.ndarray], rtol: float = 1e-6,  # type: ignore[no-untyped-def]
           atol: float = 1e-7) -> dict[str, np.ndarray]:
    g = from_onnx(model)
    ours = reference.run(g, feeds)
    numba = runtime.compile(g, backend="numba").run(feeds)
    names = [v.name for v in g.outputs]
    for theirs in (ReferenceEvaluator(model).run(None, feeds), ort_outputs(model, feeds)):
        if theirs is None:
            continue
        for name, t in zip(names, theirs):
            np.testing.assert_allclose(ours[name], np.asarray(t), rtol=rtol, atol=atol, err_msg=name)
            np.testing.assert_allclose(numba[name], np.asarray(t), rtol=rtol, atol=atol, err_msg=name)
    return ours


@pytest.mark.parametrize("op", ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"])
def test_comparisons_of_run_time_values(op: str) -> None:
    x = np.array([[np.nan, 1.0, -0.0, 2.5], [0.0, -np.inf, 3.0, 2.5]], np.float32)
    y = np.array([1.0, 1.0, 0.0, 2.5], np.float32)
    model = make_model([helper.make_node(op, ["x", "y"], ["z"])], {"x": x, "y": y}, ["z"])
    got = _agree(model, {"x": x, "y": y})
    assert got["z"].dtype == np.bool_ and [n.op for n in from_onnx(model).nodes] != []


def test_hugging_face_style_attention_mask() -> None:
    """Cast(mask, bool), Not, Where(masked, lowest float, scores), Softmax: the mask of a run-time input."""
    scores = RNG.standard_normal((2, 2, 4, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.int64).reshape(2, 1, 1, 4)
    nodes = [helper.make_node("Cast", ["mask"], ["keep"], to=TensorProto.BOOL),
             helper.make_node("Not", ["keep"], ["masked"]),
             helper.make_node("Where", ["masked", "lowest", "scores"], ["biased"]),
             helper.make_node("Softmax", ["biased"], ["p"], axis=-1)]
    model = make_model(nodes, {"scores": scores, "mask": mask}, ["p"],
                       {"lowest": np.array(np.finfo(np.float32).min, np.float32)})
    ops = {n.op for n in from_onnx(model).nodes}
    assert {"logical-not", "where"} <= ops
    got = _agree(model, {"scores": scores, "mask": mask})
    assert not got["p"][1, ..., 2:].any()


def test_logical_ops_of_run_time_values() -> None:
    x, y = RNG.standard_normal((3, 5)).astype(np.float32), RNG.standard_normal(5).astype(np.float32)
    nodes = [helper.make_node("Less", ["x", "y"], ["lt"]), helper.make_node("Greater", ["x", "zero"], ["pos"]),
             helper.make_node("And", ["lt", "pos"], ["a"]), helper.make_node("Or", ["lt", "pos"], ["o"]),
             helper.make_node("Xor", ["lt", "pos"], ["x1"]), helper.make_node("Where", ["x1", "x", "y"], ["w"])]
    model = make_model(nodes, {"x": x, "y": y}, ["a", "o", "x1", "w"], {"zero": np.array(0.0, np.float32)})
    _agree(model, {"x": x, "y": y})


def test_range_of_run_time_values_is_still_refused_with_the_reason() -> None:
    n = np.array(4, np.int64)
    model = make_model([helper.make_node("Range", ["start", "n", "step"], ["r"])], {"n": n}, ["r"],
                       {"start": np.array(0, np.int64), "step": np.array(1, np.int64)})
    with pytest.raises(OnnxImportError, match="Range on run-time values"):
        from_onnx(model)
