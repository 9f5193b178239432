"""QuantizeLinear / DequantizeLinear where the IR's quantize / dequantize do not fit (run-time scales and zero
points, blocks with zero points, int4 outputs): imported as compositions of IR ops and checked against ONNX's
reference evaluator and ONNX Runtime on the reference and Numba backends."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError

from .test_onnx_import import make_model
from .test_onnx_import_logic import _agree

RNG = np.random.default_rng(47)


def _x(shape: tuple[int, ...], spread: float = 3.0) -> np.ndarray:
    """Values with exact ties of x / 0.5 (halves to even) and some far past the saturation bounds."""
    x = (RNG.standard_normal(shape) * spread).astype(np.float32)
    flat = x.reshape(-1)
    flat[:6] = [0.25, 0.75, -0.25, -1.25, 1e4, -1e4]
    return x


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_quantize_with_run_time_scale_and_zero_point(dtype: type) -> None:
    """As DynamicQuantizeLinear written out as ops: the scale and zero point are inputs of the graph."""
    x = _x((4, 6))
    scale = np.array(0.5, np.float32)
    zp = np.array(3 if dtype == np.uint8 else -2, dtype)
    model = make_model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])], {"x": x, "s": scale, "z": zp},
                       ["y"], opset=13)
    got = _agree(model, {"x": x, "s": scale, "z": zp})["y"]
    assert got.dtype == dtype
    want = np.clip(np.rint(x / scale) + zp, *(0, 255) if dtype == np.uint8 else (-128, 127)).astype(dtype)
    np.testing.assert_array_equal(got, want)
    assert [n.op for n in from_onnx(model).nodes if n.op == "quantize"] == []


@pytest.mark.parametrize(("axis", "block", "shape", "constant"), [(1, 4, (3, 10), True), (0, 2, (5, 4), False),
                                                           (-1, 3, (2, 3, 7), True), (-1, 3, (2, 3, 7), False)])
def test_blocked_quantize_with_zero_points(axis: int, block: int, shape: tuple[int, ...], constant: bool) -> None:
    """Blocks of `block` along the axis share a scale and a zero point; the last block may be short."""
    x = _x(shape)
    ax = axis % len(shape)
    pshape = tuple(-(-d // block) if i == ax else d for i, d in enumerate(shape))
    scale = RNG.uniform(0.05, 0.5, pshape).astype(np.float32)
    zp = RNG.integers(-20, 20, pshape).astype(np.int8)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=axis, block_size=block)
    params = {"s": scale, "z": zp}
    model = make_model([node], {"x": x} if constant else {"x": x, **params}, ["y"],
                       inits=params if constant else None, opset=21)
    got = _agree(model, {"x": x} if constant else {"x": x, **params})["y"]
    s_full = np.take(np.repeat(scale, block, axis=ax), np.arange(shape[ax]), axis=ax)
    z_full = np.take(np.repeat(zp, block, axis=ax), np.arange(shape[ax]), axis=ax)
    np.testing.assert_array_equal(got, np.clip(np.rint(x / s_full) + z_full, -128, 127).astype(np.int8))


def test_quantize_to_int4_per_axis() -> None:
    x = _x((3, 8), spread=1.0)
    scale = np.array([0.1, 0.2, 0.3], np.float32)
    zp = np.array([1, -2, 0], ml_dtypes.int4)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=0)
    model = make_model([node], {"x": x}, ["y"], inits={"s": scale, "z": zp}, opset=21)
    got = _agree(model, {"x": x})["y"]
    assert got.dtype == ml_dtypes.int4
    want = np.clip(np.rint(x / scale[:, None]) + zp.astype(np.float32)[:, None], -8, 7)
    np.testing.assert_array_equal(got.astype(np.float32), want)


@pytest.mark.parametrize("dtype", [np.int8, ml_dtypes.int4])
@pytest.mark.parametrize("constant", [True, False])
def test_blocked_dequantize_with_zero_points(dtype: type, constant: bool) -> None:
    """The int4 / int8 weight-only form: blocks of 4 along the rows, a scale and a zero point per block."""
    lo, hi = (-8, 7) if dtype == ml_dtypes.int4 else (-128, 127)
    x = RNG.integers(lo, hi, (6, 10), endpoint=True).astype(dtype)
    scale = RNG.uniform(0.01, 0.1, (6, 3)).astype(np.float32)
    zp = RNG.integers(lo, hi, (6, 3), endpoint=True).astype(dtype)
    node = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], axis=1, block_size=4)
    params = {"s": scale, "z": zp}
    model = make_model([node], {"x": x} if constant else {"x": x, **params}, ["y"],
                       inits=params if constant else None, opset=21)
    got = _agree(model, {"x": x} if constant else {"x": x, **params}, rtol=1e-6, atol=1e-7)["y"]
    rep = np.arange(10) // 4
    want = (x.astype(np.float32) - zp.astype(np.float32)[:, rep]) * scale[:, rep]
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("per_axis", [False, True])
def test_dequantize_with_run_time_scale(per_axis: bool) -> None:
    x = RNG.integers(0, 255, (4, 5), endpoint=True).astype(np.uint8)
    scale = RNG.uniform(0.01, 0.1, 5 if per_axis else ()).astype(np.float32)
    zp = RNG.integers(0, 255, 5 if per_axis else (), endpoint=True).astype(np.uint8)
    node = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], axis=1)
    model = make_model([node], {"x": x, "s": scale, "z": zp}, ["y"], opset=19)
    got = _agree(model, {"x": x, "s": scale, "z": zp})["y"]
    np.testing.assert_allclose(got, (x.astype(np.float32) - zp.astype(np.float32)) * scale, rtol=1e-6)


def test_refusals_name_the_output_type() -> None:
    x = _x((2, 4))
    node = helper.make_node("QuantizeLinear", ["x", "s"], ["y"], output_dtype=TensorProto.INT16)
    model = make_model([node], {"x": x}, ["y"], inits={"s": np.array(0.1, np.float32)}, opset=21)
    with pytest.raises(OnnxImportError, match=r"quantization to int16 \(only int8, uint8 and int4\)"):
        from_onnx(model)
    node = helper.make_node("QuantizeLinear", ["x", "s"], ["y"], axis=1, block_size=3)
    model = make_model([node], {"x": x}, ["y"], inits={"s": np.ones((2, 1), np.float32)}, opset=21)
    with pytest.raises(OnnxImportError, match=r"must have shape \[2, 2\] for blocks of 3 along axis 1"):
        from_onnx(model)
