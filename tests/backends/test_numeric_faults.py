"""NaN and infinities through every op family: the Numba backend gives NaN where the reference does, the same
infinities, and the reference's finite values elsewhere (docs/reliability.md, "float64 and numeric faults")."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from tensorsmith.backends import reference
from tensorsmith.ir import Graph, GraphBuilder, Value, f32
from tensorsmith.ir.regions import make_region
from tensorsmith.runtime.numba_exec import NumbaExecutable

from .numba_check import PARALLEL, SERIAL

RNG = np.random.default_rng(7)
FAULTS = (np.nan, np.inf, -np.inf)
RTOL, ATOL = 1e-4, 1e-5
"""Finite values: float reassociation in the kernels' sums and products."""

Build = Callable[[GraphBuilder, Value], Value]


def faulty(shape: tuple[int, ...], where: str) -> np.ndarray:
    """Random data with NaN, +inf and -inf at fixed places: `where` is "spread" (scattered), "row"
    (one fault per leading row, so reductions over the last axis meet each kind), or "none"."""
    x = RNG.standard_normal(shape).astype(np.float32)
    flat = x.reshape(shape[0], -1)
    if where == "spread":
        idx = RNG.choice(x.size, size=min(x.size, 9), replace=False)
        x.reshape(-1)[idx] = np.array(FAULTS * 3, np.float32)[: idx.size]
    elif where == "row":
        for r in range(flat.shape[0]):
            flat[r, (r * 5) % flat.shape[1]] = FAULTS[r % 3] if r % 4 != 3 else flat[r, 0]
    return x


def assert_same_faults(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    """NaN exactly where the reference has NaN, the same infinities, finite values close."""
    assert got.shape == ref.shape and got.dtype == ref.dtype, what
    if ref.dtype.kind != "f":
        assert_array_equal(got, ref, err_msg=what)
        return
    assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{what}: NaN positions")
    assert_array_equal(np.isposinf(got), np.isposinf(ref), err_msg=f"{what}: +inf positions")
    assert_array_equal(np.isneginf(got), np.isneginf(ref), err_msg=f"{what}: -inf positions")
    fin = np.isfinite(ref)
    assert_allclose(got[fin], ref[fin], rtol=RTOL, atol=ATOL, err_msg=f"{what}: finite values")


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _one(build: Build, shape: tuple[int, ...]) -> Callable[[], Graph]:
    def make() -> Graph:
        b = GraphBuilder("faults")
        b.output(build(b, b.input("x", f32[shape])))
        return b.build()
    return make


def _region(build: Build, shape: tuple[int, ...], first: int = 0) -> Callable[[], Graph]:
    """The graph of `build` with its equations from `first` on made one fused region."""
    def make() -> Graph:
        g = _one(build, shape)()
        make_region(g, list(g.nodes[first:]))
        return g
    return make


def _attention(b: GraphBuilder, x: Value) -> Value:
    """Self-attention whose mask is -inf on some keys and on every key of query row 2 (a fully masked row)."""
    mask = np.zeros((6, 6), np.float32)
    mask[:, 4] = -np.inf
    mask[2, :] = -np.inf
    return b.attention(x, b.const(_w(2, 6, 16), "k"), b.const(_w(2, 6, 16), "v"), b.const(mask, "mask"), heads=2)


def _dynamic_qlinear(out: str) -> Build:
    """quantize-dynamic then qlinear, whose bias holds NaN and infinities (a requantized or f32 output)."""
    def build(b: GraphBuilder, x: Value) -> Value:
        q, s, z = b.op_multi("quantize-dynamic", x, granularity="row")
        w = b.const(RNG.integers(-128, 128, (12, 16), dtype=np.int8), "w")
        bias = _w(12)
        bias[[1, 5, 9]] = FAULTS
        attrs = {} if out == "f32" else {"out_scale": [0.05], "out_zero_point": [100]}
        return b.op("qlinear", q, s, z, w, b.const(np.full(12, 0.01, np.float32), "ws"), b.const(bias, "bias"),
                    dtype=out, **attrs)
    return build


NCHW = (2, 3, 6, 6)
ROWS = (8, 16)
CASES: dict[str, tuple[str, Callable[[], Graph], tuple[int, ...], str]] = {
    # name: (family, graph, input shape, where the faults go)
    "add": ("elementwise", _one(lambda b, x: b.add(x, b.const(_w(16), "c")), ROWS), ROWS, "spread"),
    "mul-inf-times-zero": ("elementwise", _one(lambda b, x: b.mul(x, b.const(np.zeros(16, np.float32))), ROWS),
                           ROWS, "spread"),
    "div": ("elementwise", _one(lambda b, x: b.div(b.const(_w(16), "c"), x), ROWS), ROWS, "spread"),
    "maximum": ("elementwise", _one(lambda b, x: b.maximum(x, b.const(_w(16), "c")), ROWS), ROWS, "spread"),
    "minimum": ("elementwise", _one(lambda b, x: b.minimum(b.const(_w(16), "c"), x), ROWS), ROWS, "spread"),
    "relu": ("elementwise", _one(lambda b, x: b.relu(x), ROWS), ROWS, "spread"),
    "clip": ("elementwise", _one(lambda b, x: b.clip(x, min=-0.5, max=0.5), ROWS), ROWS, "spread"),
    "sigmoid": ("elementwise", _one(lambda b, x: b.sigmoid(x), ROWS), ROWS, "spread"),
    "tanh": ("elementwise", _one(lambda b, x: b.tanh(x), ROWS), ROWS, "spread"),
    "gelu": ("elementwise", _one(lambda b, x: b.gelu(x), ROWS), ROWS, "spread"),
    "gelu-tanh": ("elementwise", _one(lambda b, x: b.gelu(x, approximate="tanh"), ROWS), ROWS, "spread"),
    "exp": ("elementwise", _one(lambda b, x: b.exp(x), ROWS), ROWS, "spread"),
    "log-sqrt": ("elementwise", _one(lambda b, x: b.log(b.sqrt(x)), ROWS), ROWS, "spread"),
    "erf": ("elementwise", _one(lambda b, x: b.erf(x), ROWS), ROWS, "spread"),
    "cast-f16": ("elementwise", _one(lambda b, x: b.op("cast", x, dtype="f16"), ROWS), ROWS, "spread"),
    "linear": ("matmul", _one(lambda b, x: b.linear(x, _w(24, 16), _w(24)), ROWS), ROWS, "row"),
    "linear-zero-weight": ("matmul", _one(lambda b, x: b.linear(x, np.zeros((24, 16), np.float32)), ROWS),
                           ROWS, "row"),
    "matmul": ("matmul", _one(lambda b, x: b.matmul(x, b.const(_w(16, 20), "w")), ROWS), ROWS, "row"),
    "conv2d": ("matmul", _one(lambda b, x: b.conv2d(x, _w(4, 3, 3, 3), _w(4), pads=[1, 1, 1, 1]), NCHW),
               NCHW, "spread"),
    "linear-large": ("matmul", _one(lambda b, x: b.linear(x, _w(50, 70), _w(50)), (33, 70)), (33, 70), "row"),
    "matmul-batched": ("matmul", _one(lambda b, x: b.matmul(x, b.const(_w(2, 16, 12), "w")), (2, 8, 16)),
                       (2, 8, 16), "row"),
    "reduce-sum": ("reduction", _one(lambda b, x: b.op("reduce-sum", x, axes=[1], keepdims=False), ROWS),
                   ROWS, "row"),
    "reduce-mean": ("reduction", _one(lambda b, x: b.op("reduce-mean", x, axes=[0], keepdims=True), ROWS),
                    ROWS, "row"),
    "reduce-max": ("reduction", _one(lambda b, x: b.op("reduce-max", x, axes=[1], keepdims=True), ROWS),
                   ROWS, "row"),
    "softmax": ("normalization", _one(lambda b, x: b.softmax(x, axis=-1), ROWS), ROWS, "row"),
    "layernorm": ("normalization", _one(lambda b, x: b.layernorm(x, _w(16), _w(16), axis=-1), ROWS), ROWS, "row"),
    "attention-masked": ("normalization", _one(_attention, (2, 6, 16)), (2, 6, 16), "row"),
    "batchnorm": ("normalization", _one(lambda b, x: b.batchnorm(x, _w(3), _w(3), _w(3), np.abs(_w(3)) + 0.5), NCHW),
                  NCHW, "spread"),
    "maxpool": ("pooling", _one(lambda b, x: b.maxpool2d(x, [2, 2]), NCHW), NCHW, "spread"),
    "avgpool": ("pooling", _one(lambda b, x: b.avgpool2d(x, [3, 3], pads=[1, 1, 1, 1]), NCHW), NCHW, "spread"),
    "global-avgpool": ("pooling", _one(lambda b, x: b.op("global-avgpool", x), NCHW), NCHW, "spread"),
    "region-linear-relu": ("fused", _region(lambda b, x: b.relu(b.add(b.linear(x, _w(24, 16)), b.const(_w(24)))),
                                            ROWS), ROWS, "row"),
    "region-linear-clip": ("fused", _region(lambda b, x: b.clip(b.linear(x, _w(24, 16), _w(24)), min=0.0, max=1.0),
                                            ROWS), ROWS, "row"),
    "region-conv-relu": ("fused", _region(lambda b, x: b.relu(b.conv2d(x, _w(4, 3, 3, 3), _w(4))), NCHW),
                         NCHW, "spread"),
    "region-elementwise": ("fused", _region(lambda b, x: b.minimum(b.maximum(b.mul(x, b.const(_w(16))),
                                                                             b.const(_w(16))), b.const(_w(16))),
                                            ROWS), ROWS, "spread"),
    "quantize": ("integer", _one(lambda b, x: b.quantize(x, 0.05, 3, dtype="i8"), ROWS), ROWS, "spread"),
    "quantize-u8": ("integer", _one(lambda b, x: b.quantize(x, 0.05, 128, dtype="u8"), ROWS), ROWS, "spread"),
    "quantize-dynamic": ("integer", _one(lambda b, x: b.op_multi("quantize-dynamic", x, granularity="row")[0],
                                         ROWS), ROWS, "row"),
    "qlinear-f32": ("integer", _one(_dynamic_qlinear("f32"), ROWS), ROWS, "row"),
    "qlinear-requantized": ("integer", _one(_dynamic_qlinear("u8"), ROWS), ROWS, "row"),
}


@pytest.mark.parametrize("threshold", [SERIAL, PARALLEL], ids=["serial", "parallel"])
@pytest.mark.parametrize("case", CASES, ids=[f"{CASES[c][0]}-{c}" for c in CASES])
def test_numba_follows_reference_on_nan_and_inf(case: str, threshold: int) -> None:
    family, make, shape, where = CASES[case]
    g = make()
    feeds = {"x": faulty(shape, where)}
    with np.errstate(all="ignore"):
        ref = reference.run(g, feeds)
        got = NumbaExecutable(g, parallel_threshold=threshold).run(feeds)
    for k in ref:
        assert_same_faults(got[k], ref[k], f"{family}/{case} %{k}")


def test_faulty_inputs_hold_every_fault() -> None:
    for where in ("spread", "row"):
        x = faulty(ROWS, where)
        assert np.isnan(x).any() and np.isposinf(x).any() and np.isneginf(x).any()
