"""MaxPool's Indices output and MaxUnpool: imported as compositions of IR ops and checked against ONNX's reference
evaluator and ONNX Runtime on the reference and Numba backends."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError

from .test_onnx_import import make_model
from .test_onnx_import_logic import _agree

RNG = np.random.default_rng(53)


def _windows_max_and_first_argmax(x: np.ndarray, kernel: int, stride: int, pad: int, storage_order: int):  # type: ignore[no-untyped-def]
    """numpy: 2-D max pooling with the flat index (over the whole tensor) of each window's first largest value."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    oh, ow = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
    y, idx = np.empty((n, c, oh, ow), x.dtype), np.empty((n, c, oh, ow), np.int64)
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * stride:i * stride + kernel, j * stride:j * stride + kernel].reshape(n, c, -1)
            k = win.argmax(axis=2)
            y[:, :, i, j] = win.max(axis=2)
            hh, ww = i * stride + k // kernel - pad, j * stride + k % kernel - pad
            local = hh * w + ww if storage_order == 0 else ww * h + hh
            idx[:, :, i, j] = local + np.arange(n * c).reshape(n, c) * h * w
    return y, idx


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize(("kernel", "stride", "pad"), [(2, 2, 0), (3, 2, 1), (3, 3, 1)])
def test_max_pool_indices(storage_order: int, kernel: int, stride: int, pad: int) -> None:
    x = np.round(RNG.standard_normal((2, 3, 7, 8)) * 2).astype(np.float32)  # ties: the first in window order
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[kernel, kernel], strides=[stride, stride],
                            pads=[pad] * 4, storage_order=storage_order)
    got = _agree(make_model([node], {"x": x}, ["y", "i"], opset=12), {"x": x})
    want_y, want_i = _windows_max_and_first_argmax(x, kernel, stride, pad, storage_order)
    np.testing.assert_array_equal(got["y"], want_y)
    np.testing.assert_array_equal(got["i"], want_i)
    assert got["i"].dtype == np.int64


@pytest.mark.parametrize(("shape", "attrs"), [
    ((2, 2, 9), {"kernel_shape": [3], "strides": [2], "dilations": [2]}),
    ((1, 2, 4, 5, 6), {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2]}),
    ((1, 2, 7, 7), {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
])
def test_max_pool_indices_in_one_three_dimensions_dilated_and_ceil_mode(shape: tuple[int, ...], attrs) -> None:  # type: ignore[no-untyped-def]
    x = RNG.standard_normal(shape).astype(np.float32)
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], **attrs)
    got = _agree(make_model([node], {"x": x}, ["y", "i"], opset=12), {"x": x})
    np.testing.assert_array_equal(x.reshape(-1)[got["i"]], got["y"])  # each index points at its maximum


def test_unpool_inverts_pool_at_the_maxima() -> None:
    x = RNG.standard_normal((2, 3, 6, 8)).astype(np.float32)
    nodes = [helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("MaxUnpool", ["y", "i"], ["z"], kernel_shape=[2, 2], strides=[2, 2])]
    got = _agree(make_model(nodes, {"x": x}, ["z"], opset=12), {"x": x})["z"]
    assert got.shape == x.shape
    kept = got != 0
    np.testing.assert_array_equal(got[kept], x[kept])
    assert kept.sum() == 2 * 3 * 3 * 4  # one maximum per window


def test_unpool_to_the_inferred_output_shape_given_explicitly() -> None:
    y = RNG.standard_normal((1, 1, 2, 2)).astype(np.float32)
    i = np.array([5, 7, 13, 15], np.int64).reshape(1, 1, 2, 2)
    node = helper.make_node("MaxUnpool", ["y", "i", "s"], ["z"], kernel_shape=[2, 2], strides=[2, 2])
    got = _agree(make_model([node], {"y": y, "i": i}, ["z"], inits={"s": np.array([1, 1, 4, 4], np.int64)},
                            opset=11), {"y": y, "i": i})["z"]
    np.testing.assert_array_equal(got.reshape(-1)[[5, 7, 13, 15]], y.reshape(-1))


def test_unpool_to_another_output_shape_is_refused_as_ambiguous() -> None:
    y = np.ones((1, 1, 2, 2), np.float32)
    i = np.array([5, 7, 13, 15], np.int64).reshape(1, 1, 2, 2)
    node = helper.make_node("MaxUnpool", ["y", "i", "s"], ["z"], kernel_shape=[2, 2], strides=[2, 2])
    model = make_model([node], {"y": y, "i": i}, ["z"], inits={"s": np.array([1, 1, 5, 5], np.int64)}, opset=11)
    with pytest.raises(OnnxImportError, match=r"output_shape \[1, 1, 5, 5\] other than the inferred \[1, 1, 4, 4\]"):
        from_onnx(model)
