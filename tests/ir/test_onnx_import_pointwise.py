"""Swish, Celu, ThresholdedRelu, IsNaN, IsInf, SpaceToDepth and DepthToSpace: imported as compositions of IR ops and
checked against ONNX's reference evaluator and ONNX Runtime on the reference and Numba backends."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError

from .test_onnx_import import make_model
from .test_onnx_import_logic import _agree

RNG = np.random.default_rng(41)
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -2.5, 3e38], np.float32)


@pytest.mark.parametrize(("op", "attrs", "opset"), [
    ("Swish", {}, 24), ("Swish", {"alpha": 0.5}, 24), ("Celu", {}, 12), ("Celu", {"alpha": 2.0}, 12),
    ("ThresholdedRelu", {}, 10), ("ThresholdedRelu", {"alpha": -0.5}, 10),
])
def test_activations(op: str, attrs: dict[str, float], opset: int) -> None:
    x = np.concatenate([RNG.standard_normal(41).astype(np.float32) * 3, SPECIAL[1:]]).reshape(6, 8)  # NaN apart
    model = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": x}, ["y"], opset=opset)
    _agree(model, {"x": x}, rtol=1e-5, atol=1e-6)


def test_activations_of_half_precision_compute_in_float32() -> None:
    x = RNG.standard_normal((3, 4)).astype(np.float16)
    model = make_model([helper.make_node("Celu", ["x"], ["y"], alpha=1.5)], {"x": x}, ["y"], opset=12)
    got = _agree(model, {"x": x}, rtol=2e-3, atol=2e-3)["y"]
    assert got.dtype == np.float16
    assert [n.op for n in from_onnx(model).nodes][0] == "cast"


@pytest.mark.parametrize(("positive", "negative"), [(1, 1), (1, 0), (0, 1), (0, 0)])
def test_is_inf(positive: int, negative: int) -> None:
    x = np.tile(SPECIAL, (2, 1))
    model = make_model([helper.make_node("IsInf", ["x"], ["y"], detect_positive=positive, detect_negative=negative)],
                       {"x": x}, ["y"], opset=20)
    got = _agree(model, {"x": x})["y"]
    want = (positive & (x == np.inf)) | (negative & (x == -np.inf))
    np.testing.assert_array_equal(got, want)


def test_is_nan() -> None:
    x = np.tile(SPECIAL, (3, 1))
    model = make_model([helper.make_node("IsNaN", ["x"], ["y"])], {"x": x}, ["y"], opset=20)
    np.testing.assert_array_equal(_agree(model, {"x": x})["y"], np.isnan(x))


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("block", [2, 3])
def test_depth_to_space_and_back(mode: str, block: int) -> None:
    """DepthToSpace in either order, and SpaceToDepth in the same order undoing it exactly."""
    x = RNG.standard_normal((2, 2 * block * block, 3, 4)).astype(np.float32)
    d2s = make_model([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=block, mode=mode)], {"x": x}, ["y"],
                     opset=13)
    y = _agree(d2s, {"x": x})["y"]
    assert y.shape == (2, 2, 3 * block, 4 * block)
    s2d = make_model([helper.make_node("SpaceToDepth", ["y"], ["z"], blocksize=block, mode=mode)], {"y": y}, ["z"],
                     opset=25)
    np.testing.assert_array_equal(_agree(s2d, {"y": y})["z"], x)


@pytest.mark.parametrize(("node", "shape", "message"), [
    (helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2), (1, 3, 5, 4), "multiples of 2"),
    (helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2), (1, 6, 2, 2), "multiple of 4"),
    (helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="XYZ"), (1, 8, 2, 2), "mode 'XYZ'"),
    (helper.make_node("Celu", ["x"], ["y"], alpha=0.0), (2, 2), "alpha=0"),
])
def test_refusals_name_the_operator_and_why(node, shape: tuple[int, ...], message: str) -> None:  # type: ignore[no-untyped-def]
    x = RNG.standard_normal(shape).astype(np.float32)
    model = make_model([node], {"x": x}, ["y"], opset=13)
    with pytest.raises(OnnxImportError, match=message):
        from_onnx(model)


@pytest.mark.parametrize(("alpha", "dtype"), [(None, np.float32), (1.702, np.float32), (None, np.float16)])
def test_swiglu(alpha: float | None, dtype: type) -> None:
    a, b = (RNG.standard_normal((3, 8)).astype(dtype) * 3 for _ in range(2))
    attrs = {} if alpha is None else {"alpha": alpha}
    model = make_model([helper.make_node("SwiGLU", ["a", "b"], ["y"], **attrs)], {"a": a, "b": b}, ["y"], opset=27)
    tol = 2e-3 if dtype == np.float16 else 1e-5
    got = _agree(model, {"a": a, "b": b}, rtol=tol, atol=tol)["y"]
    assert got.dtype == dtype


def test_swiglu_refuses_broadcasting() -> None:
    a, b = RNG.standard_normal((3, 8)).astype(np.float32), RNG.standard_normal((1, 8)).astype(np.float32)
    model = make_model([helper.make_node("SwiGLU", ["a", "b"], ["y"])], {"a": a, "b": b}, ["y"], opset=27)
    with pytest.raises(OnnxImportError, match="one shape and dtype"):
        from_onnx(model)
