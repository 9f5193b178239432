"""Shifted-GEMM convolution (conv_uk) against the reference: work-item tiling, ragged C tiles, fused epilogues."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.backends.numba import k_microkernel
from tensorsmith.backends.numba.jit import cdiv
from tensorsmith.backends.numba.rules_conv import MAX_TILE_PIXELS, pixel_tiles, shift_tiles
from tensorsmith.ir import GraphBuilder, f32

from .numba_check import PARALLEL, SERIAL, check, region

pytestmark = pytest.mark.skipif(not k_microkernel.AVAILABLE, reason="no FMA: convolutions go through BLAS")
RNG = np.random.default_rng(23)
MR, NR = k_microkernel.MR, k_microkernel.NR


def _u(*shape: int) -> np.ndarray:
    return RNG.uniform(-1, 1, shape).astype(np.float32)


@pytest.mark.parametrize(("n", "co", "ho", "wq", "threads", "parallel", "pack"), [
    (1, 512, 7, 9, 2, True, True), (1, 128, 28, 30, 2, True, False), (1, 64, 112, 115, 2, True, True),
    (4, 16, 32, 34, 2, False, True), (3, 13, 5, 7, 4, True, False), (1, 1000, 1, 1, 2, True, True),
])
def test_shift_tiles_cover_the_output_and_balance(n: int, co: int, ho: int, wq: int, threads: int,
                                                  parallel: bool, pack: bool) -> None:
    rb, cb = shift_tiles(n, co, ho, wq, threads, parallel, pack)
    assert 1 <= rb <= ho and cb % MR == 0 and MR <= cb <= 22 * MR
    assert rb == ho or rb * wq <= MAX_TILE_PIXELS
    items = n * cdiv(ho, rb) * cdiv(co, cb)
    if parallel and n * ho * cdiv(co, MR) >= threads:
        assert items >= threads
    if not parallel:
        assert cdiv(co, cb) == cdiv(cdiv(co, MR), 22)  # serial: no channel split beyond the panel limit


def test_shift_tiles_keep_a_small_image_whole() -> None:
    # 7x7 output, 9 wide columns: 63 pixels fill two NR panels; splitting rows would cost a third
    rb, cb = shift_tiles(1, 512, 7, 9, 2, True, True)
    assert rb == 7 and cdiv(512, cb) % 2 == 0


@pytest.mark.parametrize(("pixels", "co", "threads", "parallel"), [
    (256, 64, 2, True), (4096, 16, 2, True), (12544, 64, 2, True), (1, 5, 2, True), (49, 300, 4, True),
    (1000, 24, 2, False),
])
def test_pixel_tiles_cover_the_output_in_whole_panels(pixels: int, co: int, threads: int, parallel: bool) -> None:
    pb, cb = pixel_tiles(pixels, co, threads, parallel)
    assert pb % NR == 0 and pb <= max(MAX_TILE_PIXELS, NR) and cb % MR == 0 and cb <= 22 * MR
    items = cdiv(pixels, pb) * cdiv(co, cb)
    if parallel and cdiv(pixels, NR) * cdiv(co, MR) >= threads:
        assert items >= threads
    if not parallel:
        assert cdiv(co, cb) == 1 and pb == min(cdiv(pixels, NR) * NR, MAX_TILE_PIXELS)


CASES = [  # x shape, w shape, strides, pads, dilations
    ((1, 3, 23, 19), (13, 3, 7, 7), (2, 2), (3, 3, 3, 3), (1, 1)),        # stem-like, merged K, odd everything
    ((2, 7, 11, 13), (29, 7, 7, 5), (1, 3), (2, 1, 0, 3), (1, 2)),        # merged K = 245, stride 3, dilation
    ((1, 11, 9, 9), (5, 11, 5, 5), (1, 1), (2, 2, 2, 2), (2, 2)),         # merged K = 275: two K blocks
    ((3, 67, 5, 7), (31, 67, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),        # B in place, ragged pixel panels
    ((1, 67, 7, 7), (197, 67, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),       # packed B, several channel blocks
    ((1, 71, 13, 11), (293, 71, 3, 3), (2, 2), (0, 1, 2, 1), (1, 1)),     # packed B, stride phases, 23+ panels
    ((2, 64, 3, 3), (17, 64, 3, 3), (1, 1), (0, 0, 0, 0), (1, 1)),        # a 1x1 output
    ((2, 19, 17, 17), (37, 19, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),      # pointwise, partial micro-tiles
    ((1, 23, 15, 13), (41, 23, 1, 1), (2, 3), (0, 0, 0, 0), (1, 1)),      # 1x1 strided: subsample + pointwise
    ((1, 5, 1, 31), (7, 5, 1, 3), (1, 1), (0, 1, 0, 1), (1, 1)),          # one input row
    ((4, 3, 10, 10), (16, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),        # last channel panel: exactly MR/3 rows
    ((1, 64, 6, 5), (20, 64, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),        # last channel panel: exactly 2*MR/3 rows
    ((3, 5, 3, 16), (13, 5, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),         # B in place: panels across images, ragged
    ((2, 3, 33, 64), (20, 3, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),        # B in place from stride phases (32 wide)
    ((1, 7, 12, 16), (9, 7, 3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),         # B in place, dilated taps
    ((2, 6, 8, 8), (11, 6, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),          # B in place from half vectors (AVX-512)
    ((1, 3, 5, 24), (14, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),         # half-vector runs across output rows
    ((3, 4, 5, 4), (7, 4, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),           # 4 wide: half vectors (AVX2) or packed
]


def _graph(xs: tuple, ws: tuple, strides: tuple, pads: tuple, dil: tuple):  # type: ignore[no-untyped-def]
    """conv + bias + batchnorm + residual + relu (one fused kernel), and the bare conv."""
    b = GraphBuilder("conv_tiles")
    x = b.input("x", f32[xs])
    co = ws[0]
    c = b.conv2d(x, _u(*ws), _u(co), strides=strides, pads=pads, dilations=dil, name="conv")
    r = b.input("r", c.type)
    bn = b.batchnorm(c, _u(co) + 2, _u(co), _u(co), np.abs(_u(co)) + 0.5, name="bn")
    y = b.relu(b.add(bn, r, name="res"), name="act")
    b.output(y, b.conv2d(x, _u(*ws), strides=strides, pads=pads, dilations=dil))
    g = b.build()
    region(g, "conv", "bn", "res", "act")
    return g, {"x": _u(*xs), "r": _u(*c.type.shape)}


@pytest.mark.parametrize(("xs", "ws", "strides", "pads", "dil"), CASES)
def test_conv_uk_matches_reference_serial_and_parallel(xs: tuple, ws: tuple, strides: tuple, pads: tuple,
                                                       dil: tuple) -> None:
    g, feeds = _graph(xs, ws, strides, pads, dil)
    check(g, feeds, rtol=1e-4, atol=1e-4, thresholds=(SERIAL, PARALLEL))


def test_grouped_conv_next_to_conv_uk() -> None:
    """Groups still go to im2col + BLAS or direct loops; a grouped conv feeding a conv_uk one agrees."""
    b = GraphBuilder("groups")
    x = b.input("x", f32[2, 6, 13, 11])
    h = b.conv2d(x, _u(6, 2, 3, 3), _u(6), pads=1, groups=3, strides=(2, 1))
    b.output(b.relu(b.conv2d(h, _u(11, 6, 3, 3), _u(11), pads=(1, 0, 2, 1), dilations=(2, 1))))
    check(b.build(), {"x": _u(2, 6, 13, 11)}, rtol=1e-4, atol=1e-4, thresholds=(SERIAL, PARALLEL))


@pytest.mark.parametrize(("xs", "ws", "own"), [
    ((4, 16, 16, 16), (32, 16, 3, 3), True),    # two images per item, one channel block: planes filled per item
    ((1, 16, 32, 32), (16, 16, 3, 3), False),   # one image split over the items: a fill region first
    ((2, 8, 8, 8), (300, 8, 3, 3), False),      # two channel blocks read each image
])
def test_pixel_items_that_own_whole_images_fill_their_planes_themselves(xs: tuple, ws: tuple, own: bool) -> None:
    """conv_pixels fills the phase planes inside its work items (one parallel region) when each item alone reads
    whole images; both that and the two-region form equal the reference."""
    p_img = xs[2] * xs[3]
    pb, cb = pixel_tiles(xs[0] * p_img, ws[0], 2, True)
    assert (cdiv(ws[0], cb) == 1 and pb % p_img == 0) == own
    g, feeds = _graph(xs, ws, (1, 1), (1, 1, 1, 1), (1, 1))
    check(g, feeds, rtol=1e-4, atol=1e-4, thresholds=(SERIAL, PARALLEL))
