"""Numba backend against the reference: elementwise ops with hypothesis-drawn shapes and broadcasting."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .numba_check import check_op

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIMS = st.sampled_from([1, 2, 3, 5, 7, 8, 13, 17, 64])


@st.composite
def shapes(draw, min_rank: int = 0, max_rank: int = 4, max_elems: int = 4096, empty: bool = False):  # type: ignore[no-untyped-def]
    """A shape of sizes 1, primes and powers of two (0 sometimes when `empty`)."""
    rank = draw(st.integers(min_rank, max_rank))
    shape = []
    for _ in range(rank):
        d = draw(DIMS)
        while np.prod(shape + [d]) > max_elems and d > 1:
            d = 1
        shape.append(d)
    if empty and rank and draw(st.integers(0, 5)) == 0:
        shape[draw(st.integers(0, rank - 1))] = 0
    return tuple(shape)


@st.composite
def broadcast_pair(draw):  # type: ignore[no-untyped-def]
    """An output shape and two operand shapes that broadcast to it."""
    out = draw(shapes(1, 4))

    def operand() -> tuple[int, ...]:
        keep = draw(st.integers(0, len(out)))
        sub = list(out[len(out) - keep:])
        for i in range(len(sub)):
            if draw(st.booleans()):
                sub[i] = 1
        return tuple(sub)

    a, b = (out, operand()) if draw(st.booleans()) else (operand(), out)
    return a, b


RNG = np.random.default_rng(7)
FLOAT_UNARY = ["relu", "gelu", "sigmoid", "tanh", "erf", "sqrt", "exp", "log", "neg", "abs", "identity",
               "dropout"]


@pytest.mark.parametrize("op", FLOAT_UNARY)
@SETTINGS
@given(shape=shapes(empty=True))
def test_float_unary(op: str, shape: tuple[int, ...]) -> None:
    x = RNG.uniform(-6, 6, shape).astype(np.float32)
    if op in ("sqrt", "log"):
        x = np.abs(x) + 1e-3
    check_op(op, x, rtol=2e-5, atol=2e-6)


def test_gelu_tanh_and_clip() -> None:
    x = RNG.uniform(-8, 8, (3, 17)).astype(np.float32)
    check_op("gelu", x, approximate="tanh", rtol=2e-5, atol=2e-6)
    check_op("clip", x, min=-1.5, max=2.0, exact=True)
    check_op("clip", x, min=0.0, exact=True)


def test_special_values_follow_numpy() -> None:
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 100.0, -100.0], np.float32)
    for op in ("relu", "exp", "tanh", "erf", "sigmoid", "neg", "abs"):
        check_op(op, x, rtol=2e-5, atol=2e-6)
    y = np.array([1.0, np.nan, -np.inf, 2.0, 0.0, -1.0, 3.0, np.inf], np.float32)
    for op in ("maximum", "minimum", "add", "mul", "div"):
        check_op(op, x, y, rtol=1e-6)


@pytest.mark.parametrize("op", ["relu", "neg", "abs", "identity"])
@pytest.mark.parametrize("dtype", [np.int8, np.int32])
def test_integer_unary(op: str, dtype: type) -> None:
    info = np.iinfo(dtype)
    x = RNG.integers(max(info.min, -100), min(info.max, 100), (4, 7)).astype(dtype)
    check_op(op, x, exact=True)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_integer_clip_bounds_are_clamped_to_the_dtype(dtype: type) -> None:
    x = RNG.integers(0, 100, (5, 3)).astype(dtype)
    check_op("clip", x, min=-1e9, max=42.5, exact=True)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow", "maximum", "minimum"])
@SETTINGS
@given(pair=broadcast_pair(), const=st.sampled_from([(), (0,), (1,)]))
def test_float_binary_broadcasting(op: str, pair: tuple[tuple[int, ...], tuple[int, ...]],
                                   const: tuple[int, ...]) -> None:
    a = RNG.uniform(-3, 3, pair[0]).astype(np.float32)
    b = RNG.uniform(-3, 3, pair[1]).astype(np.float32)
    if op == "pow":
        a = np.abs(a) + 0.5
    if op == "div":
        b = np.where(np.abs(b) < 0.1, 0.5, b).astype(np.float32)
    check_op(op, a, b, consts=const, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow", "maximum", "minimum"])
@pytest.mark.parametrize("dtype", [np.int32, np.int8])
def test_integer_binary(op: str, dtype: type) -> None:
    a = RNG.integers(-50, 50, (3, 1, 5)).astype(dtype)
    b = RNG.integers(-7, 8, (4, 1)).astype(dtype)
    if op == "pow":
        a, b = np.abs(a) % 5, np.abs(b) % 4
    check_op(op, a, b, exact=True)


def test_integer_division_truncates_and_divides_by_zero_like_the_reference() -> None:
    a = np.array([7, -7, 7, -7, 0, 5, -9], np.int32)
    b = np.array([2, 2, -2, -2, 3, 0, 4], np.int32)
    check_op("div", a, b, exact=True)


@pytest.mark.parametrize(("src", "dst"), [(np.float32, "i32"), (np.float32, "i8"), (np.float32, "u8"),
                                          (np.float32, "bool"), (np.int32, "f32"), (np.int64, "i32"),
                                          (np.uint8, "f32"), (np.bool_, "f32"), (np.float32, "f32")])
def test_cast(src: type, dst: str) -> None:
    x = RNG.uniform(0, 100, (3, 11)) if src is not np.bool_ else RNG.integers(0, 2, (3, 11))
    x = x.astype(src)
    if dst == "bool":
        x[0, :3] = 0
    check_op("cast", x, dtype=dst, exact=True)


@SETTINGS
@given(shape=shapes(1, 3))
def test_scalar_constant_operands(shape: tuple[int, ...]) -> None:
    a = RNG.uniform(-3, 3, shape).astype(np.float32)
    check_op("mul", a, np.float32(0.125), consts=(1,), rtol=1e-6)
    check_op("sub", np.float32(1.0), a, consts=(0,), rtol=1e-6)


@pytest.mark.parametrize("mid", ["f16", "bf16"])
@pytest.mark.parametrize("src", [np.float32, np.int32])
def test_half_precision_storage_casts_round_like_numpy(mid: str, src: type) -> None:
    from tensorsmith.ir import GraphBuilder, dtype_from_numpy

    x = (RNG.uniform(-70000, 70000, (4, 9)) if src is np.float32 else RNG.integers(-3000, 3000, (4, 9))).astype(src)
    if src is np.float32:
        x[0, :5] = [np.nan, np.inf, -np.inf, 1e-8, 65519.0]
    b = GraphBuilder("half")
    xv = b.input("x", dtype_from_numpy(x.dtype)[x.shape])
    h = b.cast(xv, dtype=mid)
    t = b.transpose(h, (1, 0))
    b.output(b.cast(t, dtype="f32"), b.cast(h, dtype="i32") if src is np.int32 else b.relu(b.cast(h, dtype="f32")))
    from .numba_check import check

    check(b.build(), {"x": x}, exact=True)


@pytest.mark.parametrize("half", ["f16", "bf16"])
def test_half_precision_arithmetic_runs_its_reference_rule(half: str) -> None:
    """Arithmetic on f16 / bf16 (not stored, moved or cast) is one step running the node's reference rule: the
    reference backend's result bit for bit; the moves and casts around it stay Numba kernels."""
    from tensorsmith.backends import reference
    from tensorsmith.ir import GraphBuilder, f32
    from tensorsmith.runtime.numba_exec import NumbaExecutable

    b = GraphBuilder("h")
    x = b.input("x", f32[3, 4])
    h = b.cast(x, dtype=half)
    s = b.add(b.mul(h, h, name="square"), b.transpose(b.transpose(h, (1, 0)), (1, 0)), name="sum")
    b.output(b.cast(b.reduce_sum(s, axes=[1], name="rows"), dtype="f32"))
    g = b.build()
    feeds = {"x": np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32) * 3}
    exe = NumbaExecutable(g)
    kernels = [st.kernel for st in exe.plan.steps if st.kernel != "view"]
    assert {"reference_mul", "reference_add", "reference_reduce-sum"} <= set(kernels)
    assert any(k.startswith("cast") for k in kernels)
    name = g.outputs[0].name
    np.testing.assert_array_equal(exe.run(feeds)[name], reference.run(g, feeds)[name])
