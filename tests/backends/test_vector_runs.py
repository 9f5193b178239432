"""Masked vector copies of short float32 runs, and the padded planes of stride-1 convolutions built on them."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from tensorsmith.backends.numba.k_conv_shift import padded_plane
from tensorsmith.backends.numba.vector_runs import VW, copy_run, zero_run


@njit(cache=False)
def _copy(dst, d_off, src, s_off, n):  # type: ignore[no-untyped-def]
    copy_run(dst, d_off, src, s_off, n)


@njit(cache=False)
def _zero(dst, d_off, n):  # type: ignore[no-untyped-def]
    zero_run(dst, d_off, n)


@pytest.mark.parametrize("n", range(3 * VW + 2))
def test_runs_of_every_length_touch_exactly_their_floats(n: int) -> None:
    src = np.arange(1, 4 * VW + 8, dtype=np.float32)
    dst = np.full(4 * VW + 8, -1.0, np.float32)
    _copy(dst, 3, src, 5, n)
    expect = np.full_like(dst, -1.0)
    expect[3:3 + n] = src[5:5 + n]
    np.testing.assert_array_equal(dst, expect)
    _zero(dst, 1, n)
    expect[1:1 + n] = 0.0
    np.testing.assert_array_equal(dst, expect)


def test_runs_refuse_other_dtypes() -> None:
    with pytest.raises(Exception, match="(?i)typing|no implementation|invalid use"):
        _zero(np.zeros(4, np.float64), 0, 2)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 40), pads=st.tuples(*[st.integers(0, 4)] * 4), strided=st.booleans())
def test_padded_plane_equals_numpy_pad_and_writes_nothing_else(h: int, w: int, pads: tuple[int, int, int, int],
                                                               strided: bool) -> None:
    pt, pl, pb, pr = pads
    rng = np.random.default_rng(h * 100 + w)
    x = rng.random((h, 2 * w), dtype=np.float32)[:, ::2] if strided else rng.random((h, w), dtype=np.float32)
    hq, wq = h + pt + pb, w + pl + pr
    buf = np.full(hq * wq + 2 * VW, 7.0, np.float32)
    padded_plane(x, buf[:hq * wq], pt, pl, hq, wq)
    np.testing.assert_array_equal(buf[:hq * wq].reshape(hq, wq), np.pad(x, ((pt, pb), (pl, pr))))
    assert (buf[hq * wq:] == 7.0).all()
