"""Convolutions handing their results to each other in the blocked-channel layout (blocked.py, k_conv_blocked.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorsmith.backends.numba import k_microkernel
from tensorsmith.backends.numba.k_conv_blocked import blocked_shape, tile_epilogue
from tensorsmith.backends.numba.k_epilogue import ADD, CLIP, GELU, MUL, RELU
from tensorsmith.backends.numba.ukernel_epilogue_ir import EPI_AFFINE, EPI_CLIP, EPI_NONE, EPI_RELU
from tensorsmith.bench.models import load_model
from tensorsmith.ir import Graph, GraphBuilder, f32
from tensorsmith.passes import run_pipeline
from tensorsmith.runtime.numba_exec import NumbaExecutable

from .numba_check import PARALLEL, SERIAL, check

pytestmark = pytest.mark.skipif(not k_microkernel.AVAILABLE, reason="no FMA: convolutions go through BLAS")
RNG = np.random.default_rng(47)
NR = k_microkernel.NR
VW = k_microkernel.VW


def _u(*shape: int) -> np.ndarray:
    return RNG.uniform(-1, 1, shape).astype(np.float32)


def _block(b: GraphBuilder, h, co: int, k: int = 3, pads: int = 1, dil: int = 1, act: str = "relu",
           bn: bool = True, pool: bool = False, name: str = "c"):
    """conv (+ batchnorm) (+ activation) (+ 2x2 max pool)."""
    ci = h.type.shape[1]
    h = b.conv2d(h, _u(co, ci, k, k) / np.sqrt(ci * k * k), _u(co), pads=pads, dilations=(dil, dil), name=name)
    if bn:
        h = b.batchnorm(h, _u(co) + 2, _u(co), _u(co), np.abs(_u(co)) + 0.5, name=f"{name}.bn")
    if act == "relu":
        h = b.relu(h, name=f"{name}.relu")
    elif act == "clip":
        h = b.clip(h, min=0.0, max=0.5, name=f"{name}.clip")
    elif act == "gelu":
        h = b.gelu(h, name=f"{name}.gelu")
    if pool:
        h = b.maxpool2d(h, kernel=(2, 2), name=f"{name}.pool")
    return h


def _kernels(g: Graph, threshold: int = SERIAL) -> list[str]:
    exe = NumbaExecutable(g, parallel_threshold=threshold)
    return [s.kernel.split("[")[0].split("+")[0] for s in exe.plan.kernels()]


def _fused(g: Graph, mean: bool = True) -> Graph:
    return run_pipeline(g, "fuse" if mean else "fuse{mean=false}")


def _chain(xs: tuple, blocks: list[dict], head: str = "gap") -> tuple[Graph, dict]:
    """Input [xs] through conv blocks, then a global average pool + flatten (or a flatten alone)."""
    b = GraphBuilder("chain")
    h = b.input("x", f32[xs])
    for i, kw in enumerate(blocks):
        h = _block(b, h, name=f"c{i}", **kw)
    if head == "gap":
        h = b.op("global-avgpool", h, name="gap")
    b.output(h if head == "out" else b.flatten(h, axis=1, name="flat"))
    return b.build(), {"x": _u(*xs)}


@pytest.mark.parametrize(("xs", "blocks", "head", "expect"), [
    # the zoo CNN's shape: 32 -> 64 channels at 8 x 8 after 16 -> 32 at 16 x 16 with a pool
    ((4, 16, 16, 16), [dict(co=32, pool=True), dict(co=64)], "gap", ["conv_blocked", "conv_blocked",
                                                                     "global_avgpool_blocked"]),
    # a 7-wide row: micro-tiles of 4 + 3 pixels (the 3 through the scratch); 96 channels = 3 panels
    ((2, 8, 7, 7), [dict(co=32), dict(co=96, act="clip")], "gap", ["conv_blocked", "conv_blocked",
                                                                   "global_avgpool_blocked"]),
    # 5 x 5 kernels with padding 2 (a halo of 2), then a dilated 3 x 3 (padding 2), no batch norm
    ((1, 4, 12, 12), [dict(co=32, k=5, pads=2, bn=False), dict(co=32, dil=2, pads=2)], "gap",
     ["conv_blocked", "conv_blocked", "global_avgpool_blocked"]),
    # a pointwise layer between (halo 0), generic epilogue (gelu: stage by stage over each row)
    ((2, 32, 9, 10), [dict(co=32, act="gelu"), dict(co=64, k=1, pads=0), dict(co=32, act="none")], "gap",
     ["conv_blocked", "conv_blocked", "conv_blocked", "global_avgpool_blocked"]),
    # the last convolution's result goes to a flatten: copied back to NCHW once
    ((2, 16, 12, 12), [dict(co=32, pool=True), dict(co=32, pool=True)], "flat",
     ["conv_blocked", "conv_blocked", "blocked_to_nchw"]),
    # the last convolution's result is the graph's output: copied into a fresh array per run
    ((2, 16, 8, 8), [dict(co=32), dict(co=48)], "out", ["conv_blocked", "conv_blocked", "blocked_to_nchw"]),
    # pooled from blocks on both micro-kernels: 48 channels (one-block panels), then 64; rows of 14 and 10
    ((1, 8, 28, 20), [dict(co=48), dict(co=48, pool=True), dict(co=64, pool=True)], "gap",
     ["conv_blocked", "conv_blocked", "conv_blocked", "global_avgpool_blocked"]),
    # a 14-wide row (12 + 2) over rows of 28 pooled: an odd number of items per image
    ((1, 16, 28, 28), [dict(co=64, pool=True), dict(co=64)], "gap", ["conv_blocked", "conv_blocked",
                                                                     "global_avgpool_blocked"]),
])
@pytest.mark.parametrize("threshold", [SERIAL, PARALLEL])
@pytest.mark.parametrize("mean", [True, False])
def test_blocked_chains_match_the_reference(xs, blocks, head, expect, threshold, mean) -> None:
    """With the global average pool in the last convolution's region (`mean`; not after a pool, a region's one tail)
    the kernel averages its images and no global_avgpool_blocked runs; without, that kernel reads the product back."""
    g, feeds = _chain(xs, blocks, head)
    g = _fused(g, mean)  # unfused, a convolution's reader is its batch norm (or activation): nothing stays blocked
    kernels = _kernels(g, threshold)
    if mean and not blocks[-1].get("pool"):
        expect = [k for k in expect if k != "global_avgpool_blocked"]
    assert [k for k in kernels if k in ("conv_blocked", "global_avgpool_blocked", "blocked_to_nchw")] == expect
    check(g, feeds, rtol=1e-4, atol=1e-5, thresholds=(threshold,))
    stats = NumbaExecutable(g, parallel_threshold=threshold).stats
    if threshold == PARALLEL and stats["threads"] > 1 and xs[0] % stats["threads"] == 0:  # one image chain
        assert len(stats["image_chains"]) == 1 and len(stats["image_chains"][0]) == len(expect), stats["image_chains"]


def test_zoo_cnn_trunk_stays_blocked() -> None:
    m = load_model("cnn")
    g = _fused(m.graph)
    exe = NumbaExecutable(g)
    labels = [s.kernel.split("[")[0] for s in exe.plan.kernels()]
    assert [k.split("+")[0] for k in labels].count("conv_blocked") == 3  # 3 -> 16 -> 32 -> 64
    assert labels[2].endswith("+mean") and "global_avgpool_blocked" not in labels  # the last one averages
    check(g, m.inputs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("why", "conv"), [
    ("channels not a multiple of VW", dict(co=VW + 4)),
    ("strided", dict(co=2 * VW, strides=(2, 2))),
])
def test_a_mean_after_a_convolution_that_is_not_blocked_runs_after_it(why, conv) -> None:
    """A region ending in a global average pool whose convolution does not run blocked computes the product (NCHW),
    then the mean as its own kernel, and still equals the reference."""
    b = GraphBuilder("mean_after")
    x = b.input("x", f32[2, 8, 9, 9])
    co = conv["co"]
    h = b.conv2d(x, _u(co, 8, 3, 3) / 5, _u(co), pads=1, strides=conv.get("strides", (1, 1)), name="c")
    h = b.relu(h, name="r")
    b.output(b.flatten(b.op("global-avgpool", h, name="gap"), axis=1, name="flat"))
    g = _fused(b.build())
    assert [n.op for n in g.nodes][:1] == ["fused"], why
    kernels = _kernels(g)
    assert "conv_blocked" not in kernels and "global_avgpool" in kernels, why
    check(g, {"x": _u(2, 8, 9, 9)}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("why", "build"), [
    ("a graph output", lambda b, h: (b.output(h), b.output(b.relu(_block(b, h, 32, name="d"))))),
    ("read by an elementwise op", lambda b, h: b.output(b.add(_block(b, h, 32, name="d"), b.relu(h)))),
    ("readers padded differently", lambda b, h: b.output(b.add(_block(b, h, 32, name="d"),
                                                               _block(b, h, 32, k=5, pads=2, name="e")))),
    ("unequal padding", lambda b, h: b.output(_block(b, h, 32, k=3, pads=(0, 1, 2, 1), name="d"))),
])
def test_results_stay_nchw_unless_every_reader_takes_blocks(why, build) -> None:
    b = GraphBuilder("mixed")
    x = b.input("x", f32[2, 8, 8, 8])
    h = _block(b, x, 32, name="c")
    build(b, h)
    g = _fused(b.build())
    kernels = _kernels(g)
    assert kernels[0] == "conv_uk_pixels", why  # the first convolution writes NCHW
    check(g, {"x": _u(2, 8, 8, 8)}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("co", [VW, 3 * VW])
def test_one_block_panels_when_channels_are_not_a_multiple_of_nr(co) -> None:
    """16 or 48 output channels (AVX-512): panels of one block on the one-vector micro-kernel (MR_ONE pixels)."""
    g, feeds = _chain((2, 3, 30, 32), [dict(co=co, pool=True), dict(co=co), dict(co=32)])
    g = _fused(g)
    assert _kernels(g)[:3] == ["conv_blocked"] * 3
    check(g, feeds, rtol=1e-4, atol=1e-5)


def test_channel_counts_off_the_block_stay_nchw() -> None:
    g, feeds = _chain((2, 8, 8, 8), [dict(co=VW + VW // 2), dict(co=32)])
    g = _fused(g)
    assert _kernels(g)[0] == "conv_uk_pixels"
    check(g, feeds, rtol=1e-4, atol=1e-5)


def test_residual_and_strided_convolutions_stay_nchw() -> None:
    b = GraphBuilder("res")
    x = b.input("x", f32[2, 32, 8, 8])
    h = _block(b, x, 32, name="c")
    s = b.conv2d(h, _u(32, 32, 3, 3), _u(32), pads=1, strides=(2, 2), name="s")
    r = b.add(b.conv2d(h, _u(32, 32, 3, 3), _u(32), pads=1, name="r"), h, name="res")
    b.output(b.add(b.op("global-avgpool", s), b.op("global-avgpool", r)))
    g = _fused(b.build())
    assert "conv_blocked" not in _kernels(g)
    check(g, {"x": _u(2, 32, 8, 8)}, rtol=1e-4, atol=1e-5)


def test_tile_epilogue_modes() -> None:
    vecs = _u(3, 64)
    params = np.array([[0, 0], [0, 0], [0, 0], [-0.5, 0.5]], np.float32)
    assert tile_epilogue(np.array([ADD]), vecs, params, 64)[0] == EPI_AFFINE
    assert tile_epilogue(np.array([ADD, MUL, ADD, RELU]), vecs, params, 64)[0] == EPI_RELU
    mode, table = tile_epilogue(np.array([ADD, MUL, ADD, CLIP]), vecs, params, 64)
    assert mode == EPI_CLIP and (table[:, 6] == -0.5).all() and (table[:, 7] == 0.5).all()
    assert tile_epilogue(np.array([ADD, GELU]), vecs, params, 64)[0] == EPI_NONE
    assert tile_epilogue(np.array([], np.int64), vecs, params, 64)[0] == EPI_NONE
    assert tile_epilogue(np.array([RELU]), vecs, params, 64)[0] == EPI_RELU
    _, table = tile_epilogue(np.array([MUL, ADD]), vecs, params, 64)
    assert table.shape == (64 // NR, 8, NR) and (table[1, 0] == vecs[0, NR:2 * NR]).all()
    assert (table[:, 1] == 0).all() and (table[1, 3] == vecs[1, NR:2 * NR]).all()  # MUL: no addend; ADD: no factor
    _, table = tile_epilogue(np.array([ADD]), vecs, params, 3 * VW)  # one-block panels: the first VW columns
    assert table.shape == (3, 8, NR) and (table[1, 1, :VW] == vecs[0, VW:2 * VW]).all()


def test_blocked_shape() -> None:
    vw = k_microkernel.VW
    assert blocked_shape(2, 64, 8, 8, 1) == (2, -(-64 // vw), 10, 10, vw)


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3), ci=st.sampled_from([3, 16, 32]), h=st.integers(2, 13), w=st.integers(2, 13),
       co1=st.sampled_from([NR, 2 * NR, NR // 2]), co2=st.sampled_from([NR, 3 * NR // 2]),
       k=st.sampled_from([1, 3, 5]),
       act=st.sampled_from(["relu", "clip", "gelu", "none"]), bn=st.booleans(), pool=st.booleans(),
       pool2=st.booleans(), nan=st.booleans())
def test_generated_blocked_chains(n, ci, h, w, co1, co2, k, act, bn, pool, pool2, nan) -> None:
    """Any chain conv (+ bn) (+ act) (+ pool) -> conv (+ bn) (+ act) (+ pool) -> global-avgpool, fused, matches the
    reference, NaN inputs included (they propagate through the pool's max like the reference's). Pools run in the
    micro-kernel's registers (bias / batch norm / relu / clip) or over rows from a scratch (GELU)."""
    pool = pool and h % 2 == 0 and w % 2 == 0
    h2, w2 = (h // 2, w // 2) if pool else (h, w)
    pool2 = pool2 and h2 % 2 == 0 and w2 % 2 == 0
    g, feeds = _chain((n, ci, h, w), [dict(co=co1, k=k, pads=k // 2, act=act, bn=bn, pool=pool),
                                      dict(co=co2, k=k, pads=k // 2, act=act, bn=bn, pool=pool2)])
    if nan:
        feeds["x"].reshape(-1)[RNG.integers(0, feeds["x"].size)] = np.nan
    g = _fused(g)
    assert _kernels(g).count("conv_blocked") == 2
    check(g, feeds, rtol=1e-4, atol=1e-5)


def test_a_pair_feeding_a_residual_convolution_stays_nchw() -> None:
    """1x1 -> 3x3 -> 1x1 with a residual (a ResNet bottleneck): the last convolution cannot read blocks, so the pair
    before it stays NCHW rather than copy back once per block; with a flatten instead, the pair runs blocked."""
    b = GraphBuilder("bottleneck")
    x = b.input("x", f32[1, 64, 8, 8])
    h = _block(b, x, 32, k=1, pads=0, name="a")
    h = _block(b, h, 32, name="b")
    r = b.conv2d(h, _u(64, 32, 1, 1), _u(64), name="c")
    b.output(b.relu(b.add(r, x, name="res")))
    g = _fused(b.build())
    assert not any("blocked" in k for k in _kernels(g))
    check(g, {"x": _u(1, 64, 8, 8)}, rtol=1e-4, atol=1e-5)
    g2, feeds = _chain((1, 64, 8, 8), [dict(co=32, k=1, pads=0), dict(co=32)], head="flat")
    assert [k for k in _kernels(_fused(g2)) if "blocked" in k] == ["conv_blocked", "conv_blocked", "blocked_to_nchw"]


def test_a_blocked_graph_output_is_a_fresh_array_per_run() -> None:
    g, feeds = _chain((1, 16, 8, 8), [dict(co=32), dict(co=32)], head="out")
    exe = NumbaExecutable(_fused(g))
    first = exe.run(feeds)
    kept = {k: v.copy() for k, v in first.items()}
    exe.run({"x": _u(1, 16, 8, 8)})
    for k in kept:
        np.testing.assert_array_equal(first[k], kept[k])
