"""Cache-line aligned arrays: the helpers, the Numba plan's constants and packed weights."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith import runtime
from tensorsmith.backends.aligned import aligned_copy, aligned_empty, is_aligned
from tensorsmith.backends.arena import ALIGNMENT
from tensorsmith.backends.numba import int8_gemm as ig
from tensorsmith.backends.numba.cpu_features import int8_paths
from tensorsmith.ir import GraphBuilder, f32
from tensorsmith.passes import run_pipeline


@pytest.mark.parametrize("shape", [(), (1,), (3, 5), (2, 3, 7), (0, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.float64, np.int32])
def test_aligned_empty_starts_on_a_cache_line(shape: tuple[int, ...], dtype: type) -> None:
    a = aligned_empty(shape, dtype)
    assert a.shape == shape and a.dtype == np.dtype(dtype) and a.flags.c_contiguous and a.flags.writeable
    if a.size:
        assert a.ctypes.data % ALIGNMENT == 0


def test_aligned_copy_keeps_an_aligned_array_and_copies_the_others() -> None:
    a = aligned_empty((4, 6), np.float32)
    a[...] = np.arange(24, dtype=np.float32).reshape(4, 6)
    assert aligned_copy(a) is a
    off = a.reshape(-1)[1:]  # 4 bytes past a cache line
    assert not is_aligned(off)
    c = aligned_copy(off)
    assert is_aligned(c) and c is not off and np.array_equal(c, off)
    t = aligned_copy(a.T)  # not C-contiguous: a C-contiguous aligned copy
    assert t.flags.c_contiguous and is_aligned(t) and np.array_equal(t, a.T)


def _linear_graph(m: int, k: int, n: int) -> tuple[object, np.ndarray]:
    rng = np.random.default_rng(3)
    b = GraphBuilder("aligned")
    x = b.input("x", f32[m, k])
    w = rng.standard_normal((n, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    b.output(b.relu(b.linear(x, b.const(w, "w"), b.const(bias, "b"), name="fc"), name="act"))
    return b.build(), rng.standard_normal((m, k)).astype(np.float32)


@pytest.mark.parametrize("pipeline", ["", "quantize{scheme=dynamic}"])
def test_every_constant_of_a_plan_is_aligned(pipeline: str) -> None:
    g, x = _linear_graph(24, 96, 72)
    g = run_pipeline(g, pipeline) if pipeline else g
    exe = runtime.compile(g, backend="numba")
    consts = [s for s in exe.plan.slots if s.kind == "const" and s.array.size]
    assert consts
    for s in consts:
        assert s.array.ctypes.data % ALIGNMENT == 0, f"constant {s.name} is not {ALIGNMENT}-byte aligned"
    ref = runtime.compile(g, backend="reference").run({"x": x})
    got = exe.run({"x": x})
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-4)


def test_packed_int8_weights_are_aligned() -> None:
    w = np.random.default_rng(0).integers(-64, 64, size=(40, 70), dtype=np.int8)  # every path's range
    for path in int8_paths():
        assert is_aligned(ig.pack_int8_weights(w, np.ones(40, np.float32), path).data), path
