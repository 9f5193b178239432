"""A QDQ residual add from ONNX: imported, folded into qadd, run on both backends, exported back to ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from onnx import TensorProto, helper, numpy_helper
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.ir import from_onnx, to_onnx
from tensorsmith.passes import run_pipeline

ort = pytest.importorskip("onnxruntime")


def _qdq_residual() -> bytes:
    """x, y -> QuantizeLinear (u8, s8) -> DequantizeLinear -> Add -> QuantizeLinear (u8) -> DequantizeLinear."""
    def q(name: str, scale: float, zp: int, dt: type) -> list[object]:
        return [numpy_helper.from_array(np.float32(scale), f"{name}.s"), numpy_helper.from_array(dt(zp), f"{name}.z")]

    inits = [*q("x", 0.031, 121, np.uint8), *q("y", 0.0173, -7, np.int8), *q("sum", 0.047, 130, np.uint8)]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x.s", "x.z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "x.s", "x.z"], ["xd"]),
             helper.make_node("QuantizeLinear", ["y", "y.s", "y.z"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "y.s", "y.z"], ["yd"]),
             helper.make_node("Add", ["xd", "yd"], ["sum"]),
             helper.make_node("QuantizeLinear", ["sum", "sum.s", "sum.z"], ["sq"]),
             helper.make_node("DequantizeLinear", ["sq", "sum.s", "sum.z"], ["out"])]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3, 40]) for n in ("x", "y", "out")]
    g = helper.make_graph(nodes, "residual", io[:2], io[2:], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _ort(model: bytes, feeds: dict[str, np.ndarray]) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the QDQ arithmetic as written
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_qdq_residual_folds_and_matches_onnx_runtime() -> None:
    model = _qdq_residual()
    rng = np.random.default_rng(4)
    feeds = {"x": (rng.standard_normal((3, 40)) * 3).astype(np.float32),
             "y": (rng.standard_normal((3, 40)) * 2).astype(np.float32)}
    want = _ort(model, feeds)
    folded = run_pipeline(from_onnx(model), "quantize-fold")
    assert [n.op for n in folded.nodes].count("qadd") == 1
    assert_array_equal(reference.run(folded, feeds)["out"], want)
    assert_array_equal(runtime.compile(folded, backend="numba").run(feeds)["out"], want)
    assert_array_equal(_ort(to_onnx(folded).SerializeToString(), feeds), want)
