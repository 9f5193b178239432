"""ReduceProd and CumProd on run-time values as logarithmic-depth products of IR ops: against ONNX's reference
evaluator and ONNX Runtime on the reference and Numba backends."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError

from .test_onnx_import import make_model
from .test_onnx_import_logic import _agree

RNG = np.random.default_rng(67)


def _values(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return RNG.uniform(0.5, 1.5, shape).astype(dtype) * RNG.choice([-1, 1], shape).astype(dtype)
    return RNG.integers(-3, 4, shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.int32])
@pytest.mark.parametrize(("axes", "keepdims"), [([1], 1), ([0, 2], 0), (None, 1), ([-1], 0)])
def test_reduce_prod(dtype: type, axes: list[int] | None, keepdims: int) -> None:
    x = _values((3, 7, 5), dtype)  # odd lengths: padded with a one on the way
    inits = {} if axes is None else {"axes": np.array(axes, np.int64)}
    node = helper.make_node("ReduceProd", ["x"] + ([] if axes is None else ["axes"]), ["y"], keepdims=keepdims)
    model = make_model([node], {"x": x}, ["y"], inits, opset=18)
    got = _agree(model, {"x": x}, rtol=1e-5, atol=1e-6)["y"]
    want = np.prod(x, axis=None if axes is None else tuple(axes), keepdims=bool(keepdims))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
@pytest.mark.parametrize(("exclusive", "reverse"), [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize(("shape", "axis"), [((9,), 0), ((4, 6), 1), ((5, 3, 2), -3)])
def test_cum_prod(dtype: type, exclusive: int, reverse: int, shape: tuple[int, ...], axis: int) -> None:
    x = _values(shape, dtype)
    node = helper.make_node("CumProd", ["x", "axis"], ["y"], exclusive=exclusive, reverse=reverse)
    model = make_model([node], {"x": x}, ["y"], {"axis": np.array(axis, np.int64)}, opset=26)
    got = _agree(model, {"x": x}, rtol=1e-5, atol=1e-6)["y"]
    assert got.dtype == dtype and got.shape == shape


def test_reduce_prod_of_booleans_is_refused() -> None:
    x = np.ones((2, 2), bool)
    model = make_model([helper.make_node("ReduceProd", ["x"], ["y"])], {"x": x}, ["y"], opset=13)
    with pytest.raises(OnnxImportError, match="numbers only"):
        from_onnx(model)
