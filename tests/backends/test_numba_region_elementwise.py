"""Elementwise fused regions on the Numba backend: one generated kernel per region, against the reference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from tensorsmith.backends import reference
from tensorsmith.backends.numba.region_cache import CACHE_ENV
from tensorsmith.backends.numba.rules_region_elementwise import collapse_axes
from tensorsmith.ir import Graph, GraphBuilder, dtype_from_numpy, f32
from tensorsmith.ir.regions import make_region
from tensorsmith.runtime.numba_exec import NumbaExecutable

from .numba_check import PARALLEL, SERIAL, check

SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIMS = st.sampled_from([1, 2, 3, 5, 8, 17, 64])
BINARY = ("add", "sub", "mul", "div", "maximum", "minimum")
EXACT_F32 = BINARY + ("relu", "neg", "abs", "clip", "identity", "sqrt")
APPROX_F32 = ("add", "sub", "mul", "div", "maximum", "minimum", "relu", "neg", "abs", "clip", "gelu", "gelu_tanh",
              "sigmoid", "tanh", "erf", "exp")
EXACT_INT = BINARY + ("relu", "neg", "abs", "clip", "identity")


@pytest.fixture(scope="class")
def scratch_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Generated kernels of random bodies go to a fresh folder, not the user's cache (fixed bodies do)."""
    old = os.environ.get(CACHE_ENV)
    folder = tmp_path_factory.mktemp("regions")
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if old is None:
        del os.environ[CACHE_ENV]
    else:
        os.environ[CACHE_ENV] = old


@dataclass
class Step:
    """One equation of a drawn chain: op, the other operand (array, 'self' or None), its side, attributes."""

    op: str
    other: np.ndarray | str | None = None
    constant: bool = False
    other_first: bool = False
    attrs: dict[str, Any] | None = None


def build(x: np.ndarray, steps: list[Step], fused: bool = True, every_value: bool = False) -> tuple[Graph, dict]:
    """The chain as a graph: one region over all of it (`fused`), or unfused returning every value."""
    b = GraphBuilder("chain")
    cur = b.input("x", dtype_from_numpy(x.dtype)[x.shape])
    feeds = {"x": x}
    values = [cur]
    for k, s in enumerate(steps):
        attrs = dict(s.attrs or {})
        if s.other is None:
            cur = b.op(s.op, cur, **attrs)
        else:
            if isinstance(s.other, str):
                other = cur
            elif s.constant:
                other = b.const(s.other, f"c{k}")
            else:
                other = b.input(f"y{k}", dtype_from_numpy(s.other.dtype)[s.other.shape])
                feeds[other.name] = s.other
            cur = b.op(s.op, *((other, cur) if s.other_first else (cur, other)), **attrs)
        values.append(cur)
    b.output(*(values if every_value else [cur]))
    g = b.build()
    if fused:
        make_region(g, list(g.nodes))
    return g, feeds


def values_of(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Test data: f32 in [-3, 3], integers spread over (part of) the dtype's range."""
    if dtype.kind == "f":
        return rng.uniform(-3, 3, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -(1 << 20)), min(info.max, 1 << 20), shape, endpoint=True).astype(dtype)


@st.composite
def chains(draw: Any, ops: tuple[str, ...], dtypes: tuple[Any, ...],
           guarded: bool = False) -> tuple[np.ndarray, list[Step]]:
    """An input x of rank 0..4 and 1..8 equations over it, their other operands broadcastable to x.

    `guarded`: divisions only by parameters away from zero (a chain value near zero would magnify
    the few-ulp differences of approximated ops).
    """
    rank = draw(st.integers(0, 4))
    shape: list[int] = []
    for _ in range(rank):
        d = draw(DIMS)
        shape.append(d if np.prod(shape + [d]) <= 2048 else 1)
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = values_of(rng, tuple(shape), dtype)
    steps = []
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(ops))
        if op == "gelu_tanh":
            steps.append(Step("gelu", attrs={"approximate": "tanh"}))
        elif op == "clip":
            lo, hi = sorted(draw(st.lists(st.sampled_from([-60.5, -3.0, -1.5, 0.0, 0.5, 2.0, 70.0]), min_size=2,
                                          max_size=2)))
            steps.append(Step("clip", attrs={"min": lo, "max": hi}))
        elif op == "exp":  # bounded so that errors stay relative to the chain's values
            steps += [Step("clip", attrs={"min": -4.0, "max": 4.0}), Step("exp")]
        elif op not in BINARY:
            steps.append(Step(op))
        else:
            kind = draw(st.sampled_from(["const", "input", "self"]))
            guard = guarded and op == "div"
            if kind == "self" and not guard:
                steps.append(Step(op, "self"))
                continue
            keep = draw(st.integers(0, rank))
            sub = tuple(1 if draw(st.booleans()) else d for d in shape[rank - keep:])
            other = values_of(rng, sub, dtype)
            if guard:
                other = np.where(np.abs(other) < 0.5, np.float32(0.5), other).astype(dtype)
            first = draw(st.booleans()) and not guard
            steps.append(Step(op, other, kind == "const", first))
    return x, steps


def kernel_steps(exe: NumbaExecutable) -> list[Any]:
    """The plan's kernel calls (views excluded)."""
    return [s for s in exe.plan.steps if not s.is_view]


def run_fused(x: np.ndarray, steps: list[Step], threshold: int = SERIAL) -> tuple[np.ndarray, np.ndarray, Graph]:
    """(Numba result, reference result, graph) of the chain as one region; asserts one kernel ran it."""
    g, feeds = build(x, steps)
    exe = NumbaExecutable(g, parallel_threshold=threshold)
    out = g.outputs[0].name
    if g.outputs[0].type.numel:
        ks = kernel_steps(exe)
        assert len(ks) == 1 and ks[0].op == "fused" and ks[0].kernel.startswith("region_"), [s.kernel for s in ks]
    got, want = exe.run(feeds)[out], reference.run(g, feeds)[out]
    assert got.dtype == want.dtype and got.shape == want.shape
    return got, want, g


@pytest.mark.usefixtures("scratch_cache")
class TestRandomChains:
    """Hypothesis-drawn chains (their kernels go to a scratch cache folder)."""

    @SETTINGS
    @given(chain=chains(EXACT_F32, (np.float32,)))
    def test_exactly_rounded_f32_chains_match_the_reference_bit_for_bit(self, chain: tuple[np.ndarray, Any]) -> None:
        with np.errstate(all="ignore"):
            got, want, _ = run_fused(*chain)
        assert_array_equal(got, want)


    @settings(SETTINGS, max_examples=6)
    @given(chain=chains(APPROX_F32, (np.float32,), guarded=True))
    def test_chains_with_transcendentals_match_the_reference_within_a_few_ulps(
            self, chain: tuple[np.ndarray, list[Step]]) -> None:
        x, steps = chain
        with np.errstate(all="ignore"):
            got, want, _ = run_fused(x, steps)
            g, feeds = build(x, steps, fused=False, every_value=True)
            inter = [np.abs(v[np.isfinite(v)]) for v in reference.run(g, feeds).values()]
        scale = max([1.0] + [float(v.max()) for v in inter if v.size])
        assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)


    @settings(SETTINGS, max_examples=8)
    @given(chain=chains(EXACT_INT, (np.int8, np.uint8, np.int32, np.int64)))
    def test_integer_chains_wrap_and_divide_like_the_reference(self, chain: tuple[np.ndarray, list[Step]]) -> None:
        with np.errstate(all="ignore"):
            got, want, _ = run_fused(*chain)
        assert_array_equal(got, want)


RNG = np.random.default_rng(3)


@pytest.mark.parametrize("threshold", [SERIAL, PARALLEL])
def test_log_sqrt_pow_and_casts_in_one_kernel(threshold: int) -> None:
    x = RNG.uniform(-3, 3, (3, 50, 70)).astype(np.float32)
    steps = [Step("abs"), Step("add", np.float32(0.25), True), Step("log"), Step("mul", RNG.uniform(0.5, 2, 70)
                                                                                 .astype(np.float32), True),
             Step("pow", RNG.uniform(0.5, 1.5, (50, 1)).astype(np.float32), False, True), Step("sqrt"),
             Step("cast", attrs={"dtype": "i32"}), Step("mul", np.int32(7), True), Step("cast", attrs={"dtype": "f32"}),
             Step("sigmoid")]
    got, want, _ = run_fused(x, steps, threshold)
    assert_allclose(got, want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize(("src", "dst"), [(np.float32, "i8"), (np.float32, "u8"), (np.float32, "bool"),
                                          (np.int32, "f32"), (np.int64, "i32"), (np.uint8, "f32"), (np.bool_, "f32"),
                                          (np.bool_, "i32")])
def test_casts_between_kernel_dtypes(src: type, dst: str) -> None:
    x = RNG.uniform(0, 100, (4, 9)) if src is not np.bool_ else RNG.integers(0, 2, (4, 9))
    x = x.astype(src)
    if dst == "bool":
        x[0, :3] = 0
    got, want, _ = run_fused(x, [Step("relu"), Step("cast", attrs={"dtype": dst})] if src is not np.bool_
                             else [Step("cast", attrs={"dtype": dst}), Step("neg")])
    assert_array_equal(got, want)


def test_special_values_follow_numpy() -> None:
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 100.0, -100.0], np.float32)
    y = np.array([1.0, np.nan, -np.inf, 2.0, 0.0, -1.0, 3.0, np.inf], np.float32)
    with np.errstate(all="ignore"):
        for op in ("neg", "abs", "add", "sub", "mul", "div"):
            got, want, _ = run_fused(x, [Step(op, y) if op in BINARY else Step(op)])
            assert_array_equal(got, want)
            assert_array_equal(np.signbit(got), np.signbit(want), err_msg=op)
        for op in ("relu", "maximum", "minimum", "clip"):
            step = Step(op, y, True) if op in BINARY else Step(op, attrs={"min": -1.0, "max": 5.0}) \
                if op == "clip" else Step(op)
            got, want, _ = run_fused(x, [step, Step("mul", y)])
            assert_array_equal(got, want)
        for op in ("exp", "tanh", "erf", "sigmoid", "gelu"):
            got, want, _ = run_fused(x, [Step(op), Step("add", y)])
            assert_allclose(got, want, rtol=2e-5, atol=2e-6, err_msg=op)


def test_views_are_read_in_place_through_their_strides() -> None:
    b = GraphBuilder("views")
    x = b.input("x", f32[6, 40, 8])
    t = b.transpose(x, (2, 1, 0))
    s = b.slice(t, starts=[1], ends=[7], axes=[0], steps=[1])
    c = b.const(RNG.uniform(-1, 1, (1, 40, 1)).astype(np.float32), "c")
    y = b.tanh(b.mul(b.add(s, c), np.float32(2.0)))
    b.output(y)
    g = b.build()
    make_region(g, [n for n in g.nodes if n.op not in ("transpose", "slice")])
    got = check(g, {"x": RNG.uniform(-2, 2, (6, 40, 8)).astype(np.float32)}, rtol=2e-5, atol=2e-6,
                thresholds=(SERIAL, PARALLEL))
    assert got[y.name].shape == (6, 40, 6)
    exe = NumbaExecutable(g)
    assert [s.op for s in kernel_steps(exe)] == ["fused"]


def test_large_region_on_the_parallel_twin() -> None:
    x = RNG.uniform(-3, 3, (128, 3072)).astype(np.float32)
    steps = [Step("mul", RNG.uniform(-1, 1, 3072).astype(np.float32), True), Step("add", np.float32(0.5), True),
             Step("gelu"), Step("mul", RNG.uniform(-2, 2, (128, 1)).astype(np.float32), True),
             Step("clip", attrs={"min": -3.0, "max": 3.0})]
    g, feeds = build(x, steps)
    check(g, feeds, rtol=2e-5, atol=2e-6, thresholds=(PARALLEL,))
    exe = NumbaExecutable(g, parallel_threshold=PARALLEL)
    assert exe.stats["kernels"] == 1 and exe.stats["parallel_kernels"] == 1


def test_bodies_without_a_kernel_rule_fall_back_to_one_kernel_per_equation() -> None:
    b = GraphBuilder("fallback")
    x = b.input("x", f32[4, 9])
    s = b.softmax(b.add(x, np.float32(1.0)))
    h = b.cast(b.cast(x, dtype="f16"), dtype="f32")
    b.output(s, b.relu(h))
    g = b.build()
    make_region(g, g.nodes[:2])
    make_region(g, g.nodes[1:])
    assert [n.op for n in g.nodes] == ["fused", "fused"]
    check(g, {"x": RNG.uniform(-9, 9, (4, 9)).astype(np.float32)}, rtol=2e-6, atol=1e-7)
    exe = NumbaExecutable(g)
    assert exe.stats["kernels"] == 5 and not any(s.kernel.startswith("region_") for s in kernel_steps(exe))


def test_empty_and_scalar_regions() -> None:
    for shape in [(0, 5), (), (1, 1, 1)]:
        x = RNG.uniform(-3, 3, shape).astype(np.float32)
        got, want, _ = run_fused(x, [Step("mul", np.float32(3.0), True), Step("relu")])
        assert_array_equal(got, want)


def test_collapse_merges_axes_contiguous_for_every_operand() -> None:
    shape = (2, 3, 1, 4)
    full, row, col = [12, 4, 4, 1], [0, 0, 0, 1], [3, 1, 0, 0]
    assert collapse_axes(shape, [full, full]) == ([24], [[1], [1]])
    assert collapse_axes(shape, [full, row]) == ([6, 4], [[4, 1], [0, 1]])
    assert collapse_axes(shape, [full, col]) == ([6, 4], [[4, 1], [1, 0]])
    assert collapse_axes((1, 1), [[0, 0]]) == ([], [[]])


SCRIPT = textwrap.dedent("""
    import json, numpy as np
    from tensorsmith.ir import GraphBuilder, f32
    from tensorsmith.ir.regions import make_region
    from tensorsmith.runtime.numba_exec import NumbaExecutable
    b = GraphBuilder("cached")
    x = b.input("x", f32[8, 16])
    y = b.clip(b.mul(b.gelu(b.add(b.mul(x, np.full(16, 0.5, np.float32)), np.float32(1.0))), x), min=-2.0, max=2.0)
    b.output(y)
    g = b.build()
    make_region(g, list(g.nodes))
    exe = NumbaExecutable(g)
    print(json.dumps({"hits": exe.stats["cache_hits"], "misses": exe.stats["cache_misses"],
                      "kernels": [s.kernel for s in exe.plan.steps if not s.is_view]}))
""")


def test_a_second_process_loads_the_generated_kernel_from_the_disk_cache(tmp_path: Path) -> None:
    env = dict(os.environ, **{CACHE_ENV: str(tmp_path)})
    runs = []
    for _ in range(2):
        p = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env=env)
        assert p.returncode == 0, p.stderr
        runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
    assert runs[0]["kernels"] == ["region_mul+add+gelu+mul+clip"]
    assert runs[0]["misses"] >= 1
    assert runs[1]["misses"] == 0 and runs[1]["hits"] >= 1, runs
    assert len(list(tmp_path.glob("region_*.py"))) == 1
