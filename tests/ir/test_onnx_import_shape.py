"""ONNX import of constants, shape computations and data movement, including import-time folding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError
from tensorsmith.runtime.numba_exec import NumbaExecutable

from .test_onnx_import import check, make_model, one_node, rand

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min


def test_shape_subgraph_is_folded_with_symbolic_batch() -> None:
    """Flatten written the exporter way: Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""
    x = rand(3, 4, 5)
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = {"zero": np.array(0, np.int64), "ax0": np.array([0], np.int64), "minus1": np.array([-1], np.int64)}
    m = make_model(nodes, {"x": x}, ["y"], inits, opset=13)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    g = check(m, {"x": x}, input_shapes={"x": (3, 4, 5)})
    assert [n.op for n in g.nodes] == ["reshape"]
    assert g.outputs[0].type.shape == (3, 20)


def test_constant_of_shape_and_shape_ops_fold_to_constants() -> None:
    x = rand(2, 3)
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("ConstantOfShape", ["s"], ["ones"], value=helper.make_tensor("v", 1, [1], [1.5])),
        helper.make_node("Size", ["x"], ["n"]),
        helper.make_node("Cast", ["n"], ["nf"], to=1),
        helper.make_node("Mul", ["ones", "nf"], ["c"]),
        helper.make_node("Add", ["x", "c"], ["y"]),
    ]
    g = check(make_model(nodes, {"x": x}, ["y"]), {"x": x})
    assert [n.op for n in g.nodes] == ["add"]
    np.testing.assert_array_equal(g.nodes[0].inputs[1].data, np.full((2, 3), 9.0, np.float32))


@pytest.mark.parametrize("attrs", [dict(value_float=2.5), dict(value_ints=[1, 2, 3]), dict(value_int=7),
                                   dict(value=helper.make_tensor("t", 6, [2, 2], [1, 2, 3, 4]))])
def test_constant_forms(attrs: dict) -> None:
    m = make_model([helper.make_node("Constant", [], ["y"], **attrs)], {}, ["y"])
    check(m, {})


def test_range_where_equal_fold() -> None:
    x = rand(4, 5)
    nodes = [
        helper.make_node("Range", ["start", "limit", "delta"], ["r"]),
        helper.make_node("Equal", ["r", "two"], ["eq"]),
        helper.make_node("Where", ["eq", "big", "r"], ["idx"]),
        helper.make_node("Gather", ["x", "idx"], ["y"], axis=1),
    ]
    inits = {"start": np.array(0, np.int64), "limit": np.array(4, np.int64), "delta": np.array(1, np.int64),
             "two": np.array(2, np.int64), "big": np.array(4, np.int64)}
    check(make_model(nodes, {"x": x}, ["y"], inits), {"x": x})


@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_folds_on_constants_with_the_divisor_sign_or_fmod(fmod: int) -> None:
    """Mod in a shape computation (as PyTorch's attention export writes it) folds at import."""
    x = rand(3, 4)
    nodes = [helper.make_node("Mod", ["a", "b"], ["m"], fmod=fmod),
             helper.make_node("Gather", ["x", "m"], ["y"], axis=1)]
    inits = {"a": np.array([-5, 7, 3], np.int64), "b": np.array(4, np.int64)}
    g = check(make_model(nodes, {"x": x}, ["y"], inits), {"x": x})
    want = [3, 3, 3] if fmod == 0 else [-1, 3, 3]
    np.testing.assert_array_equal(g.nodes[0].inputs[1].data, want)


@pytest.mark.parametrize("shape,allowzero", [([0, -1], 0), ([2, 0, 2], 0), ([-1], 0), ([3, 0], 1)])
def test_reshape(shape: list, allowzero: int) -> None:
    x = rand(2, 3, 2) if not allowzero else np.zeros((3, 0, 2), np.float32)
    check(one_node("Reshape", {"x": x}, {"s": np.array(shape, np.int64)}, allowzero=allowzero, opset=14), {"x": x})


def test_reshape_with_runtime_shape_names_the_node() -> None:
    x = rand(2, 6)
    m = one_node("Reshape", {"x": x, "s": np.array([3, 4], np.int64)})
    with pytest.raises(ValueError, match=r"node #0 \(Reshape.*input 1 \(shape\) must be a constant"):
        from_onnx(m)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_flatten(axis: int) -> None:
    x = rand(2, 3, 4)
    check(one_node("Flatten", {"x": x}, axis=axis), {"x": x})


@pytest.mark.parametrize("perm", [None, [1, 0, 2], [2, 0, 1]])
def test_transpose(perm: list | None) -> None:
    x = rand(2, 3, 4)
    kw = {} if perm is None else {"perm": perm}
    check(one_node("Transpose", {"x": x}, **kw), {"x": x})


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze(opset: int) -> None:
    x = rand(1, 3, 1, 4)
    if opset < 13:
        nodes = [helper.make_node("Squeeze", ["x"], ["s"], axes=[0, -2]),
                 helper.make_node("Unsqueeze", ["s"], ["y"], axes=[-1, 1])]
        inits = {}
    else:
        nodes = [helper.make_node("Squeeze", ["x", "a"], ["s"]), helper.make_node("Unsqueeze", ["s", "b"], ["y"])]
        inits = {"a": np.array([0, -2], np.int64), "b": np.array([-1, 1], np.int64)}
    check(make_model(nodes, {"x": x}, ["y"], inits, opset=opset), {"x": x})
    check(one_node("Squeeze", {"x": x}, opset=opset), {"x": x})  # no axes: every unit axis


def test_squeeze_non_unit_axis_is_an_error() -> None:
    x = rand(2, 3)
    with pytest.raises(ValueError, match="cannot squeeze axes"):
        from_onnx(one_node("Squeeze", {"x": x}, {"a": np.array([0], np.int64)}, opset=13))


SLICES = [
    ([1, 0], [3, INT64_MAX], None, None),
    ([-1], [INT64_MIN], [1], [-1]),
    ([INT64_MAX, 0], [0, 5], [0, 2], [-2, 2]),
    ([0, 10], [-1, -20], [-1, 1], [1, -3]),
]


@pytest.mark.parametrize("starts,ends,axes,steps", SLICES)
def test_slice_opset13(starts: list, ends: list, axes: list | None, steps: list | None) -> None:
    x = rand(4, 6, 7)
    inits = {"st": np.array(starts, np.int64), "en": np.array(ends, np.int64)}
    names = ["x", "st", "en"]
    if axes is not None:
        inits["ax"] = np.array(axes, np.int64)
        names.append("ax")
    if steps is not None:
        inits["sp"] = np.array(steps, np.int64)
        names.append("sp")
    check(make_model([helper.make_node("Slice", names, ["y"])], {"x": x}, ["y"], inits, opset=13), {"x": x})


def test_slice_opset9_attributes() -> None:
    x = rand(5, 6)
    check(one_node("Slice", {"x": x}, starts=[1, -4], ends=[1000, -1], axes=[0, 1], opset=9), {"x": x})


@settings(max_examples=60, deadline=None)
@given(dim=st.integers(1, 6), start=st.integers(-9, 9) | st.sampled_from([INT64_MIN, INT64_MAX]),
       end=st.integers(-9, 9) | st.sampled_from([INT64_MIN, INT64_MAX]), step=st.sampled_from([-3, -2, -1, 1, 2, 3]))
def test_slice_bounds_match_onnx(dim: int, start: int, end: int, step: int) -> None:
    x = np.arange(dim, dtype=np.float32)
    inits = {"st": np.array([start], np.int64), "en": np.array([end], np.int64), "ax": np.array([0], np.int64),
             "sp": np.array([step], np.int64)}
    m = make_model([helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])], {"x": x}, ["y"], inits, 13)
    # the Slice-13 text, literally: negative indices count from the end, then clamp by the step's sign
    s = start + dim if start < 0 else start
    e = end + dim if end < 0 else end
    if step > 0:
        s, e = min(max(s, 0), dim), min(max(e, 0), dim)
    else:
        s, e = min(max(s, 0), dim - 1), min(max(e, -1), dim - 1)
    idx = list(range(s, e, step))
    # onnxruntime reads an INT64_MAX end with a negative step as "to the start", and the evaluator
    # clamps a negative start like numpy does; the spec text is the oracle here
    check(m, {"x": x}, expected=[x[idx]], ort=False)


@pytest.mark.parametrize("opset,split,n_out,axis", [(11, [2, 4], 2, 1), (13, [1, 1, 4], 3, -1), (11, None, 3, 1),
                                                    (18, None, 4, 1)])
def test_split(opset: int, split: list | None, n_out: int, axis: int) -> None:
    x = rand(2, 6, 3) if axis != -1 else rand(2, 3, 6)
    outs = [f"y{i}" for i in range(n_out)]
    inits, names, attrs = {}, ["x"], {"axis": axis}
    if split is not None and opset >= 13:
        inits["s"] = np.array(split, np.int64)
        names.append("s")
    elif split is not None:
        attrs["split"] = split
    if opset >= 18 and split is None:
        attrs["num_outputs"] = n_out
    check(make_model([helper.make_node("Split", names, outs, **attrs)], {"x": x}, outs, inits, opset), {"x": x})


def test_concat_mixes_constants_and_values() -> None:
    x = rand(2, 3)
    check(one_node("Concat", {"x": x}, {"c": rand(2, 2), "e": np.zeros((2, 0), np.float32)}, axis=-1), {"x": x})


@pytest.mark.parametrize("indices,axis", [(np.array([2, -1, 0]), 1), (np.array([[0, 1], [1, 0]]), 0),
                                          (np.array(1), 2)])
def test_gather_constant_indices(indices: np.ndarray, axis: int) -> None:
    x = rand(3, 4, 5)
    check(one_node("Gather", {"x": x}, {"i": indices.astype(np.int64)}, axis=axis), {"x": x})


def test_gather_runtime_indices_and_constant_table() -> None:
    idx = np.array([[1, 3, 0]], np.int64)
    m = make_model([helper.make_node("Gather", ["table", "i"], ["y"])], {"i": idx}, ["y"], {"table": rand(4, 6)})
    check(m, {"i": idx})


@pytest.mark.parametrize("shape", [[2, 1, 3], [3, 1], [4, 2, 3, 1]])
def test_expand(shape: list) -> None:
    x = rand(2, 1, 1) if len(shape) >= 3 else rand(1, 1)
    check(one_node("Expand", {"x": x}, {"s": np.array(shape, np.int64)}), {"x": x})


def test_tile() -> None:
    x = rand(2, 3)
    check(one_node("Tile", {"x": x}, {"r": np.array([2, 3], np.int64)}), {"x": x})


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("pads", [[0, 1, 2, 1, 0, 2], [1, -1, 0, 0, 2, -1]])
def test_pad(mode: str, pads: list) -> None:
    x = rand(2, 4, 5)
    lo, hi = np.array(pads[:3]), np.array(pads[3:])
    crop = x[tuple(slice(max(-a, 0), x.shape[i] - max(-b, 0)) for i, (a, b) in enumerate(zip(lo, hi)))]
    widths = [(max(a, 0), max(b, 0)) for a, b in zip(lo, hi)]
    kw = {"constant_values": 1.5} if mode == "constant" else {}
    want = np.pad(crop, widths, mode={"edge": "edge", "reflect": "reflect", "wrap": "wrap"}.get(mode, "constant"), **kw)
    check(one_node("Pad", {"x": x}, {"p": np.array(pads, np.int64), "v": np.array(1.5, np.float32)}, mode=mode,
                   opset=19), {"x": x}, expected=[want])  # the evaluator rejects negative pads


def test_pad_axes_and_legacy_attributes() -> None:
    x = rand(2, 4, 5)
    m = make_model([helper.make_node("Pad", ["x", "p", "", "a"], ["y"], mode="edge")], {"x": x}, ["y"],
                   {"p": np.array([1, 2, 0, 1], np.int64), "a": np.array([-1, 0], np.int64)}, opset=18)
    check(m, {"x": x})
    check(one_node("Pad", {"x": x}, pads=[0, 0, 1, 0, 0, 2], value=-1.0, opset=9), {"x": x})


@pytest.mark.parametrize("to", [6, 7, 10])
def test_cast(to: int) -> None:
    x = (rand(3, 4) * 10).astype(np.float32)
    check(one_node("Cast", {"x": x}, to=to), {"x": x})


def test_castlike() -> None:
    x = rand(3, 4)
    check(one_node("CastLike", {"x": x}, {"like": np.zeros(1, np.float16)}), {"x": x})


@pytest.mark.parametrize("opset", [7, 12, 13])
def test_dropout_is_identity_with_mask(opset: int) -> None:
    x = rand(3, 4)
    m = one_node("Dropout", {"x": x}, n_out=2, opset=opset)
    mask = np.ones(x.shape, np.bool_ if opset >= 10 else np.float32)  # opsets 7-9: the mask has x's type
    g = check(m, {"x": x}, expected=[x, mask], ort=opset >= 10)  # onnxruntime gives a zero float mask
    assert [n.op for n in g.nodes] in ([], ["identity"])


def test_identity() -> None:
    x = rand(3)
    m = make_model([helper.make_node("Identity", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["y"])], {"x": x},
                   ["y"])
    g = check(m, {"x": x})
    assert [n.op for n in g.nodes] == ["relu"]


def test_where_with_constant_mask_selects_between_runtime_tensors() -> None:
    """The causal-mask pattern of exported attention: Where(mask, scores, -inf) with a constant mask."""
    scores = rand(2, 3, 4, 4)
    causal = np.tril(np.ones((4, 4), bool))[None, None]
    nodes = [helper.make_node("Where", ["mask", "s", "neg"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["y"], axis=-1)]
    inits = {"mask": causal, "neg": np.array(-np.inf, np.float32)}
    g = check(make_model(nodes, {"s": scores}, ["y"], inits), {"s": scores})
    assert "gather" in [n.op for n in g.nodes]
    both = {"a": rand(2, 1), "b": rand(3)}
    m = make_model([helper.make_node("Where", ["c", "a", "b"], ["y"])], both, ["y"],
                   {"c": np.array([True, False, True])})
    check(m, both)
    all_true = make_model([helper.make_node("Where", ["c", "a", "b"], ["y"])], both, ["y"],
                          {"c": np.ones((2, 3), bool)})
    assert "gather" in [n.op for n in check(all_true, both).nodes]  # a broadcast to [2, 3]


def test_where_with_a_runtime_condition_is_the_where_op() -> None:
    feeds = {"c": np.array([True, False]), "a": rand(2), "b": rand(2)}
    g = check(make_model([helper.make_node("Where", ["c", "a", "b"], ["y"])], feeds, ["y"]), feeds)
    assert [n.op for n in g.nodes] == ["where"]
    bad = {"c": np.array([1.0, 0.0], np.float32), "a": rand(2), "b": rand(2)}
    with pytest.raises(OnnxImportError, match="Where needs a bool condition"):
        from_onnx(make_model([helper.make_node("Where", ["c", "a", "b"], ["y"])], bad, ["y"]))


@pytest.mark.parametrize(("shape", "target", "axes"), [
    ((5, 6, 3), [3, 9, 3], None),  # an odd crop, an odd pad, an axis kept
    ((4, 7, 3), [6, 2], [0, -2]),  # pad and crop on chosen axes, one negative
    ((2, 3, 10, 9), [10, 4], [2, 3]),
])
def test_center_crop_pad(shape: tuple[int, ...], target: list[int], axes: list[int] | None) -> None:
    x = rand(*shape)
    attrs = {} if axes is None else {"axes": axes}
    model = one_node("CenterCropPad", {"x": x}, {"shape": np.array(target, np.int64)}, opset=18, **attrs)
    g = check(model, {"x": x}, rtol=0, atol=0)
    assert all(n.op in ("slice", "concat") for n in g.nodes)


def test_center_crop_pad_needs_a_size_per_axis() -> None:
    x = rand(4, 4)
    model = one_node("CenterCropPad", {"x": x}, {"shape": np.array([2], np.int64)}, opset=18)
    with pytest.raises(OnnxImportError, match="one size >= 0 per axis"):
        from_onnx(model)


@pytest.mark.parametrize(("shape", "attrs"), [((3, 5), {}), ((4, 4), {"k": -1, "dtype": 6}), ((2, 6), {"k": 3})])
def test_eye_like_is_a_constant_of_the_input_shape(shape: tuple[int, int], attrs: dict[str, int]) -> None:
    x = rand(*shape)
    model = one_node("EyeLike", {"x": x}, opset=9, **attrs)
    g = check(model, {"x": x}, rtol=0, atol=0)
    assert g.nodes == [] or all(n.op == "identity" for n in g.nodes)


def test_eye_like_of_a_vector_is_refused() -> None:
    model = one_node("EyeLike", {"x": rand(3)}, opset=9)
    with pytest.raises(OnnxImportError, match="2-D input"):
        from_onnx(model)


@pytest.mark.parametrize(("time_axis", "run_time"), [(0, False), (1, False), (0, True), (1, True)])
def test_reverse_sequence(time_axis: int, run_time: bool) -> None:
    x = rand(*((5, 3, 2) if time_axis == 0 else (3, 5, 2)))
    lens = np.array([5, 1, 3], np.int64)
    node = helper.make_node("ReverseSequence", ["x", "lens"], ["y"], time_axis=time_axis, batch_axis=1 - time_axis)
    feeds = {"x": x, "lens": lens} if run_time else {"x": x}
    model = make_model([node], feeds, ["y"], {} if run_time else {"lens": lens}, opset=10)
    g = check(model, feeds, rtol=0, atol=0)
    got = NumbaExecutable(g).run(feeds)[g.outputs[0].name]
    want = np.moveaxis(x, time_axis, 0).copy()
    for b, n in enumerate(lens):
        want[:n, b] = want[:n, b][::-1]
    np.testing.assert_array_equal(got, np.moveaxis(want, 0, time_axis))


def test_reverse_sequence_needs_one_length_per_row() -> None:
    model = one_node("ReverseSequence", {"x": rand(4, 3)}, {"lens": np.array([1, 2], np.int64)}, opset=10)
    with pytest.raises(OnnxImportError, match=r"must be \[3\]"):
        from_onnx(model)
