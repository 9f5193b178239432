"""qadd on the Numba backend: bit for bit the reference (both twins, u8 and s8, constant and run-time scales)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.backends.numba.k_integer import qadd
from tensorsmith.ir import Graph, GraphBuilder, f32, i8, i32, u8

RNG = np.random.default_rng(21)


def _graph(shape: tuple[int, ...], out_dtype: str) -> Graph:
    """Two qadds: one with constant scales, one with scales fed at run time."""
    b = GraphBuilder("qadd")
    x, y = b.input("a", u8[shape]), b.input("b", i8[shape])
    sa, za = b.input("sa", f32[1]), b.input("za", i32[1])
    cs, cz = b.const(np.array([0.0173], np.float32), "cs"), b.const(np.array([-7], np.int32), "cz")
    c = b.op("qadd", x, cs, b.const(np.array([121], np.int32), "za0"), y, cs, cz, name="c", dtype=out_dtype,
             out_scale=0.047, out_zero_point=-3 if out_dtype == "i8" else 131)
    r = b.op("qadd", x, sa, za, y, cs, cz, name="r", dtype=out_dtype, out_scale=0.02, out_zero_point=0)
    b.output(c, r)
    return b.build()


@pytest.mark.parametrize("shape", [(3, 50), (64, 4099), (0, 5)])
@pytest.mark.parametrize("out_dtype", ["u8", "i8"])
def test_qadd_equals_the_reference(shape: tuple[int, ...], out_dtype: str) -> None:
    g = _graph(shape, out_dtype)
    feeds = {"a": RNG.integers(0, 256, shape).astype(np.uint8), "b": RNG.integers(-128, 128, shape).astype(np.int8),
             "sa": np.array([0.031], np.float32), "za": np.array([97], np.int32)}
    want = reference.run(g, feeds)
    got = runtime.compile(g, backend="numba").run(feeds)
    for name in ("c", "r"):
        assert got[name].dtype == want[name].dtype == np.dtype(out_dtype.replace("i8", "int8").replace("u8", "uint8"))
        assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("parallel", [False, True])
def test_both_twins_round_like_numpy(parallel: bool) -> None:
    """Sums that land on halves round to even; NaN scales give the zero point; saturation at both ends."""
    n = 20000
    a = RNG.integers(0, 256, n).astype(np.uint8)
    b = RNG.integers(0, 256, n).astype(np.uint8)
    for sa, sb, so in ((0.5, 0.5, 1.0), (0.25, 0.75, 0.5), (0.01, 0.3, 0.07), (float("nan"), 0.5, 1.0)):
        out = np.empty(n, np.uint8)
        qadd.pick(parallel)(a, np.array([3], np.int32), np.array([sa], np.float32), b, np.array([250], np.int32),
                            np.array([sb], np.float32), so, 7, 0, 255, out)
        fa = (a.astype(np.int32) - 3).astype(np.float32) * np.float32(sa)
        fb = (b.astype(np.int32) - 250).astype(np.float32) * np.float32(sb)
        q = np.rint((fa + fb) / np.float32(so)) + np.float32(7)
        want = np.clip(np.where(np.isnan(q), np.float32(7), q), 0, 255).astype(np.uint8)
        assert_array_equal(out, want)


@pytest.mark.parametrize("fuse", [True, False])
def test_unfolded_dequantize_add_quantize_equals_the_reference(fuse: bool) -> None:
    """The QDQ form that qadd replaces: quantize divides truly (no reciprocal), so both forms give the same bytes."""
    b = GraphBuilder("qdq")
    x, y = b.input("a", u8[128, 768]), b.input("b", i8[128, 768])
    s = b.add(b.dequantize(x, 0.031, 121), b.dequantize(y, 0.0173, -7))
    b.output(b.quantize(s, 0.047, 130, dtype="u8", name="q"), b.quantize(s, [0.03] * 768, [3] * 768, axis=1,
                                                                          dtype="i8", name="qc"))
    g = b.build()
    feeds = {"a": RNG.integers(0, 256, (128, 768)).astype(np.uint8),
             "b": RNG.integers(-128, 128, (128, 768)).astype(np.int8)}
    want = reference.run(g, feeds)
    got = runtime.compile(g, backend="numba", fuse=fuse).run(feeds)
    for name in ("q", "qc"):
        assert_array_equal(got[name], want[name])
