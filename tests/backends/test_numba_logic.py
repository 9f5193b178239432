"""Comparisons, logical ops and where (ir/ops/logic.py), the rounding / sign / trigonometric maps, argmax /
argmin, cumsum, the gathers and scatters, mod and topk on the reference and Numba backends, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.ir import BuildError, GraphBuilder, f16, f32, i32, i64, u8

from .numba_check import SERIAL

RNG = np.random.default_rng(5)
COMPARISONS = ("equal", "less", "less-equal", "greater", "greater-equal")
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -1.5, 3.0], np.float32)


def _check(g, feeds, kernels: str = "region_") -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    ref = reference.run(g, feeds)
    for threshold in (SERIAL, 0):
        for fuse in (True, False):
            exe = runtime.compile(g, backend="numba", fuse=fuse, parallel_threshold=threshold)
            assert any(p.kernel.startswith(kernels) for p in exe.profile(feeds).nodes)
            got = exe.run(feeds)
            for name, want in ref.items():
                assert got[name].dtype == want.dtype, name
                assert_array_equal(got[name], want, err_msg=f"{name} (fuse={fuse}, threshold {threshold})")
    return ref


def test_float_comparisons_follow_ieee_nan_infinities_and_signed_zeros() -> None:
    b = GraphBuilder("cmp")
    x, y = b.input("x", f32[8, 1]), b.input("y", f32[1, 8])
    b.output(*(b.op(op, x, y, name=op.replace("-", "_")) for op in COMPARISONS))
    ref = _check(b.build(), {"x": SPECIAL.reshape(8, 1), "y": SPECIAL.reshape(1, 8)})
    assert not ref["equal"][0].any() and not ref["less"][0].any()  # NaN compares false with everything
    assert ref["equal"][3, 4] and not ref["less"][3, 4]  # 0.0 == -0.0
    assert ref["greater"][1, 2] and ref["less_equal"][2, 2]


@pytest.mark.parametrize("dtype", [i64, i32, u8])
def test_integer_comparisons_and_where(dtype) -> None:  # type: ignore[no-untyped-def]
    npt = dtype.np_dtype
    b = GraphBuilder("icmp")
    x, y = b.input("x", dtype[6, 7]), b.input("y", dtype[7])
    outs = [b.op(op, x, y) for op in COMPARISONS]
    b.output(*outs, b.op("where", outs[1], x, y, name="smaller"))
    x_in = RNG.integers(0, 5, (6, 7)).astype(npt)
    y_in = RNG.integers(0, 5, 7).astype(npt)
    ref = _check(b.build(), {"x": x_in, "y": y_in})
    assert_array_equal(ref["smaller"], np.minimum(x_in, y_in))


def test_logical_ops_and_a_three_way_broadcast_where() -> None:
    b = GraphBuilder("logic")
    p, q = b.input("p", f32[5, 1]), b.input("q", f32[1, 6])
    a, c = b.op("greater", p, np.float32(0.0)), b.op("less", q, np.float32(0.5))
    both = b.op("logical-and", a, c)
    either = b.op("logical-or", a, c)
    one = b.op("logical-xor", a, c)
    b.output(both, either, one, b.op("logical-not", one, name="same"),
             b.op("where", both, p, np.float32(-7.0), name="picked"),
             b.op("where", a, either, one, name="bools"))
    feeds = {"p": RNG.standard_normal((5, 1)).astype(np.float32), "q": RNG.standard_normal((1, 6)).astype(np.float32)}
    ref = _check(b.build(), feeds)
    want_a, want_c = feeds["p"] > 0, feeds["q"] < 0.5
    assert_array_equal(ref["same"], want_a == want_c)
    assert_array_equal(ref["picked"], np.where(want_a & want_c, feeds["p"], np.float32(-7.0)))
    assert ref["bools"].dtype == np.bool_


def test_an_attention_mask_built_at_run_time() -> None:
    """scores where the int64 mask is 1, a large negative value elsewhere, then softmax (as exported models do)."""
    b = GraphBuilder("mask")
    s, m = b.input("scores", f32[2, 3, 5, 5]), b.input("mask", i64[2, 1, 1, 5])
    keep = b.op("logical-not", b.op("equal", m, np.int64(0)))
    b.output(b.softmax(b.op("where", keep, s, np.float32(-3.4e38)), axis=-1, name="p"))
    mask = np.array([1, 1, 1, 0, 0] * 2, np.int64).reshape(2, 1, 1, 5)
    feeds = {"scores": RNG.standard_normal((2, 3, 5, 5)).astype(np.float32), "mask": mask}
    ref = reference.run(b.build(), feeds)
    got = runtime.compile(b.build(), backend="numba").run(feeds)
    np.testing.assert_allclose(got["p"], ref["p"], rtol=1e-6, atol=1e-7)
    assert not ref["p"][..., 3:].any()


def test_operands_are_checked_by_name() -> None:
    b = GraphBuilder("bad")
    x, n = b.input("x", f32[3]), b.input("n", i32[3])
    with pytest.raises(BuildError, match="logical-and: operands must be bool"):
        b.op("logical-and", x, x)
    with pytest.raises(BuildError, match="where: operands must be bool"):
        b.op("where", x, x, x)
    with pytest.raises(BuildError, match="less: inputs have different dtypes"):
        b.op("less", x, n)
    with pytest.raises(BuildError, match="do not broadcast"):
        b.op("greater", x, b.input("y", f32[4]))


def test_half_precision_comparisons_run_their_reference_rule_on_numba() -> None:
    b = GraphBuilder("half")
    x = b.input("x", f16[4])
    b.output(b.op("less", x, np.float16(1.0)))
    g = b.build()
    exe = runtime.compile(g, backend="numba")
    assert [s.kernel for s in exe.plan.steps] == ["reference_less"]
    feeds = {"x": np.array([0.5, 1.0, np.nan, -np.inf], np.float16)}
    np.testing.assert_array_equal(exe.run(feeds)[g.outputs[0].name], [True, False, False, True])


MAPS = ("floor", "ceil", "round", "sign", "sin", "cos")
MAP_INPUTS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, 1.5, 2.5, -2.5, -0.7, 3.3, 1e8], np.float32)


def test_circular_and_hyperbolic_functions_match_the_reference() -> None:
    """tan / asin / acos / atan / sinh / cosh / asinh / acosh / atanh on special values, in and out of their domains
    (NaN), at their poles and past float32's range (infinities): alone and in fused chains, serial (the generated
    kernels' parallel twins are the same source, tested on the maps below)."""
    b = GraphBuilder("trig")
    x = b.input("x", f32[12])
    outs = [b.op(op, x, name=op) for op in ("tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh")]
    chains = [b.op("atan", b.op("tan", x), name="atan_tan"), b.op("asinh", b.op("sinh", x), name="asinh_sinh"),
              b.op("atanh", b.op("asin", b.op("acosh", b.op("cosh", x))), name="atanh_asin_acosh_cosh")]
    b.output(*outs, *chains)
    g, feeds = b.build(), {"x": MAP_INPUTS}
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        ref = reference.run(g, feeds)
    for fuse in (True, False):
        got = runtime.compile(g, backend="numba", fuse=fuse, parallel_threshold=SERIAL).run(feeds)
        for name, want in ref.items():
            assert_array_equal(got[name], want, err_msg=f"{name} (fuse={fuse})")
    assert np.isnan(ref["asin"][6]) and ref["cosh"][11] == np.inf and ref["atanh"][3] == 0.0


def test_rounding_sign_and_trigonometric_maps_match_the_reference() -> None:
    """floor / ceil / round (halves to even) / sign / sin / cos on special values, alone and fused."""
    b = GraphBuilder("maps")
    x, n = b.input("x", f32[12]), b.input("n", i64[5])
    outs = [b.op(op, x, name=op) for op in MAPS]
    b.output(*outs, b.op("sign", n, name="isign"), b.op("round", b.mul(x, np.float32(2.0)), name="twice"))
    with np.errstate(invalid="ignore"):
        ref = _check(b.build(), {"x": MAP_INPUTS, "n": np.array([-3, 0, 5, -1, 2], np.int64)})
    assert ref["round"][5:9].tolist() == [0.0, 2.0, 2.0, -2.0]  # halves to even
    assert ref["sign"][3:5].tolist() == [0.0, 0.0] and not np.signbit(ref["sign"][4])
    assert ref["isign"].tolist() == [-1, 0, 1, -1, 1]


@pytest.mark.parametrize("op", ["argmax", "argmin"])
def test_arg_extremes_with_ties_and_nan(op: str) -> None:
    b = GraphBuilder("arg")
    x, n = b.input("x", f32[3, 5, 4]), b.input("n", i64[6, 3])
    outs = [b.op(op, x, axis=ax, keepdims=kd, select_last_index=last, name=f"x{ax + 1}{int(kd)}{int(last)}")
            for ax in (0, 1, -1) for kd in (True, False) for last in (False, True)]
    b.output(*outs, b.op(op, n, axis=1, name="n1"), b.op(op, n, axis=0, select_last_index=True, name="n0"))
    x_in = np.round(RNG.standard_normal((3, 5, 4)) * 2).astype(np.float32)  # many ties
    x_in[0, 2, 1] = x_in[1, :, 2] = x_in[2, 1, :] = np.nan
    feeds = {"x": x_in, "n": RNG.integers(0, 3, (6, 3))}
    ref = reference.run(b.build(), feeds)
    for threshold in (SERIAL, 0):
        got = runtime.compile(b.build(), backend="numba", parallel_threshold=threshold).run(feeds)
        for name, want in ref.items():
            assert got[name].dtype == np.int64 and got[name].shape == want.shape
            assert_array_equal(got[name], want, err_msg=f"{name}, threshold {threshold}")


def test_cumsum_in_order_with_nan_infinities_and_wrapping_integers() -> None:
    b = GraphBuilder("cumsum")
    x, n = b.input("x", f32[3, 5, 4]), b.input("n", i32[4, 6])
    outs = [b.op("cumsum", x, axis=ax, exclusive=e, reverse=r, name=f"x{ax + 1}{int(e)}{int(r)}")
            for ax in (0, 1, -1) for e in (False, True) for r in (False, True)]
    b.output(*outs, b.op("cumsum", n, axis=1, name="n1"), b.op("cumsum", n, axis=0, reverse=True, name="n0"))
    x_in = RNG.standard_normal((3, 5, 4)).astype(np.float32)
    x_in[1, 2, 3], x_in[0, 0, 0] = np.inf, np.nan
    feeds = {"x": x_in, "n": RNG.integers(2**30, 2**31 - 1, (4, 6)).astype(np.int32)}  # sums wrap
    with np.errstate(invalid="ignore"):
        ref = reference.run(b.build(), feeds)
    for threshold in (SERIAL, 0):
        got = runtime.compile(b.build(), backend="numba", parallel_threshold=threshold).run(feeds)
        for name, want in ref.items():
            assert_array_equal(got[name], want, err_msg=f"{name}, threshold {threshold}")


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements_with_negative_indices_and_a_named_bad_one(axis: int) -> None:
    shape = (3, 4, 5)
    ishape = tuple(2 if a == axis % 3 else d for a, d in enumerate(shape))
    b = GraphBuilder("ge")
    x, i = b.input("x", f32[shape]), b.input("i", i64[ishape])
    b.output(b.op("gather-elements", x, i, axis=axis, name="y"))
    n = shape[axis]
    feeds = {"x": RNG.standard_normal(shape).astype(np.float32), "i": RNG.integers(-n, n, ishape)}
    want = reference.run(b.build(), feeds)["y"]
    for threshold in (SERIAL, 0):
        exe = runtime.compile(b.build(), backend="numba", parallel_threshold=threshold)
        assert_array_equal(exe.run(feeds)["y"], want)
        bad = dict(feeds, i=np.full(ishape, n, np.int64))
        with pytest.raises(Exception, match=f"gather-elements %y: index {n} is out of range"):
            exe.run(bad)


def test_mod_and_fmod_on_integers_and_floats() -> None:
    b = GraphBuilder("mod")
    x, y, n, d = b.input("x", f32[8]), b.input("y", f32[8]), b.input("n", i64[6]), b.input("d", i64[6])
    u, v = b.input("u", u8[4]), b.input("v", u8[4])
    b.output(b.op("mod", x, y, name="fm0"), b.op("mod", x, y, fmod=True, name="fm1"), b.op("mod", n, d, name="im0"),
             b.op("mod", n, d, fmod=True, name="im1"), b.op("mod", u, v, name="um"))
    feeds = {"x": np.array([5.5, -5.5, 5.5, -5.5, 0.0, np.inf, 3.0, np.nan], np.float32),
             "y": np.array([2.0, 2.0, -2.0, -2.0, 3.0, 2.0, 0.0, 1.0], np.float32),
             "n": np.array([7, -7, 7, -7, 5, 3], np.int64), "d": np.array([3, 3, -3, -3, 0, 5], np.int64),
             "u": np.array([7, 200, 5, 0], np.uint8), "v": np.array([3, 7, 0, 2], np.uint8)}
    ref = _check(b.build(), feeds)
    assert ref["im1"].tolist() == [1, -1, 1, -1, 0, 3] and ref["um"].tolist() == [1, 4, 0, 0]


@pytest.mark.parametrize("largest", [True, False])
def test_topk_with_ties_and_nan(largest: bool) -> None:
    b = GraphBuilder("topk")
    x, n = b.input("x", f32[3, 7, 4]), b.input("n", i64[5, 6])
    outs = [v for ax in (0, 1, -1) for v in b.op_multi("topk", x, k=2, axis=ax, largest=largest)]
    b.output(*outs, *b.op_multi("topk", n, k=6, axis=1, largest=largest))
    x_in = np.round(RNG.standard_normal((3, 7, 4)) * 2).astype(np.float32)  # ties
    x_in[0, 1, 2] = np.nan
    x_in[2, :, 1] = np.nan
    feeds = {"x": x_in, "n": RNG.integers(-3, 3, (5, 6))}
    ref = reference.run(b.build(), feeds)
    for threshold in (SERIAL, 0):
        got = runtime.compile(b.build(), backend="numba", parallel_threshold=threshold).run(feeds)
        for name, want in ref.items():
            assert got[name].dtype == want.dtype
            assert_array_equal(got[name], want, err_msg=f"{name}, threshold {threshold}")


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements_with_duplicates_nan_and_a_named_bad_index(reduction: str) -> None:
    for axis in (0, 1, -1):
        b = GraphBuilder("scatter")
        ishape = tuple(6 if k == axis % 3 else n for k, n in enumerate((3, 4, 5)))  # more updates than places
        d, i, u = b.input("d", f32[3, 4, 5]), b.input("i", i64[ishape]), b.input("u", f32[ishape])
        b.output(b.op("scatter-elements", d, i, u, axis=axis, reduction=reduction, name="y"))
        n = (3, 4, 5)[axis]
        feeds = {"d": RNG.standard_normal((3, 4, 5)).astype(np.float32), "i": RNG.integers(-n, n, ishape),
                 "u": RNG.standard_normal(ishape).astype(np.float32)}
        feeds["d"][0, 0, 0] = np.nan
        want = reference.run(b.build(), feeds)["y"]
        exe = runtime.compile(b.build(), backend="numba")
        assert_array_equal(exe.run(feeds)["y"], want, err_msg=f"axis {axis}")
        with pytest.raises(Exception, match=f"scatter-elements %y: index {n} is out of range"):
            exe.run(dict(feeds, i=np.full(ishape, n, np.int64)))


@pytest.mark.parametrize("reduction", ["none", "add", "max"])
def test_nd_gathers_and_scatters_with_batches_duplicates_and_a_named_bad_index(reduction: str) -> None:
    b = GraphBuilder("nd")
    d, i, j, u = (b.input("d", f32[2, 3, 4, 5]), b.input("i", i64[2, 6, 2]), b.input("j", i64[7, 2]),
                  b.input("u", f32[7, 4, 5]))
    b.output(b.op("gather-nd", d, i, batch_dims=1, name="g"), b.op("gather-nd", d, j, name="g0"),
             b.op("scatter-nd", d, j, u, reduction=reduction, name="s"))
    feeds = {"d": RNG.standard_normal((2, 3, 4, 5)).astype(np.float32),
             "i": np.stack([RNG.integers(-3, 3, (2, 6)), RNG.integers(-4, 4, (2, 6))], axis=-1),
             "j": np.stack([RNG.integers(-2, 2, 7), RNG.integers(-3, 3, 7)], axis=-1),  # duplicates among 6 places
             "u": RNG.standard_normal((7, 4, 5)).astype(np.float32)}
    ref = reference.run(b.build(), feeds)
    for threshold in (SERIAL, 0):
        exe = runtime.compile(b.build(), backend="numba", parallel_threshold=threshold)
        got = exe.run(feeds)
        for name, want in ref.items():
            assert_array_equal(got[name], want, err_msg=f"{name}, threshold {threshold}")
    bad = dict(feeds, j=np.array([[0, 0]] * 6 + [[0, 3]], np.int64))
    with pytest.raises(Exception, match=r"gather-nd %g0: index 3 is out of range \[-3, 3\) for indexed axis 1"):
        exe.run(bad)
