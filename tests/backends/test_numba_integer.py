"""The integer ops on the Numba backend, on every int8 path this host executes (AVX2 forced included).

Integer results (requantized u8/s8, dynamic quantization) equal the reference bit for bit; dequantized f32
outputs equal it too (same float operations in the same order, no contraction); an f32 epilogue after them
(GELU) is held to float rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.backends.numba import DEFAULT_PARALLEL_THRESHOLD, NumbaLoweringError
from tensorsmith.backends.numba.cpu_features import Int8PathError, best_int8_path, int8_paths
from tensorsmith.ir import Graph, GraphBuilder, Value, f32

from .numba_check import SERIAL

PATHS = int8_paths()
NATIVE = best_int8_path()
pytestmark = pytest.mark.skipif(not PATHS, reason="this host executes no int8 path")
RNG = np.random.default_rng(11)


def _weights(shape: tuple[int, ...], bits: int) -> np.ndarray:
    hi = 63 if bits == 7 else 127
    return RNG.integers(-hi - 1, hi + 1, shape).astype(np.int8)


def _bits(path: str) -> int:
    return 8 if path == "avx512vnni" else 7


def _linear_graph(op: str, shape: tuple[int, ...], n: int, bits: int, gran: str) -> Graph:
    """quantize-dynamic -> qlinear/qmatmul three ways: f32 with bias and GELU, u8 per channel, s8 per tensor."""
    b = GraphBuilder(op)
    x = b.input("x", f32[shape])
    q, s, z = b.op_multi("quantize-dynamic", x, granularity=gran)
    k = shape[-1]
    w = _weights((n, k) if op == "qlinear" else (k, n), bits)
    ws = (RNG.uniform(0.5, 1.0, n) / 100).astype(np.float32)
    bias = RNG.standard_normal(n).astype(np.float32)
    y = b.op(op, q, s, z, w, ws, bias, weight_bits=bits, name="y")
    g = b.gelu(y, name="g")
    u = b.op(op, q, s, z, w, ws, weight_bits=bits, dtype="u8", out_scale=list(RNG.uniform(0.01, 0.05, n)),
             out_zero_point=[int(v) for v in RNG.integers(0, 256, n)], name="u")
    i = b.op(op, q, s, z, w, ws, bias, weight_bits=bits, dtype="i8", out_scale=[0.0005], out_zero_point=[-3],
             name="i")  # saturates
    b.output(y, g, u, i, q, s, z)
    return b.build()


def threshold(path: str) -> int:
    """The runtime's parallel threshold on the native path; serial twins only on a narrower one.

    The twins of a kernel differ only in the outermost loop: their parallel split is tested on the path
    `compile` picks here, each path's arithmetic on its serial twins (a parallel twin of an int8 kernel
    costs about 10 s of compilation per path).
    """
    return DEFAULT_PARALLEL_THRESHOLD if path == NATIVE else SERIAL


def _check(g: Graph, path: str, feeds: dict[str, np.ndarray], close: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    ref = reference.run(g, feeds)
    for fuse in (True, False):
        exe = runtime.compile(g, backend="numba", int8_path=path, fuse=fuse, parallel_threshold=threshold(path))
        assert exe.stats["int8_path"] == path
        assert path not in exe.stats["int8_paths_unavailable"]
        got = exe.run(feeds)
        for name, want in ref.items():
            if name in close:
                assert_allclose(got[name], want, rtol=1e-5, atol=1e-5)
            else:
                assert_array_equal(got[name], want, err_msg=f"{name} on {path} (fuse={fuse})")
    return ref


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("op", ["qlinear", "qmatmul"])
@pytest.mark.parametrize("shape,n,gran", [((3, 5, 33), 70, "row"), ((1, 64), 130, "tensor"), ((17, 8), 1, "row"),
                                          ((40, 768), 96, "tensor")])
def test_qproducts_bit_exact(path: str, op: str, shape: tuple[int, ...], n: int, gran: str) -> None:
    g = _linear_graph(op, shape, n, _bits(path), gran)
    x = (RNG.standard_normal(shape) * 3).astype(np.float32)
    x.reshape(-1)[:3] = [0.0, -7.5, 9.25]
    ref = _check(g, path, {"x": x}, close=("g",))
    assert ((ref["i"] == -128) | (ref["i"] == 127)).any()  # saturation is exercised


@pytest.mark.parametrize("path", PATHS)
def test_signed_activations_and_static_zero_points(path: str) -> None:
    """A static s8 activation (quantize's output) with a nonzero zero point flips to u8 exactly."""
    b = GraphBuilder("s8")
    x = b.input("x", f32[6, 20])
    q = b.quantize(x, 0.05, -7, dtype="i8")
    y = b.op("qlinear", q, np.array([0.05], np.float32), np.array([-7], np.int32), _weights((9, 20), _bits(path)),
             np.full(9, 0.01, np.float32), weight_bits=_bits(path), name="y")
    b.output(y)
    _check(b.build(), path, {"x": RNG.standard_normal((6, 20)).astype(np.float32) * 4})


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("pads,strides,dil", [((0, 0, 0, 0), (1, 1), (1, 1)), ((1, 2, 0, 1), (2, 1), (1, 2))])
def test_qconv2d_bit_exact(path: str, pads: tuple[int, ...], strides: tuple[int, int], dil: tuple[int, int]) -> None:
    b = GraphBuilder("qconv")
    x = b.input("x", f32[2, 5, 9, 8])
    q, s, z = b.op_multi("quantize-dynamic", x)
    w = _weights((7, 5, 3, 2), _bits(path))
    ws = (RNG.uniform(0.5, 1.0, 7) / 100).astype(np.float32)
    attrs = {"pads": pads, "strides": strides, "dilations": dil, "weight_bits": _bits(path)}
    y = b.op("qconv2d", q, s, z, w, ws, RNG.standard_normal(7).astype(np.float32), name="y", **attrs)
    r = b.relu(y, name="r")
    u = b.op("qconv2d", q, s, z, w, ws, name="u", dtype="u8", out_scale=[0.03], out_zero_point=[128], **attrs)
    b.output(y, r, u)
    _check(b.build(), path, {"x": RNG.standard_normal((2, 5, 9, 8)).astype(np.float32)})


@pytest.mark.parametrize("path", PATHS)
def test_qconv2d_of_static_s8_activations_flips_them_exactly(path: str) -> None:
    """An s8 input (zero point -7) through the NHWC im2col: the padding reads the flipped zero point."""
    b = GraphBuilder("qconv_s8")
    x = b.input("x", f32[2, 4, 6, 5])
    q = b.quantize(x, 0.05, -7, dtype="i8")
    w = _weights((6, 4, 3, 3), _bits(path))
    ws = (RNG.uniform(0.5, 1.0, 6) / 100).astype(np.float32)
    b.output(b.op("qconv2d", q, np.array([0.05], np.float32), np.array([-7], np.int32), w, ws, name="y",
                  pads=(1, 1, 2, 0), strides=(1, 2), dilations=(1, 1), weight_bits=_bits(path)))
    g = b.build()
    _check(g, path, {"x": RNG.standard_normal((2, 4, 6, 5)).astype(np.float32) * 3})
    kernels = [p.kernel for p in runtime.compile(g, backend="numba", int8_path=path).profile(
        {"x": np.zeros((2, 4, 6, 5), np.float32)}).nodes]
    assert "padded_nhwc_u8" in kernels and "im2col_nhwc_u8" in kernels


def _quantized_input(b: GraphBuilder, x: Value, act: str) -> tuple[Value, Value, Value]:
    """(q, scale, zero point) of x: u8 quantized at run time, or s8 by a static quantize (zero point -7)."""
    if act == "u8":
        q, s, z = b.op_multi("quantize-dynamic", x)
        return q, s, z
    return (b.quantize(x, 0.05, -7, dtype="i8"), b.const(np.array([0.05], np.float32), "x_scale"),
            b.const(np.array([-7], np.int32), "x_zero_point"))


@pytest.mark.parametrize(("xs", "k", "pads", "strides", "dil", "multiplier", "act"), [
    ((2, 6, 9, 8), (3, 3), (1, 1, 1, 1), (1, 1), (1, 1), 1, "u8"),
    ((1, 5, 11, 10), (3, 2), (1, 2, 0, 1), (2, 1), (1, 2), 2, "u8"),
    ((1, 4, 7, 7), (5, 5), (2, 2, 2, 2), (2, 2), (1, 1), 1, "i8"),
])
def test_depthwise_qconv2d_bit_exact(xs: tuple, k: tuple, pads: tuple, strides: tuple, dil: tuple, multiplier: int,
                                     act: str) -> None:
    """Depthwise qconv2d (one input channel per group) on k_phase_planes: f32 out with bias and a fused ReLU, and
    requantized u8 out, equal to the reference bit for bit, for u8 (dynamic) and s8 (static) activations."""
    c = xs[1] * multiplier
    b = GraphBuilder("qdepthwise")
    x = b.input("x", f32[xs])
    q, s, z = _quantized_input(b, x, act)
    w = _weights((c, 1, *k), 8)
    ws = (RNG.uniform(0.5, 1.0, c) / 100).astype(np.float32)
    attrs = {"pads": pads, "strides": strides, "dilations": dil, "groups": xs[1]}
    y = b.op("qconv2d", q, s, z, w, ws, RNG.standard_normal(c).astype(np.float32), name="y", **attrs)
    r = b.relu(y, name="r")
    u = b.op("qconv2d", q, s, z, w, ws, name="u", dtype="u8", out_scale=[0.02], out_zero_point=[100], **attrs)
    b.output(y, r, u)
    g = b.build()
    feeds = {"x": (RNG.standard_normal(xs) * 3).astype(np.float32)}
    ref = reference.run(g, feeds)
    assert ((ref["u"] == 0) | (ref["u"] == 255)).any()  # saturation is exercised
    for threshold in (SERIAL, 0):
        for fuse in (True, False):
            exe = runtime.compile(g, backend="numba", fuse=fuse, parallel_threshold=threshold)
            assert any(p.kernel.startswith("qconv_depthwise") for p in exe.profile(feeds).nodes)
            got = exe.run(feeds)
            for name, want in ref.items():
                assert_array_equal(got[name], want, err_msg=f"{name} (fuse={fuse}, threshold {threshold})")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("xs", "groups", "k", "pads", "strides", "act"), [
    ((2, 12, 5, 6), 2, (1, 1), (0, 0, 0, 0), (1, 1), "u8"),  # pointwise: rows read in place, 6 channels padded to 8
    ((1, 5, 4, 4), 1, (1, 1), (0, 0, 0, 0), (1, 1), "i8"),  # pointwise, groups 1, K 5 padded to 8
    ((2, 6, 7, 6), 3, (3, 3), (1, 0, 1, 2), (2, 1), "u8"),  # im2col per group
    ((1, 8, 6, 6), 4, (1, 1), (0, 0, 0, 0), (2, 2), "i8"),  # strided 1x1: im2col per group
])
def test_grouped_qconv2d_bit_exact(path: str, xs: tuple, groups: int, k: tuple, pads: tuple, strides: tuple,
                                   act: str) -> None:
    """Grouped qconv2d (several input channels per group) on one int8 GEMM per group: f32 out with bias and a fused
    per-channel scale and ReLU, per-channel u8 and saturating s8 outputs, equal to the reference bit for bit."""
    co = 3 * groups
    b = GraphBuilder("qgrouped")
    x = b.input("x", f32[xs])
    q, s, z = _quantized_input(b, x, act)
    w = _weights((co, xs[1] // groups, *k), _bits(path))
    ws = (RNG.uniform(0.5, 1.0, co) / 100).astype(np.float32)
    attrs = {"pads": pads, "strides": strides, "dilations": (1, 1), "groups": groups, "weight_bits": _bits(path)}
    y = b.op("qconv2d", q, s, z, w, ws, RNG.standard_normal(co).astype(np.float32), name="y", **attrs)
    r = b.relu(b.mul(y, RNG.uniform(0.5, 2.0, (co, 1, 1)).astype(np.float32), name="m"), name="r")
    u = b.op("qconv2d", q, s, z, w, ws, name="u", dtype="u8", out_scale=list(RNG.uniform(0.01, 0.03, co)),
             out_zero_point=[int(v) for v in RNG.integers(0, 256, co)], **attrs)
    i = b.op("qconv2d", q, s, z, w, ws, name="i", dtype="i8", out_scale=[0.002], out_zero_point=[3], **attrs)
    b.output(y, r, u, i)
    g = b.build()
    feeds = {"x": (RNG.standard_normal(xs) * 3).astype(np.float32)}
    ref = _check(g, path, feeds, close=("r",))
    assert ((ref["i"] == -128) | (ref["i"] == 127)).any()  # saturation is exercised
    kernels = [p.kernel for p in runtime.compile(g, backend="numba", int8_path=path).profile(feeds).nodes]
    assert ("im2col_nhwc_u8" in kernels) == (k != (1, 1) or strides != (1, 1))


def test_a_depthwise_qconv2d_too_wide_to_sum_exactly_in_f32_is_refused_by_name() -> None:
    b = GraphBuilder("qwide")
    x = b.input("x", f32[1, 2, 24, 24])
    q, s, z = b.op_multi("quantize-dynamic", x)
    b.output(b.op("qconv2d", q, s, z, _weights((2, 1, 23, 23), 8), np.full(2, 0.01, np.float32), groups=2, name="y"))
    with pytest.raises(NumbaLoweringError, match="23x23 taps: more than 514 do not sum exactly"):
        runtime.compile(b.build(), backend="numba")


def test_full_range_weights_are_refused_on_the_7_bit_paths() -> None:
    paths = [p for p in PATHS if p != "avx512vnni"]
    if not paths:
        pytest.skip("this host has no 7-bit int8 path")
    g = _linear_graph("qlinear", (2, 8), 4, 8, "tensor")
    with pytest.raises(NumbaLoweringError, match=r"weight_bits=8 .* computes exactly only \[-64, 63\]"):
        runtime.compile(g, backend="numba", int8_path=paths[-1])


def test_unknown_or_missing_paths_are_named() -> None:
    g = _linear_graph("qlinear", (2, 8), 4, 7, "tensor")
    with pytest.raises(Int8PathError, match="unknown int8 GEMM path 'sse2'"):
        runtime.compile(g, backend="numba", int8_path="sse2")


def test_the_plan_names_no_path_without_integer_ops() -> None:
    b = GraphBuilder("f")
    x = b.input("x", f32[2, 3])
    b.output(b.relu(x))
    assert runtime.compile(b.build(), backend="numba").stats["int8_path"] is None


@pytest.mark.parametrize("path", PATHS)
def test_small_int8_products_and_quantizations_run_serially_large_ones_in_parallel(path: str) -> None:
    """Int8 flops count at the path's speed: 8 rows of a 256 -> 128 linear stay on one thread (a parallel region
    would cost more than it saves), 1024 rows of a 256 -> 512 one go parallel; dynamic quantization alike."""
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one thread only")
    kernels = {}
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        for rows, n in ((8, 128), (1024, 512)):
            b = GraphBuilder("q")
            x = b.input("x", f32[rows, 256])
            q, s, z = b.op_multi("quantize-dynamic", x, granularity="row")
            w = _weights((n, 256), _bits(path))
            b.output(b.op("qlinear", q, s, z, w, np.full(n, 0.01, np.float32), weight_bits=_bits(path), name="y"))
            exe = runtime.compile(b.build(), backend="numba", int8_path=path)
            kernels[rows] = [st.kernel for st in exe.plan.steps]
    finally:
        numba.set_num_threads(before)
    for rows, parallel in ((8, False), (1024, True)):
        for prefix in ("quantize_dynamic_row", f"qlinear_{path}"):
            (kernel,) = [k for k in kernels[rows] if k.startswith(prefix)]
            assert kernel.endswith("[par]") == parallel, (rows, kernel)


@pytest.mark.parametrize("groups", [1, 2])
def test_a_qconv2d_region_with_a_residual_adds_it_in_the_transpose(groups: int) -> None:
    """qconv2d -> batchnorm -> residual add -> relu is one region: batchnorm in the GEMM's epilogue, the residual
    and the ReLU in the transpose to NCHW (the GEMM writes pixels x channels)."""
    b = GraphBuilder("qres")
    x = b.input("x", f32[1, 8, 6, 6])
    q, s, z = b.op_multi("quantize-dynamic", x)
    y = b.op("qconv2d", q, s, z, _weights((8, 8 // groups, 3, 3), 7), np.full(8, 0.01, np.float32),
             pads=(1, 1, 1, 1), groups=groups, weight_bits=7, name="y")
    ones, zeros = np.ones(8, np.float32), np.zeros(8, np.float32)
    h = b.batchnorm(y, 2 * ones, zeros + 0.5, zeros, ones, name="bn")
    b.output(b.relu(b.add(h, x, name="res"), name="r"))
    g = b.build()
    feeds = {"x": RNG.standard_normal((1, 8, 6, 6)).astype(np.float32)}
    for threshold in (SERIAL, 0):
        exe = runtime.compile(g, backend="numba", parallel_threshold=threshold)
        kernels = [p.kernel for p in exe.profile(feeds).nodes]
        assert any(k.startswith("qconv2d_") and k.split("[")[0].endswith("+mul+add") for k in kernels), kernels
        assert any(k.startswith("pixels_to_nchw+residual+relu") for k in kernels), kernels
        assert_allclose(exe.run(feeds)["r"], reference.run(g, feeds)["r"], rtol=1e-5, atol=1e-5)
