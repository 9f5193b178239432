"""quantize-fold rule 5: ONNX Runtime's dynamic form (DynamicQuantizeLinear, MatMulInteger / ConvInteger, Cast, Mul)
folded into qlinear / qconv2d, exactly; what stays unfolded says why."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.ir import Graph, from_onnx
from tensorsmith.passes import PassContext, run_pipeline

RNG = np.random.default_rng(7)


def dynamic_model(kind: str = "matmul", w_dtype: type = np.int8, w_zero_point: int = 0, per_channel: bool = False,
                  extra_output: bool = False) -> Graph:
    """x -> DynamicQuantizeLinear -> MatMulInteger / ConvInteger -> Cast -> Mul(x_scale * w_scale), imported."""
    groups = 2 if kind == "grouped-conv" else 1
    if kind == "matmul":
        x_shape, w_shape, y_shape, channels = [2, 5, 16], [16, 6], [2, 5, 6], 6
    else:
        x_shape, w_shape, y_shape, channels = [1, 3 * groups, 6, 6], [4, 3, 3, 3], [1, 4, 6, 6], 4
    info = np.iinfo(w_dtype)
    w = RNG.integers(info.min, info.max + 1, w_shape).astype(w_dtype)
    scale_shape = ([channels] if kind == "matmul" else [channels, 1, 1]) if per_channel else []
    w_scale = (RNG.uniform(0.01, 0.05, scale_shape) if per_channel else np.float32(0.02)).astype(np.float32)
    product = (helper.make_node("MatMulInteger", ["q", "w", "z", "wz"], ["acc"]) if kind == "matmul" else
               helper.make_node("ConvInteger", ["q", "w", "z", "wz"], ["acc"], pads=[1, 1, 1, 1], group=groups))
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]),
             helper.make_node("Mul", ["s", "w_scale"], ["ss"]), product,
             helper.make_node("Cast", ["acc"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["f", "ss"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)]
    if extra_output:
        outputs.append(helper.make_tensor_value_info("acc", TensorProto.INT32, y_shape))
    graph = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)], outputs,
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.asarray(w_scale), "w_scale"),
                               numpy_helper.from_array(np.asarray(w_zero_point, w_dtype), "wz")])
    return from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def _feeds(g: Graph) -> dict[str, np.ndarray]:
    return {"x": RNG.standard_normal(g.inputs[0].type.shape).astype(np.float32) * 3}


def _fold(g: Graph, bits: int = 8) -> tuple[Graph, str]:
    ctx = PassContext()
    out = run_pipeline(g, f"quantize-fold{{weight_bits={bits}}}", ctx=ctx)
    return out, ctx.records[-1].report


@pytest.mark.parametrize(("kind", "w_dtype", "w_zero_point", "per_channel"), [
    ("matmul", np.int8, 0, False), ("matmul", np.int8, 0, True), ("matmul", np.uint8, 128, False),
    ("conv", np.int8, 0, False), ("grouped-conv", np.int8, 0, True),
    ("matmul", np.uint8, 0, True), ("conv", np.uint8, 37, False)])  # asymmetric: weight_zero_point kept
def test_the_dynamic_form_folds_into_one_integer_op_exactly(kind: str, w_dtype: type, w_zero_point: int,
                                                          per_channel: bool) -> None:
    g = dynamic_model(kind, w_dtype, w_zero_point, per_channel)
    folded, report = _fold(g)
    ops = Counter(n.op for n in folded.nodes)
    want = "qlinear" if kind == "matmul" else "qconv2d"
    assert ops == {"quantize-dynamic": 1, want: 1}, ops
    assert "folded 1 i32 product(s) of dynamically quantized activations" in report
    (q,) = folded.nodes_of(want)
    assert q.inputs[0] is folded.nodes[0].outputs[0] and q.meta["quantize_fold"]["extra_weight_error"] == 0
    assert any(q.attrs["weight_zero_point"]) == (w_dtype == np.uint8 and w_zero_point != 128)
    x = _feeds(g)
    want_y = reference.run(g, x)["y"]
    np.testing.assert_array_equal(reference.run(folded, x)["y"], want_y)
    np.testing.assert_allclose(runtime.compile(folded, backend="numba").run(x)["y"], want_y, rtol=1e-6, atol=1e-6)


def test_seven_bit_weights_are_requantized_within_their_stated_error() -> None:
    g = dynamic_model("matmul", per_channel=True)
    folded, _ = _fold(g, bits=7)
    (q,) = folded.nodes_of("qlinear")
    extra = q.meta["quantize_fold"]["extra_weight_error"]
    assert q.attrs["weight_bits"] == 7 and extra > 0
    x = _feeds(g)
    got, want = reference.run(folded, x)["y"], reference.run(g, x)["y"]
    # each of K = 16 weights moves by at most `extra`, times |x - zero point| * x_scale <= max|x| (plus rounding)
    bound = 16 * extra * float(np.abs(x["x"]).max()) * 1.01 + 1e-5
    assert 0 < np.abs(got - want).max() <= bound


@pytest.mark.parametrize(("model", "why"), [
    (lambda: dynamic_model(extra_output=True), "its i32 result has other readers"),
])
def test_near_misses_stay_as_they_are_and_say_why(model, why: str) -> None:  # type: ignore[no-untyped-def]
    g = model()
    folded, report = _fold(g)
    assert not folded.nodes_of("qlinear") and why in report
    x = _feeds(g)
    np.testing.assert_array_equal(reference.run(folded, x)["y"], reference.run(g, x)["y"])
