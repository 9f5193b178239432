"""GridSample and AffineGrid imported as compositions of IR ops: against ONNX's reference evaluator and ONNX
Runtime, on the reference and Numba backends; refusals named."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError

from .test_onnx_import import make_model
from .test_onnx_import_logic import _agree

RNG = np.random.default_rng(29)


def _grid(*shape: int) -> np.ndarray:
    """Normalized coordinates, some beyond [-1, 1] (and some exactly on pixel centres and halves)."""
    g = RNG.uniform(-1.6, 1.6, shape).astype(np.float32)
    g.reshape(-1)[:4] = [-1.0, 1.0, 0.0, -1.25]
    return g


@pytest.mark.parametrize("mode", ["linear", "nearest", "cubic"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align", [0, 1])
def test_grid_sample_2d(mode: str, padding: str, align: int) -> None:
    x = RNG.standard_normal((2, 3, 5, 6)).astype(np.float32)
    grid = _grid(2, 4, 7, 2)
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], mode=mode, padding_mode=padding, align_corners=align)
    model = make_model([node], {"x": x, "grid": grid}, ["y"], opset=20)
    feeds = {"x": x, "grid": grid}
    if (mode, padding) == ("cubic", "border"):  # ONNX Runtime reads a cubic tap past the border otherwise than
        g = from_onnx(model)                    # ONNX's definition (up to 0.3 apart here): the definition rules
        want = ReferenceEvaluator(model).run(None, feeds)[0]
        for got in (reference.run(g, feeds), runtime.compile(g, backend="numba").run(feeds)):
            np.testing.assert_allclose(got[g.outputs[0].name], want, rtol=1e-5, atol=1e-5)
        return
    got = _agree(model, feeds, rtol=1e-5, atol=1e-5)["y"]
    assert got.shape == (2, 3, 4, 7)


@pytest.mark.parametrize(("old", "new"), [("bilinear", "linear"), ("bicubic", "cubic")])
def test_grid_sample_opset_16_mode_names(old: str, new: str) -> None:
    x, grid = RNG.standard_normal((1, 2, 4, 4)).astype(np.float32), _grid(1, 3, 3, 2)
    feeds = {"x": x, "grid": grid}
    outs = []
    for mode, opset in ((old, 16), (new, 20)):
        model = make_model([helper.make_node("GridSample", ["x", "grid"], ["y"], mode=mode)], feeds, ["y"],
                           opset=opset)
        outs.append(reference.run(from_onnx(model), feeds))
    np.testing.assert_array_equal(*(next(iter(o.values())) for o in outs))


@pytest.mark.parametrize("mode", ["linear", "nearest"])
@pytest.mark.parametrize("padding", ["zeros", "reflection"])
def test_grid_sample_3d(mode: str, padding: str) -> None:
    x = RNG.standard_normal((1, 2, 3, 4, 5)).astype(np.float32)
    grid = _grid(1, 2, 3, 4, 3)
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], mode=mode, padding_mode=padding)
    model = make_model([node], {"x": x, "grid": grid}, ["y"], opset=20)
    assert _agree(model, {"x": x, "grid": grid}, rtol=1e-5, atol=1e-5)["y"].shape == (1, 2, 2, 3, 4)


def test_grid_sample_zeros_padding_ignores_what_lies_under_the_clamped_index() -> None:
    """A tap outside the input reads 0, even where the edge pixel it is clamped to is infinite."""
    x = np.zeros((1, 1, 2, 2), np.float32)
    x[0, 0, 0, 0] = np.inf
    grid = np.array([[[[-3.0, 0.5]]]], np.float32)  # far left of the input: every tap outside
    model = make_model([helper.make_node("GridSample", ["x", "grid"], ["y"])], {"x": x, "grid": grid}, ["y"],
                       opset=16)
    np.testing.assert_array_equal(_agree(model, {"x": x, "grid": grid})["y"], np.zeros((1, 1, 1, 1), np.float32))


@pytest.mark.parametrize(("size", "align"), [((2, 3, 4, 5), 0), ((2, 3, 4, 5), 1), ((1, 1, 2, 3, 4), 0)])
def test_affine_grid(size: tuple[int, ...], align: int) -> None:
    d = len(size) - 2
    theta = RNG.standard_normal((size[0], d, d + 1)).astype(np.float32)
    node = helper.make_node("AffineGrid", ["theta", "size"], ["grid"], align_corners=align)
    model = make_model([node], {"theta": theta}, ["grid"], {"size": np.array(size, np.int64)}, opset=20)
    got = _agree(model, {"theta": theta}, rtol=1e-5, atol=1e-5)["grid"]
    assert got.shape == (size[0], *size[2:], d)


@pytest.mark.parametrize(("x", "grid", "message"), [
    (np.zeros((1, 1, 4), np.float32), np.zeros((1, 4, 1), np.float32), "2 or 3"),
    (np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 2, 2, 3), np.float32), "grid"),
])
def test_malformed_grid_sample_is_refused(x: np.ndarray, grid: np.ndarray, message: str) -> None:
    model = make_model([helper.make_node("GridSample", ["x", "grid"], ["y"])], {"x": x, "grid": grid}, ["y"],
                       opset=20)
    with pytest.raises(OnnxImportError, match=message):
        from_onnx(model)


def test_affine_grid_needs_a_constant_size() -> None:
    theta, size = np.zeros((1, 2, 3), np.float32), np.array([1, 1, 2, 2], np.int64)
    model = make_model([helper.make_node("AffineGrid", ["theta", "size"], ["grid"])], {"theta": theta, "size": size},
                       ["grid"], opset=20)
    with pytest.raises(OnnxImportError, match="size.*must be a constant at import"):
        from_onnx(model)
