"""A conv2d region ending in a 2x2 max pool: conv_pixels and conv_shift pool their finished tiles, others pool after."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorsmith.backends.numba import k_microkernel
from tensorsmith.backends.numba.k_conv_pixels import MAX_POOL_BLOCK_PIXELS, pool_block_pixels, pooled_blocks
from tensorsmith.ir import Graph, GraphBuilder, f32
from tensorsmith.passes import run_pipeline
from tensorsmith.runtime.numba_exec import NumbaExecutable

from .numba_check import PARALLEL, SERIAL, check, region

pytestmark = pytest.mark.skipif(not k_microkernel.AVAILABLE, reason="no FMA: convolutions go through BLAS")
RNG = np.random.default_rng(31)
NR = k_microkernel.NR


def _u(*shape: int) -> np.ndarray:
    return RNG.uniform(-1, 1, shape).astype(np.float32)


def _graph(xs: tuple, co: int, strides: tuple = (1, 1), residual: bool = False,
           ceil: bool = False, k: int = 3) -> tuple[Graph, dict]:
    """conv (k x k) + batchnorm (+ residual) + relu + 2x2 max pool as one region."""
    b = GraphBuilder("conv_pool")
    x = b.input("x", f32[xs])
    c = b.conv2d(x, _u(co, xs[1], k, k), _u(co), strides=strides, pads=k // 2, name="conv")
    h = b.batchnorm(c, _u(co) + 2, _u(co), _u(co), np.abs(_u(co)) + 0.5, name="bn")
    names = ["conv", "bn"]
    feeds = {"x": _u(*xs)}
    if residual:
        r = b.input("r", c.type)
        h = b.add(h, r, name="res")
        names.append("res")
        feeds["r"] = _u(*c.type.shape)
    h = b.relu(h, name="act")
    b.output(b.maxpool2d(h, kernel=(2, 2), ceil_mode=ceil, name="pool"))
    g = b.build()
    region(g, *names, "act", "pool")
    return g, feeds


def _kernels(g: Graph, threshold: int) -> list[str]:
    exe = NumbaExecutable(g, parallel_threshold=threshold)
    return [s.kernel.split("[")[0] for s in exe.plan.kernels()]


@pytest.mark.parametrize(("xs", "co", "strides", "residual"), [
    ((4, 3, 32, 32), 16, (1, 1), False),    # 32 wide: blocks of 64 pixels (two rows), not NR
    ((4, 16, 16, 16), 32, (1, 1), True),    # residual added before the pool
    ((4, 32, 8, 8), 64, (1, 1), False),     # half-vector runs; 64 channels = 5 x MR + 4
    ((3, 5, 6, 10), 13, (1, 1), False),     # 10 wide: blocks of 160 pixels, across images
    ((2, 7, 12, 20), 29, (2, 2), True),     # stride-2 phase planes, 10 wide output
    ((1, 3, 64, 64), 8, (1, 1), False),     # one image split over several items
    ((2, 64, 8, 8), 16, (1, 1), False),     # 64 input channels: conv_shift, B in place
    ((1, 64, 14, 14), 200, (1, 1), True),   # conv_shift with packed B panels, residual row by row
    ((1, 64, 16, 16), 24, (2, 2), False),   # conv_shift from stride phases
    ((1, 70, 50, 50), 48, (1, 1), False),   # conv_shift in blocks of 17 rows, made 18 (whole pairs)
])
def test_convolutions_pool_their_tiles(xs: tuple, co: int, strides: tuple, residual: bool) -> None:
    g, feeds = _graph(xs, co, strides, residual)
    check(g, feeds, rtol=1e-4, atol=1e-4, thresholds=(SERIAL, PARALLEL))
    for th in (SERIAL, PARALLEL):
        kernels = _kernels(g, th)
        assert len(kernels) == 1 and kernels[0].startswith("conv_uk") and kernels[0].endswith("+relu+maxpool2x2")


def test_ceil_mode_on_an_even_output_pools_in_the_kernel() -> None:
    """On an even output ceil_mode makes no partial window: the same kernel pools it."""
    g, feeds = _graph((2, 3, 16, 16), 16, ceil=True)
    check(g, feeds, rtol=1e-4, atol=1e-4, thresholds=(SERIAL, PARALLEL))
    assert _kernels(g, PARALLEL)[0].endswith("+maxpool2x2")


@pytest.mark.parametrize(("xs", "co", "ceil", "k", "why"), [
    ((2, 3, 7, 9), 8, False, 3, "odd output height and width: the pool drops the last row and column"),
    ((2, 3, 7, 9), 8, True, 3, "odd output, ceil_mode: the last windows are partial"),
    ((2, 64, 7, 9), 8, False, 3, "conv_shift, odd output"),
    ((1, 3, 4, 300), 8, False, 3, "300 wide: the smallest block of two rows is too large"),
    ((2, 64, 8, 8), 16, False, 1, "1x1: conv_shift writes the output directly"),
])
def test_other_convolutions_pool_after_their_product(xs: tuple, co: int, ceil: bool, k: int, why: str) -> None:
    g, feeds = _graph(xs, co, ceil=ceil, k=k)
    check(g, feeds, rtol=1e-4, atol=1e-4, thresholds=(SERIAL, PARALLEL))
    kernels = _kernels(g, PARALLEL)
    assert len(kernels) == 2 and not kernels[0].endswith("maxpool2x2") and "maxpool" in kernels[1], why


def test_pooled_blocks_hold_whole_pairs_of_rows() -> None:
    for w_out in (2, 4, 8, 10, 16, 28, 32, 56, 112):
        unit = pool_block_pixels(w_out)
        assert unit % NR == 0 and unit % (2 * w_out) == 0
        for pixels in (2 * w_out, 4 * 2 * w_out * 3, 18 * w_out):
            pb, sb = pooled_blocks(NR, NR, w_out, pixels)
            assert pb % unit == 0 or pb == pixels
            assert sb % NR == 0 and (sb % unit == 0 or sb >= pb) and sb < pb + NR
    assert pool_block_pixels(300) > MAX_POOL_BLOCK_PIXELS


def test_fuse_pass_makes_the_pool_a_tail_and_the_cnn_matches() -> None:
    """`fuse` puts the pool in the conv region (the label ends in 'pool'); the model equals the reference."""
    from tensorsmith.bench.models import load_model

    m = load_model("cnn")
    g = run_pipeline(m.graph, "fuse")
    labels = [n.attrs["body"].name for n in g.nodes if n.op == "fused"]
    assert sum(label.endswith("_pool") for label in labels) == 2, labels
    check(g, m.inputs, rtol=1e-4, atol=1e-5)
    assert any(k.endswith("+maxpool2x2") for k in _kernels(g, PARALLEL))


@pytest.mark.parametrize("ci", [5, 64])
def test_a_region_of_only_a_conv_and_its_pool(ci: int) -> None:
    """No bias, no stages: the kernel pools the bare product (conv_pixels with 5 input channels, conv_shift with 64)."""
    b = GraphBuilder("bare")
    x = b.input("x", f32[2, ci, 12, 12])
    c = b.conv2d(x, _u(24, ci, 3, 3), pads=1, name="conv")
    b.output(b.maxpool2d(c, kernel=(2, 2), name="pool"))
    g = b.build()
    region(g, "conv", "pool")
    check(g, {"x": _u(2, ci, 12, 12)}, rtol=1e-4, atol=1e-4, thresholds=(SERIAL, PARALLEL))
    kernels = _kernels(g, PARALLEL)
    assert len(kernels) == 1 and kernels[0].endswith("+maxpool2x2"), kernels


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3), ci=st.sampled_from([1, 3, 8, 64, 70]), co=st.integers(1, 40), h=st.integers(3, 13),
       w=st.integers(3, 13), stride=st.sampled_from([1, 2]), residual=st.booleans())
def test_generated_conv_pool_regions_match_the_reference(n: int, ci: int, co: int, h: int, w: int, stride: int,
                                                         residual: bool) -> None:
    """Any shape: pooled in the kernel where it can be, after the product elsewhere, equal to the reference."""
    g, feeds = _graph((n, ci, h, w), co, (stride, stride), residual)
    check(g, feeds, rtol=1e-4, atol=1e-4, thresholds=(SERIAL, PARALLEL))
