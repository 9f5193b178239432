"""Masked vector copies of short float32 runs, and the padded planes of stride-1 convolutions built on them."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from tensorsmith.backends.numba.k_conv_shift import padded_plane
from tensorsmith.backends.numba.vector_runs import VECTOR_BYTES, VW, copy_run, fill_run, zero_run


@njit(cache=False)
def _copy(dst, d_off, src, s_off, n):  # type: ignore[no-untyped-def]
    copy_run(dst, d_off, src, s_off, n)


@njit(cache=False)
def _zero(dst, d_off, n):  # type: ignore[no-untyped-def]
    zero_run(dst, d_off, n)


@njit(cache=False)
def _fill(dst, d_off, value, n):  # type: ignore[no-untyped-def]
    fill_run(dst, d_off, value, n)


LENGTHS = [*range(2 * VW + 2), VECTOR_BYTES - 1, VECTOR_BYTES, VECTOR_BYTES + 1, 3 * VECTOR_BYTES + 5]


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
@pytest.mark.parametrize("n", LENGTHS)
def test_runs_of_every_length_touch_exactly_their_elements(dtype: type, n: int) -> None:
    size = 4 * VECTOR_BYTES + 8
    src = (np.arange(size) % 250 + 1).astype(dtype)
    dst = np.full(size, 255, dtype)
    _copy(dst, 3, src, 5, n)
    expect = np.full_like(dst, 255)
    expect[3:3 + n] = src[5:5 + n]
    np.testing.assert_array_equal(dst, expect)
    _zero(dst, 1, n)
    expect[1:1 + n] = 0
    np.testing.assert_array_equal(dst, expect)
    _fill(dst, 2, dtype(7), n)
    expect[2:2 + n] = 7
    np.testing.assert_array_equal(dst, expect)


def test_runs_refuse_other_dtypes() -> None:
    with pytest.raises(Exception, match="(?i)typing|no implementation|invalid use"):
        _zero(np.zeros(4, np.float64), 0, 2)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 40), pads=st.tuples(*[st.integers(0, 4)] * 4), strided=st.booleans(),
       at=st.integers(0, 5))
def test_padded_plane_equals_numpy_pad_and_writes_nothing_else(h: int, w: int, pads: tuple[int, int, int, int],
                                                               strided: bool, at: int) -> None:
    """Channel 2 of image 1 of an [N, C, H, W] input (contiguous, or every other column) padded at offset `at`."""
    pt, pl, pb, pr = pads
    rng = np.random.default_rng(h * 100 + w)
    x = rng.random((2, 3, h, 2 * w), dtype=np.float32)[..., ::2] if strided else rng.random((2, 3, h, w),
                                                                                              dtype=np.float32)
    hq, wq = h + pt + pb, w + pl + pr
    buf = np.full(at + hq * wq + 2 * VW, 7.0, np.float32)
    padded_plane(x, 1, 2, buf, at, pt, pl, hq, wq)
    np.testing.assert_array_equal(buf[at:at + hq * wq].reshape(hq, wq), np.pad(x[1, 2], ((pt, pb), (pl, pr))))
    assert (buf[:at] == 7.0).all() and (buf[at + hq * wq:] == 7.0).all()
