"""Inputs are checked alike on every backend: dtype, shape, layout, lists, casts; one-input graphs take an array."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.ir import GraphBuilder, InputError, f32, i32, u8
from tensorsmith.ir.input_check import input_specs, matched_inputs

BACKENDS = ["reference", "numba"]


def _f32_graph():  # type: ignore[no-untyped-def]
    b = GraphBuilder("fg")
    x = b.input("x", f32[2, 3])
    b.output(b.relu(b.add(x, 1.0), name="y"))
    return b.build()


def _i32_graph():  # type: ignore[no-untyped-def]
    b = GraphBuilder("ig")
    x = b.input("x", i32[2])
    b.output(b.add(x, np.int32(1), name="y"))
    return b.build()


@pytest.fixture(scope="module", params=BACKENDS)
def exes(request):  # type: ignore[no-untyped-def]
    return runtime.compile(_f32_graph(), backend=request.param), runtime.compile(_i32_graph(), backend=request.param)


X = np.arange(6, dtype=np.float32).reshape(2, 3) - 2


def test_one_input_graph_takes_the_array_and_is_callable(exes) -> None:  # type: ignore[no-untyped-def]
    exe, _ = exes
    want = reference.run(exe.graph, {"x": X})["y"]
    np.testing.assert_array_equal(exe(X)["y"], want)
    np.testing.assert_array_equal(exe.run(X)["y"], want)
    np.testing.assert_array_equal(exe({"x": X})["y"], want)


@pytest.mark.parametrize("given", [X.astype(np.float64), X.astype(np.int32), X.astype(np.float16)])
@pytest.mark.parametrize("bare", [False, True], ids=["dict", "array"])
def test_a_wrong_dtype_names_input_given_and_expected(exes, given, bare) -> None:  # type: ignore[no-untyped-def]
    exe, _ = exes
    with pytest.raises(InputError, match=rf"graph fg: input 'x' has dtype {given.dtype}, expected f32 \(float32\);"
                                         r" .*cast=True"):
        exe.run(given if bare else {"x": given})


def test_cast_opt_in_converts_when_no_value_changes(exes) -> None:  # type: ignore[no-untyped-def]
    exe, iexe = exes
    want = reference.run(exe.graph, {"x": X})["y"]
    np.testing.assert_array_equal(exe.run(X.astype(np.float64), cast=True)["y"], want)
    np.testing.assert_array_equal(iexe.run(np.array([3, -4]), cast=True)["y"], np.array([4, -3], np.int32))
    np.testing.assert_array_equal(iexe.run(np.array([3.0, 5.0]), cast=True)["y"], np.array([4, 6], np.int32))


@pytest.mark.parametrize("given, why", [(np.array([2**33 + 5, 1]), r"8589934597 is outside i32's range"),
                                        (np.array([1.5, 2.0]), "fractions would be cut off"),
                                        (np.array([np.nan, 2.0]), "NaN or infinity"),
                                        (np.array([2**31, 0], np.uint64), "2147483648 is outside")])
def test_cast_that_changes_a_value_is_refused_even_when_asked(exes, given, why) -> None:  # type: ignore[no-untyped-def]
    _, iexe = exes
    with pytest.raises(InputError, match=rf"graph ig: input 'x': cannot cast {given.dtype} to i32 even with "
                                         rf"cast=True: {why}"):
        iexe.run(given, cast=True)


def test_float_overflow_is_refused() -> None:
    b = GraphBuilder("hg")
    b.output(b.relu(b.input("x", f32[1]), name="y"))
    with pytest.raises(InputError, match=r"1e\+300 overflows f32"):
        reference.run(b.build(), np.array([1e300]), cast=True)


def test_lists_are_converted_only_when_their_values_fit(exes) -> None:  # type: ignore[no-untyped-def]
    exe, iexe = exes
    want = reference.run(exe.graph, {"x": X})["y"]
    np.testing.assert_array_equal(exe.run(X.tolist())["y"], want)
    np.testing.assert_array_equal(iexe.run([1, 2])["y"], np.array([2, 3], np.int32))
    with pytest.raises(InputError, match=r"input 'x': a list of float64 values cannot become i32"):
        iexe.run([1.5, 2.0])
    with pytest.raises(InputError, match=r"input 'x': a list whose values do not fit i32: 8589934597 is outside"):
        iexe.run([2**33 + 5, 1])
    with pytest.raises(InputError, match=r"input 'x': a list of text values cannot become f32"):
        exe.run([["a"] * 3] * 2)
    with pytest.raises(InputError, match=r"input 'x': a list that is not a rectangular array"):
        exe.run([[1.0, 2.0, 3.0], [1.0]])


def test_shape_is_checked(exes) -> None:  # type: ignore[no-untyped-def]
    exe, _ = exes
    with pytest.raises(InputError, match=r"input 'x' has shape \[3, 2\], expected \[2, 3\]"):
        exe.run(X.reshape(3, 2))


def test_non_contiguous_inputs_are_copied(exes) -> None:  # type: ignore[no-untyped-def]
    exe, _ = exes
    xt = np.ascontiguousarray(X.T).T  # same values, Fortran order
    strided = np.repeat(X, 2, axis=1)[:, ::2]
    assert not xt.flags.c_contiguous and not strided.flags.c_contiguous
    want = reference.run(exe.graph, {"x": X})["y"]
    np.testing.assert_array_equal(exe.run(xt)["y"], want)
    np.testing.assert_array_equal(exe.run(strided)["y"], want)


def test_misaligned_and_read_only_inputs_run(exes) -> None:  # type: ignore[no-untyped-def]
    """A misaligned array is copied; a read-only one is read in place; both give the reference's result."""
    exe, _ = exes
    want = reference.run(exe.graph, {"x": X})["y"]
    raw = np.zeros(X.nbytes + 1, np.uint8)
    misaligned = raw[1:].view(np.float32).reshape(2, 3)
    misaligned[...] = X
    assert not misaligned.flags.aligned
    read_only = np.frombuffer(X.tobytes(), np.float32).reshape(2, 3)
    assert not read_only.flags.writeable
    for given in (X, misaligned, read_only, X):  # the first call fixes a step's entry point on the Numba backend
        np.testing.assert_array_equal(exe.run(given)["y"], want)
        np.testing.assert_array_equal(exe.run({"x": given})["y"], want)


def test_a_bare_array_needs_a_one_input_graph() -> None:
    b = GraphBuilder("two")
    b.output(b.add(b.input("a", f32[1]), b.input("b", f32[1]), name="y"))
    with pytest.raises(InputError, match=r"graph two: got one ndarray but the graph has 2 inputs \['a', 'b'\]"):
        runtime.compile(b.build()).run(np.ones(1, np.float32))


def test_unsigned_inputs_refuse_negative_values() -> None:
    b = GraphBuilder("ug")
    b.output(b.identity(b.input("x", u8[2]), name="y"))
    with pytest.raises(InputError, match=r"-1 is outside u8's range \[0, 255\]"):
        reference.run(b.build(), [-1, 3])
    np.testing.assert_array_equal(reference.run(b.build(), [255, 3])["y"], np.array([255, 3], np.uint8))


def test_profile_prints_a_table_and_converts_to_dicts(exes) -> None:  # type: ignore[no-untyped-def]
    exe, _ = exes
    prof = exe.profile(X, repeats=2)
    text = str(prof)
    assert text == prof.table() and text.splitlines()[0].split()[:3] == ["node", "op", "kernel"]
    rows = prof.to_dicts()
    assert rows and set(rows[0]) == {"name", "op", "kernel", "seconds", "bytes", "note"}
    assert {r["op"] for r in rows} & {"relu", "add", "fused"}
    d = prof.to_dict()
    assert d["repeats"] == 2 and d["total_seconds"] > 0 and d["nodes"] == rows


def test_the_common_case_matches_without_the_graph_and_anything_else_goes_to_the_full_check() -> None:
    """`matched_inputs` takes exactly the declared names, dtypes and shapes in C order, aligned; every other
    mapping is left to `check_inputs` (None), which copies, casts or names the fault."""
    b = GraphBuilder("two")
    x, y = b.input("x", f32[2, 3]), b.input("y", i32[3])
    b.output(b.add(x, b.op("cast", y, dtype="f32")))
    specs = input_specs(b.build())
    xa, ya = np.ones((2, 3), np.float32), np.arange(3, dtype=np.int32)
    got = matched_inputs(specs, {"y": ya, "x": xa})
    assert got is not None and got[0] is xa and got[1] is ya
    for bad in ({"x": xa}, {"x": xa, "y": ya, "z": ya}, {"x": xa, "z": ya}, {"x": xa.astype(np.float64), "y": ya},
                {"x": xa.T.copy().T, "y": ya}, {"x": np.ones((3, 2), np.float32), "y": ya}, {"x": xa.tolist(), "y": ya},
                (xa, ya)):
        assert matched_inputs(specs, bad) is None
