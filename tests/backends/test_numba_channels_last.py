"""Int8 convolutions that hand their results to each other channels last (backends/numba/channels_last.py):
the layout changes between them are left out, and the results stay those of the reference backend bit for bit."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.backends.numba.cpu_features import best_int8_path
from tensorsmith.ir import Graph, GraphBuilder, f32

from .numba_check import SERIAL

pytestmark = pytest.mark.skipif(best_int8_path() is None, reason="this host executes no int8 path")
RNG = np.random.default_rng(5)
BITS = 8 if best_int8_path() in ("amx", "avx512vnni", "avxvnni") else 7


def _qconv(b: GraphBuilder, x, co: int, k: int, name: str, **attrs):  # type: ignore[no-untyped-def]
    """A dynamically quantized qconv2d of x (f32 NCHW) with a bias, k x k, 'same' padding."""
    q, s, z = b.op_multi("quantize-dynamic", x)
    hi = 127 if BITS == 8 else 63
    w = RNG.integers(-hi - 1, hi + 1, (co, x.type.shape[1], k, k)).astype(np.int8)
    ws = (RNG.uniform(0.5, 1.0, co) / 200).astype(np.float32)
    return b.op("qconv2d", q, s, z, w, ws, RNG.standard_normal(co).astype(np.float32), pads=(k // 2,) * 4,
                weight_bits=BITS, name=name, **attrs)


def _bottleneck(mid: int) -> Graph:
    """1x1 -> ReLU -> 1x1 -> ReLU -> 3x3 -> ReLU -> 1x1 + residual -> ReLU, every convolution int8 with dynamic
    activations; the second 1x1 reads `mid` channels."""
    b = GraphBuilder("bottleneck")
    x = b.input("x", f32[2, 8, 6, 5])
    a = b.relu(_qconv(b, x, mid, 1, "a"), name="ra")
    e = b.relu(_qconv(b, a, 8, 1, "e"), name="re")
    c = b.relu(_qconv(b, e, 8, 3, "c"), name="rc")
    d = b.relu(b.add(_qconv(b, c, 8, 1, "d"), c, name="res"), name="rd")
    b.output(d)
    return b.build()


def _kernels(exe, feeds) -> Counter[str]:  # type: ignore[no-untyped-def]
    return Counter(p.kernel.split("+")[0].split("[")[0] for p in exe.profile(feeds).nodes)


@pytest.mark.parametrize("mid", [12, 6])
def test_a_bottleneck_stays_channels_last_between_its_convolutions(mid: int) -> None:
    """Fused: only the first input is transposed to NHWC and only the last result back to NCHW; the residual is added
    channels last in the GEMM; 6 channels (not a multiple of 4) take a padded copy, 12 are read in place."""
    g = _bottleneck(mid)
    feeds = {"x": RNG.standard_normal((2, 8, 6, 5)).astype(np.float32) * 2}
    want = reference.run(g, feeds)["rd"]
    for threshold in (SERIAL, 0):
        exe = runtime.compile(g, backend="numba", parallel_threshold=threshold)
        assert_array_equal(exe.run(feeds)["rd"], want)
        kernels = _kernels(exe, feeds)
        assert kernels["padded_nhwc_u8"] == 1 and kernels["pixels_to_nchw"] == 1, kernels
        assert kernels["pad_nhwc_u8"] == (2 if mid == 6 else 1), kernels  # the 3x3's padding; 6 channels padded
        assert not kernels["copy_strided"], kernels
        labels = [p.kernel for p in exe.profile(feeds).nodes]
        assert any(k.startswith("qconv2d_") and "+residual+relu" in k for k in labels), labels
    unfused = runtime.compile(g, backend="numba", fuse=False)
    assert_array_equal(unfused.run(feeds)["rd"], want)
    assert _kernels(unfused, feeds)["pixels_to_nchw"] == 4  # each ReLU reads NCHW


def test_a_result_with_another_reader_is_written_nchw() -> None:
    """A convolution's result that is also a graph output (or read by anything but the int8 convolutions) is
    transposed to NCHW as before."""
    b = GraphBuilder("two_readers")
    x = b.input("x", f32[1, 8, 5, 5])
    a = b.relu(_qconv(b, x, 8, 1, "a"), name="ra")
    b.output(a, _qconv(b, a, 4, 3, "c"))
    g = b.build()
    feeds = {"x": RNG.standard_normal((1, 8, 5, 5)).astype(np.float32)}
    exe = runtime.compile(g, backend="numba")
    want = reference.run(g, feeds)
    for name, got in exe.run(feeds).items():
        assert_array_equal(got, want[name])
    kernels = _kernels(exe, feeds)
    assert kernels["pixels_to_nchw"] == 2 and kernels["padded_nhwc_u8"] == 2 and not kernels["pad_nhwc_u8"]


def test_a_max_pool_between_two_convolutions_pools_channels_last() -> None:
    """conv -> ReLU -> 3x3/2 max-pool (padded, as a ResNet's stem) -> conv: the pool reads and writes NHWC."""
    b = GraphBuilder("pooled")
    x = b.input("x", f32[2, 4, 9, 8])
    h = b.maxpool2d(b.relu(_qconv(b, x, 8, 3, "a"), name="ra"), (3, 3), (2, 2), 1, name="pool")
    b.output(_qconv(b, h, 4, 1, "c"))
    g = b.build()
    exe = runtime.compile(g, backend="numba")
    feeds = {"x": RNG.standard_normal((2, 4, 9, 8)).astype(np.float32)}
    assert_array_equal(exe.run(feeds)["c"], reference.run(g, feeds)["c"])
    kernels = _kernels(exe, feeds)
    assert kernels["maxpool_nhwc"] == 1 and kernels["pixels_to_nchw"] == 1 and kernels["padded_nhwc_u8"] == 1


def test_requantized_u8_results_feed_the_next_convolution_channels_last() -> None:
    """Static int8: a qconv2d that requantizes to u8 feeds the next one directly, channels last."""
    b = GraphBuilder("static")
    x = b.input("x", f32[2, 4, 6, 6])
    q = b.quantize(x, 0.05, 128, dtype="u8")
    hi = 127 if BITS == 8 else 63
    w1 = RNG.integers(-hi - 1, hi + 1, (8, 4, 3, 3)).astype(np.int8)
    w2 = RNG.integers(-hi - 1, hi + 1, (4, 8, 1, 1)).astype(np.int8)
    ws1, ws2 = np.full(8, 0.004, np.float32), np.full(4, 0.01, np.float32)
    u = b.op("qconv2d", q, np.array([0.05], np.float32), np.array([128], np.int32), w1, ws1, pads=(1, 1, 1, 1),
             weight_bits=BITS, dtype="u8", out_scale=[0.1], out_zero_point=[100], name="u")
    y = b.op("qconv2d", u, np.array([0.1], np.float32), np.array([100], np.int32), w2, ws2, weight_bits=BITS,
             name="y")
    b.output(y)
    g = b.build()
    feeds = {"x": RNG.standard_normal((2, 4, 6, 6)).astype(np.float32) * 2}
    exe = runtime.compile(g, backend="numba")
    assert_array_equal(exe.run(feeds)["y"], reference.run(g, feeds)["y"])
    kernels = _kernels(exe, feeds)
    assert kernels["pixels_to_nchw"] == 1 and kernels["padded_nhwc_u8"] == 1 and not kernels["pad_nhwc_u8"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_chains_of_int8_convolutions_match_the_reference(data: st.DataObject) -> None:
    """Chains of 2-3 dynamically quantized convolutions (1x1 or 3x3, stride 1 or 2, any channel count), each with
    or without a ReLU (without, the zero points that pad are not 0), where shapes allow a residual of the
    previous result, and a max-pool or none after it: bit-identical to the reference, whatever the layouts
    chosen between them."""
    b = GraphBuilder("chain")
    c0 = data.draw(st.integers(1, 9), "channels in")
    h = data.draw(st.integers(3, 9), "height")
    x = b.input("x", f32[1, c0, h, data.draw(st.integers(3, 9), "width")])
    prev = x
    for i in range(data.draw(st.integers(2, 3), "convolutions")):
        k, stride = data.draw(st.sampled_from([(1, 1), (3, 1), (1, 2), (3, 2)]), f"conv {i}")
        co = data.draw(st.integers(1, 13), f"channels {i}")
        y = _qconv(b, prev, co, k, f"q{i}", strides=(stride, stride))
        if y.type.shape == prev.type.shape and prev is not x and data.draw(st.booleans(), f"residual {i}"):
            y = b.add(y, prev, name=f"res{i}")
        prev = b.relu(y, name=f"r{i}") if data.draw(st.booleans(), f"relu {i}") else y
        k, stride, pad, ceil = data.draw(st.tuples(st.integers(2, 3), st.integers(1, 2), st.integers(0, 1),
                                                   st.booleans()), f"maxpool {i}")
        if min(prev.type.shape[2:]) >= k and data.draw(st.booleans(), f"pooled {i}"):
            prev = b.maxpool2d(prev, (k, k), (stride, stride), pad, ceil_mode=ceil, name=f"p{i}")
    b.output(prev)
    g = b.build()
    feeds = {"x": RNG.standard_normal(x.type.shape).astype(np.float32) * 2}
    assert_array_equal(runtime.compile(g, backend="numba").run(feeds)[prev.name], reference.run(g, feeds)[prev.name])


@pytest.mark.parametrize(("kernel", "stride", "pad"), [(2, 2, 0), (3, 2, 1), (2, 1, 0)])
@pytest.mark.parametrize("shape", [(2, 9, 7, 16), (1, 8, 8, 5)])
def test_maxpool_nhwc_equals_the_pool_of_the_transposed_tensor(kernel: int, stride: int, pad: int,
                                                               shape: tuple[int, int, int, int]) -> None:
    """Both paths of the NHWC kernel (2x2 at stride 2 with every window inside: odd sizes leave the last row and
    column out; any other window) against the reference pool of the NCHW tensor, a NaN winning its window."""
    from tensorsmith.backends.numba.geometry import window_geometry
    from tensorsmith.backends.numba.k_pool import maxpool_nhwc

    x = RNG.standard_normal(shape).astype(np.float32)
    x[0, 1, 2, 3 % shape[3]] = np.nan
    b = GraphBuilder("pool")
    v = b.input("x", f32[shape[0], shape[3], shape[1], shape[2]])
    b.output(b.maxpool2d(v, (kernel, kernel), (stride, stride), pad, name="p"))
    g = b.build()
    want = reference.run(g, {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})["p"]
    out = np.empty(want.shape[:1] + want.shape[2:] + want.shape[1:2], np.float32)
    for parallel in (False, True):
        maxpool_nhwc.call(parallel, x, window_geometry(g.nodes[0], want.shape[3]), out, writes=(out,))
        assert_array_equal(out.transpose(0, 3, 1, 2), want)
