"""Every kernel's parallel twin against the reference (one graph per kernel family, forced parallel)."""

from __future__ import annotations

import threading

import numba
import numpy as np
import pytest
from tensorsmith.backends.numba.jit import num_threads
from tensorsmith.backends.numba.threads import start_pool
from tensorsmith.ir import Graph, GraphBuilder, f32, i32

from .numba_check import PARALLEL, SERIAL, check

RNG = np.random.default_rng(29)


def _u(*shape: int) -> np.ndarray:
    return RNG.uniform(-1, 1, shape).astype(np.float32)


def _elementwise_and_norms() -> tuple[Graph, dict[str, np.ndarray]]:
    b = GraphBuilder("par_ew")
    x = b.input("x", f32[3, 5, 7])
    y = b.input("y", f32[5, 1])
    h = b.gelu(b.add(x, y))
    h = b.mul(h, b.sub(x, np.float32(0.5)))
    s = b.softmax(h, axis=1)
    t = b.softmax(h, axis=-1)
    ln = b.layernorm(h, _u(7), _u(7))
    r1 = b.reduce_sum(h, axes=[1], keepdims=False)
    r2 = b.reduce_max(h, axes=[0, 2], keepdims=True)
    r3 = b.reduce_mean(h, axes=[2])
    tr = b.reshape(b.transpose(x, (0, 2, 1)), (3, 5, 7))  # a strided view copied before the reshape
    c = b.concat([h, tr], axis=2)
    q = b.dequantize(b.quantize(c, scale=0.01, zero_point=3))
    idx = b.input("idx", i32[4])
    g = b.gather(x, idx, axis=1)
    k = b.cast(b.clip(b.mul(x, np.float32(10)), min=-5, max=5), dtype="i32")
    b.output(s, t, ln, r1, r2, r3, q, g, k, b.neg(k))
    feeds = {"x": _u(3, 5, 7), "y": _u(5, 1), "idx": np.array([0, -1, 4, 2], np.int32)}
    return b.build(), feeds


def _dense() -> tuple[Graph, dict[str, np.ndarray]]:
    b = GraphBuilder("par_dense")
    x = b.input("x", f32[6, 9, 8])
    h = b.gelu(b.linear(x, _u(12, 8), _u(12)))
    h = b.relu(b.add(b.linear(h, _u(8, 12), _u(8)), x))
    q = b.transpose(b.reshape(h, (6, 9, 2, 4)), (0, 2, 1, 3))
    k = b.transpose(b.reshape(x, (6, 9, 2, 4)), (0, 2, 3, 1))
    s = b.mul(b.matmul(q, k), np.float32(0.5))
    o = b.transpose(b.matmul(b.softmax(s), q), (0, 2, 1, 3))
    m = b.matmul(b.reshape(o, (54, 8)), _u(8, 3))
    ints = b.matmul(b.cast(x, dtype="i32"), b.cast(b.transpose(x, (0, 2, 1)), dtype="i32"))
    b.output(m, ints)
    return b.build(), {"x": _u(6, 9, 8)}


def _conv_and_pool() -> tuple[Graph, dict[str, np.ndarray]]:
    b = GraphBuilder("par_conv")
    x = b.input("x", f32[2, 6, 11, 10])
    h = b.conv2d(x, _u(8, 6, 3, 3), _u(8), pads=1)
    h = b.relu(b.batchnorm(h, _u(8) + 2, _u(8), _u(8), np.abs(_u(8)) + 0.5))
    p1 = b.conv2d(x, _u(6, 6, 1, 1))
    d = b.conv2d(h, _u(8, 1, 3, 3), strides=(2, 2), pads=1, groups=8)
    g = b.conv2d(h, _u(8, 4, 3, 3), pads=1, groups=2)
    mp = b.maxpool2d(h, (3, 3), strides=(2, 2), pads=1)
    ap = b.avgpool2d(g, (2, 3), strides=(2, 1), ceil_mode=True)
    bn = b.batchnorm(d, _u(8), _u(8), _u(8), np.abs(_u(8)) + 0.5)
    b.output(p1, mp, ap, bn, b.global_avgpool(h), b.lrn(h, size=3))
    return b.build(), {"x": _u(2, 6, 11, 10)}


def test_elementwise_norm_reduce_and_data_kernels_in_parallel() -> None:
    g, feeds = _elementwise_and_norms()
    check(g, feeds, rtol=1e-5, atol=1e-5, thresholds=(PARALLEL, SERIAL))


def test_dense_kernels_in_parallel() -> None:
    g, feeds = _dense()
    check(g, feeds, rtol=1e-4, atol=1e-5, thresholds=(PARALLEL, SERIAL))


def test_conv_and_pool_kernels_in_parallel() -> None:
    g, feeds = _conv_and_pool()
    check(g, feeds, rtol=1e-4, atol=1e-5, thresholds=(PARALLEL, SERIAL))


def test_kernels_that_call_blas_need_more_work_to_go_parallel() -> None:
    from tensorsmith.backends.numba import DEFAULT_PARALLEL_THRESHOLD, blas
    from tensorsmith.backends.numba.plan import BLAS_WORK_FACTOR, LowerCtx

    b = GraphBuilder("g")
    b.output(b.relu(b.input("x", f32[4]), name="y"))
    ctx = LowerCtx(b.build(), DEFAULT_PARALLEL_THRESHOLD)
    if ctx.threads <= 1:
        pytest.skip("one thread: nothing runs in parallel")
    work = 2 * DEFAULT_PARALLEL_THRESHOLD
    assert ctx.parallel(work) and not ctx.parallel(work, needs_blas=True)
    assert ctx.parallel(BLAS_WORK_FACTOR * DEFAULT_PARALLEL_THRESHOLD, needs_blas=True) == blas.controlled()
    assert not ctx.parallel(DEFAULT_PARALLEL_THRESHOLD - 1)


def test_the_thread_count_read_follows_set_num_threads_per_thread() -> None:
    """`jit.num_threads` (read from the threading layer without its launch locks) agrees with
    `numba.get_num_threads` after a change in this thread, and another thread keeps its own count."""
    start_pool()
    saved = numba.get_num_threads()
    seen: list[tuple[int, int]] = []
    try:
        for n in range(1, numba.config.NUMBA_NUM_THREADS + 1):
            numba.set_num_threads(n)
            assert num_threads() == numba.get_num_threads() == n
        numba.set_num_threads(1)
        worker = threading.Thread(target=lambda: seen.append((num_threads(), numba.get_num_threads())))
        worker.start()
        worker.join()
        assert num_threads() == 1
    finally:
        numba.set_num_threads(saved)
    assert seen == [(numba.config.NUMBA_NUM_THREADS,) * 2]
