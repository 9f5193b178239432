"""Reference semantics of data-movement ops against hand-worked values and Python loops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from tensorsmith.ir import ExecutionError, GraphBuilder, f32, i64

from .refcase import covers, run_graph, run_op


@covers("reshape")
def test_reshape_keeps_row_major_order() -> None:
    x = np.arange(6, dtype=np.float32)
    assert_array_equal(run_op("reshape", x, shape=[2, 3]), [[0, 1, 2], [3, 4, 5]])
    assert_array_equal(run_op("reshape", x, shape=[3, -1]), [[0, 1], [2, 3], [4, 5]])
    assert_array_equal(run_op("reshape", x.reshape(2, 3), shape=[6]), [0, 1, 2, 3, 4, 5])
    assert run_op("reshape", np.float32([7]), shape=[]).shape == ()


@covers("transpose")
@pytest.mark.parametrize("perm", [(1, 0, 2), (2, 0, 1), (0, 2, 1), (2, 1, 0)])
def test_transpose_against_loop(perm: tuple[int, ...]) -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    got = run_op("transpose", x, perm=perm)
    assert got.shape == tuple(x.shape[p] for p in perm)
    for idx in itertools.product(*map(range, got.shape)):
        src = [0] * 3
        for i, p in enumerate(perm):
            src[p] = idx[i]
        assert got[idx] == x[tuple(src)]


@covers("transpose")
def test_transpose_hand_worked() -> None:
    assert_array_equal(run_op("transpose", np.float32([[1, 2, 3], [4, 5, 6]]), perm=[1, 0]),
                       [[1, 4], [2, 5], [3, 6]])


@covers("flatten")
@pytest.mark.parametrize("axis,shape", [(0, (1, 24)), (1, (2, 12)), (2, (6, 4)), (3, (24, 1)), (-1, (6, 4)),
                                        (-3, (1, 24))])
def test_flatten(axis: int, shape: tuple[int, int]) -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    got = run_op("flatten", x, axis=axis)
    assert got.shape == shape
    assert got.reshape(-1).tolist() == list(range(24))


@covers("concat")
def test_concat_hand_worked() -> None:
    a = np.float32([[1, 2], [3, 4]])
    b = np.float32([[5], [6]])
    c = np.float32([[7, 8, 9], [10, 11, 12]])
    assert_array_equal(run_op("concat", a, b, c, axis=1), [[1, 2, 5, 7, 8, 9], [3, 4, 6, 10, 11, 12]])
    assert_array_equal(run_op("concat", a, np.float32([[0, -1]]), axis=-2), [[1, 2], [3, 4], [0, -1]])
    assert_array_equal(run_op("concat", np.int32([1]), axis=0), [1])


SLICES_1D = [
    (0, 10, 1), (2, 8, 3), (8, -100, -3), (-100, 100, 2), (100, -100, -1), (-1, -11, -1), (-3, 2**31 - 1, 1),
    (5, 2, 1), (2, 2, 1), (9, 0, -4), (-2**31, 3, 1), (2**31 - 1, -2**31, -2),
]


@covers("slice")
@pytest.mark.parametrize("start,end,step", SLICES_1D)
def test_slice_1d_matches_python_lists(start: int, end: int, step: int) -> None:
    x = np.arange(10, dtype=np.float32)
    got = run_op("slice", x, starts=[start], ends=[end], axes=[0], steps=[step])
    assert got.tolist() == list(range(10))[start:end:step]


@covers("slice")
def test_slice_two_axes_negative_axis_and_step() -> None:
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    rows = x.tolist()
    got = run_op("slice", x, starts=[-1, 1], ends=[-100, 100], axes=[-1, 0], steps=[-2, 2])
    assert got.tolist() == [r[-1:-100:-2] for r in rows[1:100:2]]
    assert got.tolist() == [[9, 7, 5], [19, 17, 15]]


@covers("gather")
def test_gather_negative_indices_axis0() -> None:
    data = np.arange(12, dtype=np.float32).reshape(4, 3)
    idx = np.array([[-1, 0], [2, -4]], np.int64)
    got = run_op("gather", data, idx, axis=0)
    assert got.shape == (2, 2, 3)
    for i, j in itertools.product(range(2), range(2)):
        assert got[i, j].tolist() == data.tolist()[idx[i, j]]
    assert got[0, 0].tolist() == [9, 10, 11]


@covers("gather")
def test_gather_inner_axis_and_scalar_index() -> None:
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    got = run_op("gather", data, np.array([3, -3, 0], np.int32), axis=-1)
    assert got.shape == (2, 3, 3)
    for a, b in itertools.product(range(2), range(3)):
        assert got[a, b].tolist() == [data[a, b, 3], data[a, b, 1], data[a, b, 0]]
    assert_array_equal(run_op("gather", data, np.array(-1, np.int64), axis=1), data[:, 2, :])


@covers("gather")
def test_gather_out_of_range_names_the_node() -> None:
    b = GraphBuilder("lookup")
    table = b.input("table", f32[4, 2])
    ids = b.input("ids", i64[2])
    b.output(b.gather(table, ids, name="emb"))
    g = b.build()
    ok = run_graph(g, {"table": np.ones((4, 2), np.float32), "ids": np.array([-4, 3])})["emb"]
    assert ok.shape == (2, 2)
    with pytest.raises(ExecutionError, match=r"(?s)%emb = gather.*out of range"):
        run_graph(g, {"table": np.ones((4, 2), np.float32), "ids": np.array([0, 4])})
