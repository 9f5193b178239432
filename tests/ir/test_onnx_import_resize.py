"""ONNX Resize and Upsample as constant-index gathers and weighted sums, against ONNX's reference evaluator and
ONNX Runtime on the reference and Numba backends."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError
from tensorsmith.ir.onnx_ops_resize import source_coordinates, tap_table

from .test_onnx_import import make_model
from .test_onnx_import_logic import _agree

RNG = np.random.default_rng(31)
X = RNG.standard_normal((1, 2, 5, 6)).astype(np.float32)
EMPTY = np.zeros(0, np.float32)
F32_SUMS = {"rtol": 1e-5, "atol": 5e-6}
"""Interpolations sum 2-4 float32 products here; ONNX's evaluator works in float64 and rounds once."""


def _resize(scales: list[float] | None = None, sizes: list[int] | None = None, roi: list[float] | None = None,
            opset: int = 19, **attrs: object):  # type: ignore[no-untyped-def]
    inits = {"roi": np.asarray(roi, np.float32) if roi is not None else EMPTY,
             "scales": np.asarray(scales, np.float32) if scales is not None else EMPTY}
    names = ["x", "roi", "scales"]
    if sizes is not None:
        inits["sizes"] = np.asarray(sizes, np.int64)
        names.append("sizes")
    return make_model([helper.make_node("Resize", names, ["y"], **attrs)], {"x": X}, ["y"], inits, opset=opset)


@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
@pytest.mark.parametrize("transform", ["half_pixel", "asymmetric", "align_corners"])
def test_nearest_is_one_exact_gather_per_axis(nearest_mode: str, transform: str) -> None:
    """Scales exact in binary: with 1.6 (1.60000002 in float32) ONNX's float64 definition and ONNX Runtime's float32
    arithmetic round some sources to different neighbours; we follow ONNX (the conformance cases)."""
    model = _resize(scales=[1, 1, 2.0, 0.5], mode="nearest", nearest_mode=nearest_mode,
                    coordinate_transformation_mode=transform)
    got = _agree(model, {"x": X})
    assert got["y"].shape == (1, 2, 10, 3)
    assert [n.op for n in from_onnx(model).nodes] == ["gather", "gather"]
    assert set(np.unique(got["y"])) <= set(np.unique(X))  # values moved, never computed


@pytest.mark.parametrize(("mode", "transform"), [("linear", "half_pixel"), ("linear", "pytorch_half_pixel"),
                                                 ("linear", "align_corners"), ("cubic", "half_pixel"),
                                                 ("cubic", "asymmetric"), ("linear", "half_pixel_symmetric")])
def test_linear_and_cubic_interpolation(mode: str, transform: str) -> None:
    """Scales that give whole output widths: with a fractional one (5 x 0.5 = 2.5 rows) ONNX's definition uses the
    fractional width in align_corners, ONNX Runtime the whole one; we follow ONNX (the conformance cases)."""
    _agree(_resize(sizes=[1, 2, 9, 4], mode=mode, coordinate_transformation_mode=transform), {"x": X}, **F32_SUMS)
    _agree(_resize(scales=[1, 1, 0.6, 2.5], mode=mode, coordinate_transformation_mode=transform), {"x": X},
           **F32_SUMS)


def test_cubic_with_exclude_outside_and_another_a() -> None:
    _agree(_resize(scales=[1, 1, 1.6, 1.6], mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1), {"x": X},
           **F32_SUMS)


def test_crop_and_resize_extrapolates_outside_the_roi() -> None:
    model = _resize(sizes=[3, 3], roi=[0.4, 0.6, 1.2, 0.9], axes=[2, 3], mode="linear",
                    coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=10.0)
    got = _agree(model, {"x": X}, **F32_SUMS)
    assert (got["y"] == 10.0).any() and got["y"].shape == (1, 2, 3, 3)


@pytest.mark.parametrize("policy", ["not_larger", "not_smaller"])
def test_sizes_keeping_the_aspect_ratio(policy: str) -> None:
    _agree(_resize(sizes=[7, 8], axes=[2, 3], mode="nearest", keep_aspect_ratio_policy=policy), {"x": X})


def test_upsample_nearest_repeats() -> None:
    model = make_model([helper.make_node("Upsample", ["x", "scales"], ["y"], mode="nearest")], {"x": X}, ["y"],
                       {"scales": np.array([1, 1, 2, 3], np.float32)}, opset=9)
    got = _agree(model, {"x": X})
    np.testing.assert_array_equal(got["y"], X.repeat(2, axis=2).repeat(3, axis=3))


def test_tap_tables_follow_the_definitions() -> None:
    x, _ = source_coordinates("half_pixel", 4, 2, 2.0)  # 2 -> 4: sources -0.25, 0.25, 0.75, 1.25
    np.testing.assert_allclose(x, [-0.25, 0.25, 0.75, 1.25])
    idx, w = tap_table("linear", x, 2)
    assert idx.tolist() == [[0, 0], [0, 1], [0, 1], [1, 1]]  # clamped at the edges
    np.testing.assert_allclose(w, [[0.25, 0.75], [0.75, 0.25], [0.25, 0.75], [0.75, 0.25]])
    idx, w = tap_table("nearest", np.array([1.0, 1.5, 1.5]), 4, nearest_mode="round_prefer_ceil")
    assert idx[np.arange(3), w.argmax(axis=1)].tolist() == [1, 2, 2]  # an integer source reads itself


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize(("scales", "sizes"), [([1, 1, 0.5, 0.5], None), ([1, 1, 0.4, 0.75], None),
                                               (None, [1, 2, 2, 5]), ([1, 1, 1.5, 0.5], None)])
def test_antialias_stretches_the_kernel_when_downsampling(mode: str, scales: list[float] | None,
                                                          sizes: list[int] | None) -> None:
    model = _resize(scales=scales, sizes=sizes, mode=mode, antialias=1)
    got = _agree(model, {"x": X}, **F32_SUMS)["y"]
    plain = _agree(_resize(scales=scales, sizes=sizes, mode=mode), {"x": X}, **F32_SUMS)["y"]
    assert not np.allclose(got, plain)  # the wider kernel averages more input positions


def test_antialias_widens_the_taps_and_keeps_the_weights_normalized() -> None:
    x = np.array([0.25, 2.25, 4.25])  # downsampling 10 -> 3 (scale 0.3): about 2 / 0.3 taps of a linear kernel
    idx, w = tap_table("linear", x, 10, antialias_scale=0.3)
    assert idx.shape == (3, 8) and np.allclose(w.sum(axis=1), 1.0) and np.all(w >= 0)


def test_antialiased_nearest_and_old_resize_are_refused_by_name() -> None:
    with pytest.raises(OnnxImportError, match="antialias in nearest mode"):
        from_onnx(_resize(scales=[1, 1, 0.5, 0.5], mode="nearest", antialias=1))
    old = make_model([helper.make_node("Resize", ["x", "scales"], ["y"])], {"x": X}, ["y"],
                     {"scales": np.array([1, 1, 2, 2], np.float32)}, opset=10)
    with pytest.raises(OnnxImportError, match="Resize before opset 11"):
        from_onnx(old)
