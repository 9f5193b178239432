"""Integer ops with a weight zero point on the Numba backend, bit for bit the reference, on every int8 path here.

A weight zero point t is what an asymmetric u8 (or s8) weight brings from ONNX: acc = sum (x - x_zp) * (w - t) with
w - t in [-255, 255]. The kernels multiply the stored s8 w and subtract t[n] * sum_k (x[m, k] - x_zp[m]) from each
accumulator (`row_sums_u8`, `dequant_block`); the depthwise convolution subtracts t from its f32 taps.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.backends.numba import int8_gemm as ig
from tensorsmith.backends.numba.bsr_int8 import bsr_int8_from_dense, run_bsr_int8
from tensorsmith.backends.numba.cpu_features import best_int8_path, int8_paths
from tensorsmith.ir import Graph, GraphBuilder, Value, f32

from .test_numba_integer import threshold

PATHS = int8_paths()
pytestmark = pytest.mark.skipif(not PATHS, reason="this host executes no int8 path")
RNG = np.random.default_rng(23)


def _bits(path: str) -> int:
    return 8 if path in ("avx512vnni", "avxvnni", "amx") else 7


def _weights(shape: tuple[int, ...], bits: int) -> np.ndarray:
    hi = 63 if bits == 7 else 127
    return RNG.integers(-hi - 1, hi + 1, shape).astype(np.int8)


def _zero_points(n: int, per_channel: bool) -> list[int]:
    """Weight zero points at the ends of s8 and between: w - t then spans well past [-128, 127]."""
    if not per_channel:
        return [-128]
    return [int(v) for v in np.resize(np.array([127, -128, 5, -77, 0, 90]), n)]


def _quantized_input(b: GraphBuilder, x: Value, act: str) -> tuple[Value, Value, Value]:
    """(q, scale, zero point) of x: u8 quantized at run time (per tensor or per row), or s8 by a static quantize."""
    if act in ("tensor", "row"):
        q, s, z = b.op_multi("quantize-dynamic", x, granularity=act)
        return q, s, z
    return (b.quantize(x, 0.05, -7, dtype="i8"), b.const(np.array([0.05], np.float32), "x_scale"),
            b.const(np.array([-7], np.int32), "x_zero_point"))


def _check(g: Graph, path: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ref = reference.run(g, feeds)
    for fuse in (True, False):
        exe = runtime.compile(g, backend="numba", int8_path=path, fuse=fuse, parallel_threshold=threshold(path))
        got = exe.run(feeds)
        for name, want in ref.items():
            assert_array_equal(got[name], want, err_msg=f"{name} on {path} (fuse={fuse})")
    return ref


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("op", ["qlinear", "qmatmul"])
@pytest.mark.parametrize(("shape", "n", "act", "per_channel"), [
    ((3, 5, 33), 70, "row", True), ((40, 768), 96, "tensor", False), ((1, 64), 130, "s8", True),
    ((17, 8), 1, "tensor", True)])
def test_qproducts_with_a_weight_zero_point_are_bit_exact(path: str, op: str, shape: tuple[int, ...], n: int,
                                                          act: str, per_channel: bool) -> None:
    """f32 out with a bias and a fused ReLU, per-channel u8 and saturating s8 outputs."""
    bits = _bits(path)
    k = shape[-1]
    w = _weights((n, k) if op == "qlinear" else (k, n), bits)
    t = _zero_points(n, per_channel)
    ws = (RNG.uniform(0.5, 1.0, n) / 100).astype(np.float32)
    b = GraphBuilder(op)
    x = b.input("x", f32[shape])
    q, s, z = _quantized_input(b, x, act)
    attrs = {"weight_bits": bits, "weight_zero_point": t}
    y = b.op(op, q, s, z, w, ws, RNG.standard_normal(n).astype(np.float32), name="y", **attrs)
    r = b.relu(y, name="r")
    u = b.op(op, q, s, z, w, ws, name="u", dtype="u8", out_scale=list(RNG.uniform(0.05, 0.2, n)),
             out_zero_point=[int(v) for v in RNG.integers(0, 256, n)], **attrs)
    i = b.op(op, q, s, z, w, ws, name="i", dtype="i8", out_scale=[0.002], out_zero_point=[3], **attrs)
    b.output(y, r, u, i)
    x_in = (RNG.standard_normal(shape) * 3).astype(np.float32)
    ref = _check(b.build(), path, {"x": x_in})
    assert ((ref["i"] == -128) | (ref["i"] == 127)).any()  # saturation is exercised
    plain = GraphBuilder("plain")  # the zero point changes the result: it is not ignored
    xp = plain.input("x", f32[shape])
    qp, sp, zpp = _quantized_input(plain, xp, act)
    plain.output(plain.op(op, qp, sp, zpp, w, ws, weight_bits=bits, name="y"))
    assert not np.array_equal(reference.run(plain.build(), {"x": x_in})["y"], ref["y"])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("xs", "groups", "k", "pads", "strides", "act"), [
    ((2, 5, 9, 8), 1, (3, 2), (1, 2, 0, 1), (2, 1), "tensor"),  # im2col
    ((2, 12, 5, 6), 2, (1, 1), (0, 0, 0, 0), (1, 1), "tensor"),  # pointwise: rows read in place, K padded
    ((1, 6, 7, 6), 3, (3, 3), (1, 0, 1, 2), (1, 1), "s8"),  # im2col per group, s8 activations flipped
])
def test_qconv2d_with_a_weight_zero_point_is_bit_exact(path: str, xs: tuple, groups: int, k: tuple, pads: tuple,
                                                       strides: tuple, act: str) -> None:
    """The padding reads the activation zero point, so the row sums of im2col rows count it as zero."""
    co = 3 * groups
    bits = _bits(path)
    b = GraphBuilder("qconv")
    x = b.input("x", f32[xs])
    q, s, z = _quantized_input(b, x, act)
    w = _weights((co, xs[1] // groups, *k), bits)
    ws = (RNG.uniform(0.5, 1.0, co) / 100).astype(np.float32)
    attrs = {"pads": pads, "strides": strides, "dilations": (1, 1), "groups": groups, "weight_bits": bits,
             "weight_zero_point": _zero_points(co, groups > 1)}
    y = b.op("qconv2d", q, s, z, w, ws, RNG.standard_normal(co).astype(np.float32), name="y", **attrs)
    u = b.op("qconv2d", q, s, z, w, ws, name="u", dtype="u8", out_scale=[0.05], out_zero_point=[128], **attrs)
    b.output(y, b.relu(y, name="r"), u)
    _check(b.build(), path, {"x": (RNG.standard_normal(xs) * 3).astype(np.float32)})


def test_depthwise_qconv2d_subtracts_the_weight_zero_point_from_its_taps() -> None:
    b = GraphBuilder("qdepthwise")
    x = b.input("x", f32[2, 6, 9, 8])
    q, s, z = b.op_multi("quantize-dynamic", x)
    w = _weights((6, 1, 3, 3), 8)
    ws = (RNG.uniform(0.5, 1.0, 6) / 100).astype(np.float32)
    attrs = {"pads": (1, 1, 1, 1), "groups": 6, "weight_zero_point": _zero_points(6, True)}
    y = b.op("qconv2d", q, s, z, w, ws, RNG.standard_normal(6).astype(np.float32), name="y", **attrs)
    b.output(y, b.op("qconv2d", q, s, z, w, ws, name="u", dtype="u8", out_scale=[0.05], out_zero_point=[9], **attrs))
    g = b.build()
    feeds = {"x": (RNG.standard_normal((2, 6, 9, 8)) * 3).astype(np.float32)}
    ref = reference.run(g, feeds)
    exe = runtime.compile(g, backend="numba")
    assert any(p.kernel.startswith("qconv_depthwise") for p in exe.profile(feeds).nodes)
    for name, got in exe.run(feeds).items():
        assert_array_equal(got, ref[name], err_msg=name)


@pytest.mark.parametrize("path", PATHS)
def test_gemm_entry_points_subtract_the_weight_zero_point_exactly(path: str) -> None:
    """The dense and block-sparse GEMMs (numpy-level entries) against int64 arithmetic."""
    m, n, k = 37, 48, 70  # K padded to 72: the row sums leave the padding columns out
    bits = _bits(path)
    w = _weights((n, k), bits)
    w[:, 8:24] = 0  # empty 4x8 blocks for the block-sparse kernel
    t = np.array(_zero_points(n, True), np.int32)
    xq = RNG.integers(0, 256, (m, ig.padded_k(k))).astype(np.uint8)
    sx, zpx = np.full(m, 0.02, np.float32), RNG.integers(0, 256, m).astype(np.int32)
    sw = np.full(n, 0.01, np.float32)
    acc = (xq[:, :k].astype(np.int64) - zpx[:, None]) @ (w.astype(np.int64) - t[:, None]).T
    want = (sx[:, None] * sw).astype(np.float32) * acc.astype(np.float32)
    dense = ig.int8_gemm_dequant(xq, sx, zpx, ig.pack_int8_weights(w, sw, path), path, weight_zero_point=t)
    assert_array_equal(dense, want)
    sparse = run_bsr_int8(xq, sx, zpx, bsr_int8_from_dense(w, (4, 8), path, scales=sw), weight_zero_point=t)
    assert_array_equal(sparse, want)


def test_the_native_path_is_among_those_tested() -> None:
    assert best_int8_path() in PATHS
