"""Numba backend against the reference: linear, matmul and conv2d with hypothesis-drawn shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorsmith.backends.numba import DEFAULT_PARALLEL_THRESHOLD
from tensorsmith.ir import GraphBuilder, f32
from tensorsmith.runtime.numba_exec import NumbaExecutable

from .numba_check import PARALLEL, SERIAL, check, check_op, region

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIZE = st.sampled_from([1, 2, 3, 5, 7, 13, 16, 31, 64, 97])
RNG = np.random.default_rng(11)


def _u(*shape: int) -> np.ndarray:
    return RNG.uniform(-1, 1, shape).astype(np.float32)


@SETTINGS
@given(m=SIZE, k=SIZE, n=SIZE, lead=st.sampled_from([(), (2,), (0,), (3, 1)]), bias=st.booleans())
def test_linear(m: int, k: int, n: int, lead: tuple[int, ...], bias: bool) -> None:
    x = _u(*lead, m, k)
    w, b = _u(n, k), _u(n)
    if bias:
        check_op("linear", x, w, b, consts=(1, 2), rtol=1e-4, atol=1e-5)
    else:
        check_op("linear", x, w, consts=(1,), rtol=1e-4, atol=1e-5)


def test_linear_with_input_weight_and_bias() -> None:
    check_op("linear", _u(4, 6), _u(5, 6), _u(5), rtol=1e-4, atol=1e-5)
    check_op("matmul", _u(3, 6), _u(6, 5), rtol=1e-4, atol=1e-5)


@st.composite
def matmul_shapes(draw):  # type: ignore[no-untyped-def]
    """Operand shapes for numpy matmul: ranks 1-4, broadcast batch axes."""
    m, k, n = draw(SIZE), draw(SIZE), draw(SIZE)
    batch = draw(st.sampled_from([(), (2,), (3, 2), (1, 4), (0,)]))
    ab = tuple(d if draw(st.booleans()) else 1 for d in batch)
    bb = tuple(d if draw(st.booleans()) else 1 for d in batch)
    ab, bb = ab[draw(st.integers(0, len(ab))):], bb[draw(st.integers(0, len(bb))):]
    a = (k,) if draw(st.integers(0, 6)) == 0 else ab + (m, k)
    b = (k,) if draw(st.integers(0, 6)) == 0 else bb + (k, n)
    return a, b


@SETTINGS
@given(shapes=matmul_shapes(), const_b=st.booleans())
def test_matmul(shapes: tuple[tuple[int, ...], tuple[int, ...]], const_b: bool) -> None:
    a, b = _u(*shapes[0]), _u(*shapes[1])
    check_op("matmul", a, b, consts=(1,) if const_b else (), rtol=1e-4, atol=1e-5)


def _attention_like(perm_a: tuple[int, ...], perm_b: tuple[int, ...]) -> GraphBuilder | None:
    """x.transpose(perm_a) @ y.transpose(perm_b) (last two axes of y swapped if needed), or None."""
    b = GraphBuilder("attn")
    x = b.input("x", f32[2, 6, 3, 4])
    y = b.input("y", f32[2, 6, 3, 4])
    xa = b.transpose(x, perm_a)
    yb = b.transpose(y, perm_b)
    if xa.type.shape[-1] != yb.type.shape[-2]:
        yb = b.transpose(yb, tuple(range(yb.type.rank - 2)) + (yb.type.rank - 1, yb.type.rank - 2))
    if xa.type.shape[:-2] != yb.type.shape[:-2] or xa.type.shape[-1] != yb.type.shape[-2]:
        return None
    b.output(b.matmul(xa, yb))
    return b


PERMS = [(0, 1, 2, 3), (0, 2, 1, 3), (0, 2, 3, 1), (3, 2, 1, 0), (1, 0, 2, 3)]
VIEW_CASES = [(pa, pb) for pa in PERMS for pb in PERMS if _attention_like(pa, pb) is not None]


@pytest.mark.parametrize(("perm_a", "perm_b"), VIEW_CASES)
def test_matmul_reads_transposed_views_in_place(perm_a: tuple[int, ...], perm_b: tuple[int, ...]) -> None:
    b = _attention_like(perm_a, perm_b)
    assert b is not None
    check(b.build(), {"x": _u(2, 6, 3, 4), "y": _u(2, 6, 3, 4)}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.int32, np.int8])
def test_integer_products(dtype: type) -> None:
    a = RNG.integers(-5, 5, (2, 3, 7)).astype(dtype)
    b = RNG.integers(-5, 5, (7, 4)).astype(dtype)
    check_op("matmul", a, b, exact=True)
    check_op("matmul", a, RNG.integers(-5, 5, (2, 7, 3)).astype(dtype), exact=True)
    check_op("linear", a, RNG.integers(-5, 5, (4, 7)).astype(dtype), consts=(1,), exact=True)


@st.composite
def conv_cases(draw):  # type: ignore[no-untyped-def]
    """(x shape, w shape, strides, pads, dilations, groups) for a valid conv2d."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.sampled_from([1, 2, 3, 5]))
    depthwise = draw(st.booleans()) and groups > 1
    if depthwise:
        cg = 1
    co = groups * draw(st.sampled_from([1, 2, 3]))
    kh, kw = draw(st.sampled_from([1, 2, 3, 5])), draw(st.sampled_from([1, 2, 3]))
    strides = (draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 2])))
    dil = (draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2])))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h = draw(st.integers(dil[0] * (kh - 1) + 1, 13))
    w = draw(st.integers(dil[1] * (kw - 1) + 1, 11))
    n = draw(st.sampled_from([1, 2, 0]))
    return (n, groups * cg, h, w), (co, cg, kh, kw), strides, pads, dil, groups


@SETTINGS
@given(case=conv_cases(), bias=st.booleans())
def test_conv2d(case: tuple, bias: bool) -> None:
    xs, ws, strides, pads, dil, groups = case
    args = [_u(*xs), _u(*ws)] + ([_u(ws[0])] if bias else [])
    check_op("conv2d", *args, consts=(1, 2), strides=strides, pads=pads, dilations=dil, groups=groups,
             rtol=1e-4, atol=1e-5)


def test_conv2d_resnet_like_shapes_and_input_weights() -> None:
    check_op("conv2d", _u(1, 16, 14, 14), _u(32, 16, 3, 3), _u(32), consts=(1, 2), pads=(1, 1, 1, 1),
             rtol=1e-4, atol=1e-4)
    check_op("conv2d", _u(2, 16, 9, 9), _u(24, 16, 1, 1), consts=(1,), strides=(2, 2), rtol=1e-4, atol=1e-4)
    check_op("conv2d", _u(1, 3, 8, 8), _u(4, 3, 3, 3), _u(4), pads=(1, 1, 1, 1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.int32, np.int8])
def test_integer_conv2d(dtype: type) -> None:
    x = RNG.integers(-3, 3, (1, 2, 5, 5)).astype(dtype)
    w = RNG.integers(-3, 3, (3, 2, 3, 3)).astype(dtype)
    check_op("conv2d", x, w, consts=(1,), pads=(1, 1, 1, 1), exact=True)


@pytest.mark.parametrize(("xs", "ws", "strides", "pads", "dil"), [
    ((2, 16, 11, 9), (13, 16, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((1, 12, 10, 13), (30, 12, 5, 3), (1, 2), (2, 0, 1, 3), (2, 1)),
    ((1, 9, 17, 17), (7, 9, 7, 7), (3, 3), (3, 3, 3, 3), (1, 1)),
    ((3, 20, 6, 5), (25, 20, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
    ((1, 24, 9, 7), (200, 24, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
])
def test_conv2d_on_the_micro_kernel(xs: tuple, ws: tuple, strides: tuple, pads: tuple, dil: tuple) -> None:
    """Shapes wide enough (>= 8 input channels) for the shifted-GEMM convolution, with and without fusion."""
    b = GraphBuilder("conv_uk")
    x = b.input("x", f32[xs])
    c = b.conv2d(x, _u(*ws), _u(ws[0]), strides=strides, pads=pads, dilations=dil, name="conv")
    bn = b.batchnorm(c, _u(ws[0]) + 2, _u(ws[0]), _u(ws[0]), np.abs(_u(ws[0])) + 0.5, name="bn")
    b.output(b.relu(bn, name="act"), b.conv2d(x, _u(*ws), strides=strides, pads=pads, dilations=dil))
    g = b.build()
    region(g, "conv", "bn", "act")
    check(g, {"x": _u(*xs)}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("xs", "k", "strides", "pads", "dil"), [
    ((1, 32, 14, 14), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((2, 24, 15, 13), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((1, 17, 9, 9), (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),
    ((1, 8, 12, 10), (3, 3), (2, 1), (0, 1, 2, 0), (2, 1)),
    ((1, 5, 7, 7), (3, 2), (3, 2), (2, 0, 0, 3), (1, 2)),
])
@pytest.mark.parametrize("multiplier", [1, 3])
@pytest.mark.parametrize("threshold", [SERIAL, PARALLEL])
def test_depthwise_conv2d_with_its_epilogue(xs: tuple, k: tuple, strides: tuple, pads: tuple, dil: tuple,
                                            threshold: int, multiplier: int) -> None:
    """Depthwise convolutions (MobileNet / ShuffleNet; `multiplier` output channels per input channel) run on
    k_phase_planes, with a batch norm, residual add and ReLU fused after them, strides and dilations along
    either axis."""
    c = xs[1] * multiplier
    b = GraphBuilder("depthwise")
    x = b.input("x", f32[xs])
    conv = b.conv2d(x, _u(c, 1, *k), _u(c), strides=strides, pads=pads, dilations=dil, groups=xs[1], name="conv")
    r = b.input("r", f32[conv.type.shape])
    bn = b.batchnorm(conv, _u(c) + 2, _u(c), _u(c), np.abs(_u(c)) + 0.5, name="bn")
    b.output(b.relu(b.add(bn, r, name="res"), name="act"))
    g = b.build()
    region(g, "conv", "bn", "res", "act")
    exe = NumbaExecutable(g, parallel_threshold=threshold)
    assert any("conv_depthwise" in s.kernel for s in exe.plan.steps)
    check(g, {"x": _u(*xs), "r": _u(*conv.type.shape)}, rtol=1e-4, atol=1e-5, thresholds=(threshold,))


@pytest.mark.parametrize(("m", "k", "n"), [(37, 613, 45), (130, 300, 70), (4, 257, 33), (300, 512, 1), (1, 613, 45),
                                            (1, 300, 64), (2, 257, 33), (3, 100, 97), (8, 600, 64), (20, 300, 40)])
def test_linear_with_several_k_blocks_and_partial_tiles(m: int, k: int, n: int) -> None:
    """Several K blocks, partial row and column panels; one row (read in place, no packing) and 2-3 rows too.
    A last row panel of exactly 1, 4 or 8 rows (MR = 12) is written straight into the output, adding from the
    second K block on (37, 4, 8 and 20 rows)."""
    b = GraphBuilder("deep")
    x = b.input("x", f32[m, k])
    r = b.input("r", f32[m, n])
    b.output(b.gelu(b.add(b.linear(x, _u(n, k), _u(n), name="fc"), r, name="res"), name="act"))
    g = b.build()
    region(g, "fc", "res", "act")
    check(g, {"x": _u(m, k), "r": _u(m, n)}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("m", "k", "n"), [(450, 64, 10), (37, 20, 300), (129, 33, 64), (1, 8, 3), (1, 200, 300)])
@pytest.mark.parametrize("parallel", [False, True])
def test_linear_epilogue_stages_on_short_and_long_rows(m: int, k: int, n: int, parallel: bool) -> None:
    """Bias, per-column mul and div, residual and relu after a linear: short rows run in one call."""
    b = GraphBuilder("stages")
    x = b.input("x", f32[m, k])
    r = b.input("r", f32[m, n])
    y = b.linear(x, _u(n, k), _u(n), name="fc")
    y = b.div(b.mul(y, _u(n) + 3, name="scale"), np.abs(_u(n)) + 0.5, name="norm")
    b.output(b.relu(b.add(y, r, name="res"), name="act"))
    g = b.build()
    region(g, "fc", "scale", "norm", "res", "act")
    check(g, {"x": _u(m, k), "r": _u(m, n)}, rtol=1e-4, atol=1e-4,
          thresholds=(0,) if parallel else (DEFAULT_PARALLEL_THRESHOLD,))
