"""Reference conv2d and pooling against explicit loops over output pixels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from .refcase import covers, run_op

RNG = np.random.default_rng(2)


def _conv_loop(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides: tuple[int, int],
               pads: tuple[int, int, int, int], dil: tuple[int, int], groups: int) -> np.ndarray:
    n_, c_, h_, w_ = x.shape
    co_, cg, kh, kw = w.shape
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = strides, pads, dil
    ho = (h_ + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (w_ + pl + pr - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n_, co_, ho, wo))
    per_group = co_ // groups
    for n, co, oh, ow in itertools.product(range(n_), range(co_), range(ho), range(wo)):
        acc = float(b[co]) if b is not None else 0.0
        g = co // per_group
        for ci, i, j in itertools.product(range(cg), range(kh), range(kw)):
            h, v = oh * sh - pt + i * dh, ow * sw - pl + j * dw
            if 0 <= h < h_ and 0 <= v < w_:
                acc += float(x[n, g * cg + ci, h, v]) * float(w[co, ci, i, j])
        out[n, co, oh, ow] = acc
    return out


CONV_CASES = {
    "plain": ((1, 2, 5, 5), (3, 2, 3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, False),
    "stride": ((2, 2, 7, 6), (3, 2, 3, 2), (2, 3), (0, 0, 0, 0), (1, 1), 1, True),
    "asym-pads": ((1, 3, 4, 5), (2, 3, 3, 3), (1, 1), (1, 0, 2, 1), (1, 1), 1, True),
    "dilation": ((1, 2, 7, 7), (2, 2, 3, 2), (1, 2), (1, 1, 1, 1), (2, 3), 1, False),
    "groups": ((1, 4, 5, 5), (6, 2, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2, True),
    "depthwise": ((2, 3, 5, 4), (3, 1, 3, 3), (2, 1), (1, 1, 0, 1), (1, 1), 3, True),
    "depth-multiplier": ((1, 2, 4, 4), (4, 1, 2, 2), (1, 1), (0, 1, 0, 1), (2, 1), 2, False),
    "pointwise": ((1, 5, 3, 3), (4, 5, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, True),
}


@covers("conv2d")
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_against_loop(case: str) -> None:
    xs, ws, strides, pads, dil, groups, has_bias = CONV_CASES[case]
    x = RNG.uniform(-1, 1, xs).astype(np.float32)
    w = RNG.uniform(-1, 1, ws).astype(np.float32)
    b = RNG.uniform(-1, 1, ws[0]).astype(np.float32) if has_bias else None
    args = (x, w, b) if b is not None else (x, w)
    got = run_op("conv2d", *args, strides=strides, pads=pads, dilations=dil, groups=groups)
    assert_allclose(got, _conv_loop(x, w, b, strides, pads, dil, groups), rtol=1e-5, atol=1e-5)


@covers("conv2d")
def test_conv2d_hand_worked() -> None:
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 2, 2), np.float32)
    assert_array_equal(run_op("conv2d", x, w), [[[[8, 12], [20, 24]]]])
    padded = run_op("conv2d", x, w, np.float32([1]), pads=(1, 1, 0, 0), strides=(2, 2))
    assert_array_equal(padded, [[[[1, 4], [10, 25]]]])


def _window_starts(size: int, k: int, s: int, lo: int, hi: int, d: int, ceil: bool) -> list[int]:
    """Window starts in padded coordinates; ceil mode adds a partial last window that starts in
    the input or the left padding."""
    span, total = d * (k - 1) + 1, size + lo + hi
    if not ceil:
        return [t for t in range(0, total, s) if t + span <= total]
    starts, t = [], 0
    while t < size + lo:
        starts.append(t)
        if t + span >= total:
            break
        t += s
    return starts


def _pool_loop(x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int], pads: tuple[int, int, int, int],
               dil: tuple[int, int], ceil: bool, mode: str, count_include_pad: bool = False) -> np.ndarray:
    n_, c_, h_, w_ = x.shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = kernel, strides, pads, dil
    rows = _window_starts(h_, kh, sh, pt, pb, dh, ceil)
    cols = _window_starts(w_, kw, sw, pl, pr, dw, ceil)
    out = np.zeros((n_, c_, len(rows), len(cols)))
    for n, c, (oh, t), (ow, u) in itertools.product(range(n_), range(c_), enumerate(rows), enumerate(cols)):
        real, padded = [], 0
        for i, j in itertools.product(range(kh), range(kw)):
            h, v = t - pt + i * dh, u - pl + j * dw
            if 0 <= h < h_ and 0 <= v < w_:
                real.append(float(x[n, c, h, v]))
            elif -pt <= h < h_ + pb and -pl <= v < w_ + pr:
                padded += 1  # a padding cell; cells past the padding (ceil mode) never count
        assert real, "every window must hold an input cell"
        if mode == "max":
            out[n, c, oh, ow] = max(real)
        else:
            out[n, c, oh, ow] = sum(real) / (len(real) + (padded if count_include_pad else 0))
    return out


POOL_CASES = {
    "k2s2": ((1, 2, 6, 6), (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), False),
    "k3s1-pad1": ((2, 1, 5, 4), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), False),
    "k3s2-ceil": ((1, 2, 6, 7), (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), True),
    "asym-pad-ceil": ((1, 1, 5, 6), (3, 2), (2, 3), (1, 0, 0, 1), (1, 1), True),
    "dilated": ((1, 2, 7, 7), (2, 3), (1, 2), (1, 1, 1, 1), (2, 2), False),
    "dilated-ceil": ((1, 1, 8, 5), (2, 2), (3, 2), (0, 1, 1, 0), (2, 1), True),
    "k1s3": ((1, 1, 5, 5), (1, 1), (3, 3), (0, 0, 0, 0), (1, 1), True),
}


@covers("maxpool2d", "avgpool2d")
@pytest.mark.parametrize("case", list(POOL_CASES))
def test_pools_against_loop(case: str) -> None:
    xs, k, s, pads, dil, ceil = POOL_CASES[case]
    x = RNG.uniform(-3, -1, xs).astype(np.float32)  # all negative: zero padding must never win a max
    attrs = dict(kernel=k, strides=s, pads=pads, dilations=dil, ceil_mode=ceil)
    assert_array_equal(run_op("maxpool2d", x, **attrs), _pool_loop(x, k, s, pads, dil, ceil, "max"))
    for include in (False, True):
        got = run_op("avgpool2d", x, count_include_pad=include, **attrs)
        assert_allclose(got, _pool_loop(x, k, s, pads, dil, ceil, "avg", include), rtol=1e-6)


@covers("maxpool2d", "avgpool2d")
def test_pools_hand_worked_ceil_mode() -> None:
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    attrs = dict(kernel=(2, 2), strides=(2, 2), ceil_mode=True)
    assert_array_equal(run_op("maxpool2d", x, **attrs)[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    want = [[3, 5, 6.5], [13, 15, 16.5], [20.5, 22.5, 24]]
    assert_array_equal(run_op("avgpool2d", x, **attrs)[0, 0], want)
    # cells past the padding in ceil mode are not padding: count_include_pad changes nothing here
    assert_array_equal(run_op("avgpool2d", x, count_include_pad=True, **attrs)[0, 0], want)
    assert_array_equal(run_op("maxpool2d", x, kernel=(2, 2), strides=(2, 2))[0, 0], [[6, 8], [16, 18]])


@covers("avgpool2d", "maxpool2d")
def test_pools_hand_worked_padding() -> None:
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    attrs = dict(kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1))
    assert_allclose(run_op("avgpool2d", x, **attrs)[0, 0], [[2, 3], [5, 6]])
    assert_allclose(run_op("avgpool2d", x, count_include_pad=True, **attrs)[0, 0],
                    [[8 / 9, 12 / 9], [20 / 9, 24 / 9]], rtol=1e-6)
    neg = -1 - x
    assert_array_equal(run_op("maxpool2d", neg, kernel=(2, 2), pads=(1, 1, 1, 1))[0, 0],
                       [[-1, -1, -2, -3], [-1, -1, -2, -3], [-4, -4, -5, -6], [-7, -7, -8, -9]])
