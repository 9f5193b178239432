"""GroupNormalization, MeanVarianceNormalization, Mish and Shrink: imported as compositions of IR ops and checked
against ONNX's reference evaluator and ONNX Runtime on the reference and Numba backends."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError

from .test_onnx_import import make_model
from .test_onnx_import_logic import _agree

RNG = np.random.default_rng(43)


@pytest.mark.parametrize(("opset", "groups", "shape", "constant_affine"), [
    (21, 2, (2, 4, 3, 5), True), (21, 4, (1, 8, 6), False), (21, 1, (2, 3, 2, 2, 2), True),
    (18, 3, (2, 6, 4, 4), False), (18, 6, (1, 6, 5), True),
])
def test_group_normalization(opset: int, groups: int, shape: tuple[int, ...], constant_affine: bool) -> None:
    """Per-channel affine (opset 21) or per-group (opset 18), the affine as initializers or run-time inputs."""
    x = (RNG.standard_normal(shape) * 3 + 1).astype(np.float32)
    n_affine = shape[1] if opset >= 21 else groups
    scale = RNG.standard_normal(n_affine).astype(np.float32)
    bias = RNG.standard_normal(n_affine).astype(np.float32)
    node = helper.make_node("GroupNormalization", ["x", "scale", "bias"], ["y"], num_groups=groups, epsilon=1e-3)
    affine = {"scale": scale, "bias": bias}
    model = make_model([node], {"x": x} if constant_affine else {"x": x, **affine}, ["y"],
                       inits=affine if constant_affine else None, opset=opset)
    feeds = {"x": x} if constant_affine else {"x": x, **affine}
    got = _agree(model, feeds, rtol=1e-4, atol=1e-5)["y"]
    grouped = x.astype(np.float64).reshape(shape[0], groups, -1)
    normed = ((grouped - grouped.mean(-1, keepdims=True)) / np.sqrt(grouped.var(-1, keepdims=True) + 1e-3))
    if opset >= 21:
        per_c = (shape[1],) + (1,) * (len(shape) - 2)
        want = normed.reshape(shape) * scale.reshape(per_c) + bias.reshape(per_c)
    else:
        want = (normed * scale[:, None] + bias[:, None]).reshape(shape)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_group_normalization_of_half_precision_normalizes_in_float32() -> None:
    x = RNG.standard_normal((2, 4, 8)).astype(np.float16)
    scale, bias = np.ones(4, np.float16), np.zeros(4, np.float16)
    node = helper.make_node("GroupNormalization", ["x", "scale", "bias"], ["y"], num_groups=2)
    model = make_model([node], {"x": x}, ["y"], inits={"scale": scale, "bias": bias}, opset=21)
    got = _agree(model, {"x": x}, rtol=5e-3, atol=5e-3)["y"]
    assert got.dtype == np.float16
    assert "layernorm" in [n.op for n in from_onnx(model).nodes]
    assert all(n.outputs[0].type.dtype.name == "f32" for n in from_onnx(model).nodes if n.op == "layernorm")


@pytest.mark.parametrize("axes", [None, [0, 2, 3], [1], [-1, -2], [0, 1, 2, 3]])
def test_mean_variance_normalization(axes: list[int] | None) -> None:
    x = (RNG.standard_normal((2, 3, 4, 5)) * 2 + 0.5).astype(np.float32)
    attrs = {} if axes is None else {"axes": axes}
    model = make_model([helper.make_node("MeanVarianceNormalization", ["x"], ["y"], **attrs)], {"x": x}, ["y"],
                       opset=13)
    got = _agree(model, {"x": x}, rtol=1e-4, atol=1e-5)["y"]
    ax = tuple(a % 4 for a in (axes or [0, 2, 3]))
    d = x.astype(np.float64) - x.mean(axis=ax, keepdims=True, dtype=np.float64)
    np.testing.assert_allclose(got, d / (np.sqrt((d * d).mean(axis=ax, keepdims=True)) + 1e-9), rtol=1e-4, atol=1e-5)


def test_mish() -> None:
    x = np.concatenate([RNG.standard_normal(40).astype(np.float32) * 4,
                        np.array([0.0, -0.0, 30.0, -30.0, 90.0, -100.0, np.inf, -np.inf], np.float32)]).reshape(6, 8)
    model = make_model([helper.make_node("Mish", ["x"], ["y"])], {"x": x}, ["y"], opset=22)
    got = _agree(model, {"x": x}, rtol=1e-5, atol=1e-6)["y"]
    xd = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        want = xd * np.tanh(np.logaddexp(0.0, xd))  # at -inf: -inf * tanh(0), NaN by the definition
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got[-1, -2] == np.inf and np.isnan(got[-1, -1])


@pytest.mark.parametrize(("dtype", "lambd", "bias"), [
    (np.float32, 0.5, 0.0), (np.float32, 1.5, 0.25), (np.float32, 0.0, 1.0), (np.int8, 2.0, 1.0),
    (np.int32, 0.0, 3.0), (np.uint8, 3.0, 2.0),
])
def test_shrink(dtype: type, lambd: float, bias: float) -> None:
    if np.dtype(dtype).kind == "f":
        x = (RNG.standard_normal((5, 7)) * 3).astype(dtype)
        x[0, :3] = [lambd, -lambd, 0.0]  # at the thresholds: zero
    else:
        info = np.iinfo(dtype)
        x = RNG.integers(max(info.min, -9), min(info.max, 9), (5, 7), endpoint=True).astype(dtype)
    node = helper.make_node("Shrink", ["x"], ["y"], lambd=lambd, bias=bias)
    got = _agree(make_model([node], {"x": x}, ["y"], opset=9), {"x": x})["y"]
    xd = x.astype(np.float64)
    want = np.where(xd < -lambd, xd + bias, np.where(xd > lambd, xd - bias, 0.0)).astype(dtype)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == dtype


@pytest.mark.parametrize(("node", "shape", "inits", "message"), [
    (helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=3), (1, 4, 2),
     {"s": np.ones(4, np.float32), "b": np.zeros(4, np.float32)}, "must divide the 4 channels"),
    (helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2), (1, 4, 2),
     {"s": np.ones(2, np.float32), "b": np.zeros(2, np.float32)}, r"scale .* must have shape \[4\]"),
    (helper.make_node("Shrink", ["x"], ["y"], lambd=0.5), (2, 3), {}, "integer lambd and bias"),
])
def test_refusals_name_the_operator_and_why(node, shape: tuple[int, ...], inits: dict[str, np.ndarray],  # type: ignore[no-untyped-def]
                                            message: str) -> None:
    x = np.ones(shape, np.int32 if node.op_type == "Shrink" else np.float32)
    model = make_model([node], {"x": x}, ["y"], inits=inits, opset=21 if node.op_type != "Shrink" else 9)
    with pytest.raises(OnnxImportError, match=message):
        from_onnx(model)
