"""Declared sparsity against the arrays: SparsityInfo.check, the GEMM view, and verify's constant check."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.ir import Graph, GraphBuilder, QuantInfo, SparsityInfo, VerificationError, f32, verify
from tensorsmith.ir.sparsity import from_gemm_view, gemm_view

RNG = np.random.default_rng(0)


def _w(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) + 3.0).astype(np.float32)  # no accidental zeros


def _graph(w: np.ndarray, info: SparsityInfo, op: str = "linear") -> Graph:
    b = GraphBuilder("g")
    if op == "linear":
        x = b.input("x", f32[2, w.shape[1]])
        c = b.const(w, "w")
        y = b.linear(x, c, name="y")
    else:
        x = b.input("x", f32[2, w.shape[-2]])
        c = b.const(w, "w")
        y = b.matmul(x, c, name="y")
    c.type = c.type.replace(sparsity=info)
    b.output(y)
    return b.build(check=False)


def test_gemm_view_shapes_and_inverse() -> None:
    conv = _w(6, 2, 3, 3)
    assert gemm_view(conv, "conv2d").shape == (1, 6, 18)
    b = _w(3, 5, 7)  # matmul B [batch, K, N] -> [batch, N, K]
    v = gemm_view(b, "matmul")
    assert v.shape == (3, 7, 5) and v[1, 2, 4] == b[1, 4, 2]
    np.testing.assert_array_equal(from_gemm_view(v, b.shape, "matmul"), b)
    np.testing.assert_array_equal(from_gemm_view(gemm_view(conv, "conv2d"), conv.shape, "conv2d"), conv)


@pytest.mark.parametrize("info,mask", [
    (SparsityInfo("unstructured", 0.5), np.arange(32).reshape(4, 8) % 2 == 0),
    (SparsityInfo("block", 0.5, block=(2, 4)), np.kron(np.eye(2), np.ones((2, 4))) > 0),
    (SparsityInfo("nm", 0.5, n=2, m=4), np.tile([True, False, True, False], (4, 2))),
    (SparsityInfo("channel", 0.75), np.array([[True], [False], [True], [True]]).repeat(8, 1)),
])
def test_honoured_annotations_verify_and_broken_ones_fail(info: SparsityInfo, mask: np.ndarray) -> None:
    w = _w(4, 8)
    assert info.check(np.where(mask, w, 0)) is None
    verify(_graph(np.where(mask, w, 0).astype(np.float32), info))
    broken = w.copy()  # fully dense: more nonzero units than the density allows, or a full group of m
    with pytest.raises(VerificationError) as e:
        verify(_graph(broken, info))
    assert e.value.kind == "constant-type" and "@w" in str(e.value) and "breaks it" in str(e.value)


def test_block_must_tile_and_nm_group_is_named() -> None:
    assert "does not tile its 4x8" in SparsityInfo("block", 1.0, block=(3, 4)).check(_w(4, 8))
    w = np.where(np.tile([True, False, True, False], (4, 2)), _w(4, 8), 0)
    w[2, 5] = 1.0  # the second group of row 2 now has 3 nonzeros
    why = SparsityInfo("nm", 0.5, n=2, m=4).check(w)
    assert why is not None and "row 2, K 4..7 holds 3 nonzeros" in why
    assert "K=6 is not a multiple of 4" in SparsityInfo("nm", 0.5, n=2, m=4).check(_w(4, 6))


def test_matmul_constant_is_read_transposed() -> None:
    b = _w(8, 4)  # B [K=8, N=4]: 2:4 runs down each column of B (along K)
    b[1::2, :] = 0  # every other K row zero: 2 of each 4 along K -> fits 2:4 along K
    b[:, 0] = np.arange(1, 9)  # ... except column 0, dense along K
    info = SparsityInfo("nm", 0.5, n=2, m=4)
    assert info.check(b, "matmul") is not None and info.check(b.T) is not None
    b[1::2, 0] = 0
    assert info.check(b, "matmul") is None
    verify(_graph(b, info, op="matmul"))
    assert info.check(b) is not None  # read as a plain [8, 4] tensor the groups run along N


def test_quantized_constants_with_a_zero_point_are_not_checked() -> None:
    w = np.ones((4, 8), np.int8)
    q = QuantInfo((0.1,), (1,), 8)  # stored 1 is the real zero
    info = SparsityInfo("unstructured", 0.25)
    b = GraphBuilder("q")
    x = b.input("x", f32[2, 8])
    c = b.const(w, "w")
    c.type = c.type.replace(quant=q, sparsity=info)
    b.output(b.linear(x, b.dequantize(c, name="wd"), name="y"))
    assert info.check(w) is not None  # read raw, the ones break the annotation...
    verify(b.build(check=False))  # ...but with zero point 1 stored zeros are not real zeros: not checked
