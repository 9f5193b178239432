"""RMSNormalization, ReduceLogSumExp, LpNormalization, Hardmax, OneHot, RotaryEmbedding and LpPool: imported as
compositions of IR ops and checked against ONNX's reference evaluator and ONNX Runtime on the reference and Numba
backends."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError

from .test_onnx_import import make_model, ort_outputs
from .test_onnx_import_logic import _agree

RNG = np.random.default_rng(29)


@pytest.mark.parametrize("axis", [-1, 1])
def test_rms_normalization(axis: int) -> None:
    x, scale = RNG.standard_normal((2, 3, 8)).astype(np.float32), RNG.standard_normal((3, 8)[axis:] if axis == 1
                                                                                       else (8,)).astype(np.float32)
    node = helper.make_node("RMSNormalization", ["x", "scale"], ["y"], axis=axis, epsilon=1e-3)
    model = make_model([node], {"x": x}, ["y"], {"scale": scale}, opset=23)
    got = _agree(model, {"x": x})
    axes = tuple(range(axis % 3, 3))
    want = x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=axes, keepdims=True) + 1e-3) * scale
    np.testing.assert_allclose(got["y"], want, rtol=1e-5)


@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_log_sum_exp_is_stabilized_by_the_maximum(keepdims: int) -> None:
    x = (RNG.standard_normal((3, 4, 5)) * 4).astype(np.float32)
    model = make_model([helper.make_node("ReduceLogSumExp", ["x", "axes"], ["y"], keepdims=keepdims)], {"x": x},
                       ["y"], {"axes": np.array([1, 2], np.int64)}, opset=18)
    _agree(model, {"x": x})
    big = np.full((2, 3), 100.0, np.float32)  # exp(100) overflows float32; m + log(sum(exp(x - m))) does not
    g = from_onnx(make_model([helper.make_node("ReduceLogSumExp", ["x"], ["y"], keepdims=0)], {"x": big}, ["y"],
                             opset=18))
    np.testing.assert_allclose(reference.run(g, {"x": big})["y"], 100.0 + np.log(6.0), rtol=1e-6)


def test_reduce_log_sum() -> None:
    x = RNG.uniform(0.5, 2.0, (3, 4)).astype(np.float32)
    model = make_model([helper.make_node("ReduceLogSum", ["x", "axes"], ["y"], keepdims=0)], {"x": x}, ["y"],
                       {"axes": np.array([1], np.int64)}, opset=18)
    np.testing.assert_allclose(_agree(model, {"x": x})["y"], np.log(x.sum(axis=1)), rtol=1e-6)


@pytest.mark.parametrize("p", [1, 2])
def test_lp_normalization(p: int) -> None:
    """ONNX's reference evaluator sums x ** p without |x| (wrong for p = 1), so p = 1 is held to ONNX Runtime and
    the definition."""
    x = RNG.standard_normal((3, 6)).astype(np.float32)
    x[:, 2] = 0.0  # a zero vector stays zero
    model = make_model([helper.make_node("LpNormalization", ["x"], ["y"], p=p, axis=0)], {"x": x}, ["y"])
    norm = np.abs(x).sum(axis=0) if p == 1 else np.sqrt((x * x).sum(axis=0))
    want = x / np.where(norm == 0, 1.0, norm)
    if p == 2:
        _agree(model, {"x": x})
    g = from_onnx(model)
    for got in (reference.run(g, {"x": x})["y"], runtime.compile(g, backend="numba").run({"x": x})["y"],
                *(ort_outputs(model, {"x": x}) or [])):
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_hardmax_marks_the_first_maximum() -> None:
    x = np.array([[1.0, 3.0, 3.0], [-1.0, -2.0, -1.0]], np.float32)
    got = _agree(make_model([helper.make_node("Hardmax", ["x"], ["y"])], {"x": x}, ["y"], opset=13), {"x": x})
    assert got["y"].tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot_with_negative_and_out_of_range_indices(axis: int) -> None:
    idx = np.array([[0, -1, 4], [2, 9, -7]], np.int64)  # -1 is the last class; 9 and -7 are all "off"
    node = helper.make_node("OneHot", ["idx", "depth", "values"], ["y"], axis=axis)
    model = make_model([node], {"idx": idx}, ["y"], {"depth": np.array(5, np.int64),
                                                     "values": np.array([-1.0, 3.0], np.float32)}, opset=11)
    got = _agree(model, {"idx": idx})
    assert got["y"].shape == tuple(np.insert(np.array(idx.shape), axis % 3, 5)) and (got["y"] == 3.0).sum() == 4


def _rotary_model(x: np.ndarray, caches: tuple[np.ndarray, np.ndarray], positions: np.ndarray | None,
                  **attrs: int):  # type: ignore[no-untyped-def]
    inputs = {"x": x, "cos": caches[0], "sin": caches[1]}
    if positions is not None:
        inputs["pos"] = positions
    node = helper.make_node("RotaryEmbedding", list(inputs), ["y"], **attrs)
    return make_model([node], inputs, ["y"], opset=23), inputs


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("rotary_dim", [0, 4])
@pytest.mark.parametrize("layout", ["4d", "3d", "no positions"])
def test_rotary_embedding(interleaved: int, rotary_dim: int, layout: str) -> None:
    """Halves or even / odd channels, the whole head or its first 4 channels, [B, heads, S, D] or [B, S, hidden]
    with num_heads, cos / sin rows picked by run-time position ids or given per token."""
    b, h, s, d = 2, 3, 5, 8
    half = (rotary_dim or d) // 2
    angles = RNG.uniform(0, 6.3, (40, half)).astype(np.float32)
    caches = np.cos(angles), np.sin(angles)
    positions = RNG.integers(0, 40, (b, s)).astype(np.int64)
    attrs = {"interleaved": interleaved, "rotary_embedding_dim": rotary_dim}
    if layout == "3d":
        x = RNG.standard_normal((b, s, h * d)).astype(np.float32)
        attrs["num_heads"] = h
    else:
        x = RNG.standard_normal((b, h, s, d)).astype(np.float32)
    if layout == "no positions":
        caches, positions = (caches[0][positions], caches[1][positions]), None
    model, feeds = _rotary_model(x, caches, positions, **attrs)
    got = _agree(model, feeds, rtol=1e-5, atol=1e-6)["y"]
    assert got.shape == x.shape
    if rotary_dim:  # channels past the rotary dimension pass through
        tail = got[..., rotary_dim:d] if layout != "3d" else got.reshape(b, s, h, d)[..., rotary_dim:]
        whole = x[..., rotary_dim:d] if layout != "3d" else x.reshape(b, s, h, d)[..., rotary_dim:]
        np.testing.assert_array_equal(tail, whole)


def test_rotary_embedding_in_half_precision_computes_in_float32() -> None:
    x = RNG.standard_normal((1, 2, 3, 4)).astype(np.float16)
    angles = RNG.uniform(0, 6.3, (1, 3, 2))
    caches = np.cos(angles).astype(np.float16), np.sin(angles).astype(np.float16)
    model, feeds = _rotary_model(x, caches, None)
    g = from_onnx(model)
    got = reference.run(g, feeds)["y"]
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=2e-3)
    np.testing.assert_array_equal(runtime.compile(g, backend="numba").run(feeds)["y"], got)


@pytest.mark.parametrize(("attrs", "cache_rows", "message"), [
    ({"rotary_embedding_dim": 5}, 2, "must be even"),
    ({}, 3, r"must be \[2, 5, 4\]"),
])
def test_rotary_embedding_refuses_what_it_cannot_rotate(attrs: dict[str, int], cache_rows: int, message: str) -> None:
    x = RNG.standard_normal((2, 3, 5, 8)).astype(np.float32)
    caches = RNG.standard_normal((40, cache_rows)).astype(np.float32), RNG.standard_normal((40, cache_rows)).astype(
        np.float32)
    model, _ = _rotary_model(x, caches, np.zeros((2, 5), np.int64), **attrs)
    with pytest.raises(OnnxImportError, match=message):
        from_onnx(model)


def test_rotary_embedding_of_a_3d_input_needs_num_heads() -> None:
    x = RNG.standard_normal((2, 5, 24)).astype(np.float32)
    caches = RNG.standard_normal((2, 5, 4)).astype(np.float32), RNG.standard_normal((2, 5, 4)).astype(np.float32)
    model, _ = _rotary_model(x, caches, None)
    with pytest.raises(OnnxImportError, match="needs num_heads"):
        from_onnx(model)


@pytest.mark.parametrize(("shape", "attrs"), [
    ((2, 3, 9, 8), {"kernel_shape": [3, 2], "p": 2}),
    ((2, 3, 9, 8), {"kernel_shape": [3, 3], "p": 1, "strides": [2, 2], "pads": [1, 0, 1, 2]}),
    ((1, 2, 10, 11), {"kernel_shape": [2, 3], "p": 3, "strides": [2, 3], "ceil_mode": 1}),
    ((1, 2, 10, 11), {"kernel_shape": [2, 2], "p": 2, "dilations": [2, 3], "pads": [1, 1, 0, 2]}),
    ((1, 2, 10, 11), {"kernel_shape": [3, 2], "p": 2, "strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((2, 3, 12), {"kernel_shape": [4], "p": 2, "strides": [3], "pads": [1, 2]}),
    ((1, 2, 5, 6, 7), {"kernel_shape": [2, 3, 2], "p": 2, "strides": [1, 2, 2], "pads": [1, 0, 1, 0, 1, 1]}),
])
def test_lp_pool(shape: tuple[int, ...], attrs: dict[str, object]) -> None:
    """p = 1, 2 and 3, strides, pads, ceil mode, dilations, auto_pad, 1 and 3 spatial axes. In ceil mode a window
    past the edge sums the cells it has, as ONNX Runtime does (ONNX's reference evaluator scales their mean by the
    whole window's size instead)."""
    x = RNG.standard_normal(shape).astype(np.float32)
    model = make_model([helper.make_node("LpPool", ["x"], ["y"], **attrs)], {"x": x}, ["y"], opset=22)
    if attrs.get("ceil_mode"):
        g = from_onnx(model)
        got = reference.run(g, {"x": x})["y"]
        np.testing.assert_allclose(runtime.compile(g, backend="numba").run({"x": x})["y"], got, rtol=1e-5)
        padded = np.zeros(shape[:2] + (shape[2] + 1, shape[3] + 2), np.float32)  # zeros past the edge
        padded[:, :, :shape[2], :shape[3]] = np.abs(x) ** 3
        want = np.stack([np.stack([padded[:, :, 2 * i:2 * i + 2, 3 * j:3 * j + 3].sum(axis=(2, 3))
                                   for j in range(got.shape[3])], -1) for i in range(got.shape[2])], -2) ** (1 / 3)
        np.testing.assert_allclose(got, want, rtol=1e-5)
        theirs = ort_outputs(model, {"x": x})
        if theirs is not None:
            np.testing.assert_allclose(got, theirs[0], rtol=1e-5)
        return
    got = _agree(model, {"x": x}, rtol=1e-5, atol=1e-6)["y"]
    assert [n.op for n in from_onnx(model).nodes].count("conv2d") == (2 if len(shape) == 5 else 1)
    assert np.all(got >= 0)


def test_lp_pool_refuses_a_non_positive_p() -> None:
    x = RNG.standard_normal((1, 2, 4, 4)).astype(np.float32)
    model = make_model([helper.make_node("LpPool", ["x"], ["y"], kernel_shape=[2, 2], p=0)], {"x": x}, ["y"],
                       opset=22)
    with pytest.raises(OnnxImportError, match="p must be positive"):
        from_onnx(model)
