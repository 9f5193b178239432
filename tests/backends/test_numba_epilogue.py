"""Fused matrix regions on the Numba backend: every epilogue stage, alone and chained, on every matrix kernel path.

Each case builds `fused` regions with make_region, checks that the region became one kernel whose label
names the expected stages (so the fused path really ran), and compares with the reference backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorsmith.backends.numba import k_microkernel
from tensorsmith.backends.numba.epilogue import StageKind, epilogue_from_region
from tensorsmith.ir import Graph, GraphBuilder, Value, f32, i32
from tensorsmith.runtime.numba_exec import NumbaExecutable

from .numba_check import PARALLEL, SERIAL, check, region

RNG = np.random.default_rng(29)


def _u(*shape: int) -> np.ndarray:
    return RNG.uniform(-1, 1, shape).astype(np.float32)


@dataclass
class Path:
    """One matrix kernel path: how to build its anchor on the graph's inputs, and its kernel label."""

    name: str
    inputs: dict[str, tuple[int, ...]]
    anchor: Callable[[GraphBuilder, dict[str, Value], str], Value]
    label: str
    channel_axis: int
    out_perm: tuple[int, ...] | None = None
    needs_microkernel: bool = False


def _conv(ws: tuple[int, ...], **attrs: object) -> Callable[[GraphBuilder, dict[str, Value], str], Value]:
    def build(b: GraphBuilder, ins: dict[str, Value], name: str) -> Value:
        w = ins["w"] if "w" in ins else _u(*ws)
        return b.conv2d(ins["x"], w, name=name, **attrs)  # type: ignore[arg-type]
    return build


PATHS = [
    Path("packed_gemm", {"x": (37, 29)}, lambda b, i, n: b.linear(i["x"], _u(45, 29), name=n), "gemm_uk", 1,
         needs_microkernel=True),
    Path("blas_gemm", {"x": (37, 29), "w": (45, 29)}, lambda b, i, n: b.linear(i["x"], i["w"], name=n), "gemm", 1),
    Path("bmm", {"a": (2, 3, 7, 5), "b": (2, 3, 5, 9)}, lambda b, i, n: b.matmul(i["a"], i["b"], name=n), "bmm", 3),
    Path("bmm_transposed", {"a": (2, 3, 7, 5), "b": (2, 3, 5, 9)}, lambda b, i, n: b.matmul(i["a"], i["b"], name=n),
         "bmm", 3, out_perm=(0, 2, 1, 3)),
    Path("conv_shift", {"x": (2, 64, 7, 6)}, _conv((13, 64, 3, 3), pads=1), "conv_uk", 1, needs_microkernel=True),
    Path("conv_pointwise", {"x": (2, 19, 5, 7)}, _conv((37, 19, 1, 1)), "conv_uk", 1, needs_microkernel=True),
    Path("conv_pixels", {"x": (2, 3, 9, 7)}, _conv((13, 3, 3, 3), pads=1, strides=(2, 1)), "conv_uk_im2col", 1,
         needs_microkernel=True),
    Path("conv_pixels_in_place", {"x": (3, 5, 3, 16)}, _conv((13, 5, 3, 3), pads=1), "conv_uk_pixels", 1,
         needs_microkernel=True),
    Path("conv_pixels_in_place_halves", {"x": (2, 5, 3, 24)}, _conv((13, 5, 3, 3), pads=1), "conv_uk_pixels", 1,
         needs_microkernel=True),
    Path("conv_gemm", {"x": (2, 5, 7, 6), "w": (11, 5, 3, 3)}, _conv((11, 5, 3, 3), pads=(1, 0, 1, 2)), "conv_gemm", 1),
    Path("conv_direct", {"x": (2, 4, 7, 6)}, _conv((6, 2, 3, 3), pads=1, groups=2), "conv_direct", 1),
]


def _vec(c: int, axis: int, rank: int) -> Callable[[float], np.ndarray]:
    shape = (c,) + (1,) * (rank - 1 - axis)
    return lambda shift: (_u(*shape) + np.float32(shift)).astype(np.float32)


STAGES: dict[str, tuple[str, Callable[..., Value]]] = {  # kind: (expected kernel label, builder step)
    "add": ("add", lambda b, cur, vec, res, n: b.op("add", cur, vec(0.0), name=n)),
    "sub": ("add", lambda b, cur, vec, res, n: b.op("sub", cur, vec(0.0), name=n)),
    "rsub": ("mul+add", lambda b, cur, vec, res, n: b.op("sub", vec(0.0), cur, name=n)),
    "mul": ("mul", lambda b, cur, vec, res, n: b.op("mul", vec(1.5), cur, name=n)),
    "div": ("div", lambda b, cur, vec, res, n: b.op("div", cur, vec(2.0), name=n)),
    "residual": ("residual", lambda b, cur, vec, res, n: b.op("add", res, cur, name=n)),
    "relu": ("relu", lambda b, cur, vec, res, n: b.op("relu", cur, name=n)),
    "gelu": ("gelu", lambda b, cur, vec, res, n: b.op("gelu", cur, name=n)),
    "gelu_tanh": ("gelu_tanh", lambda b, cur, vec, res, n: b.op("gelu", cur, approximate="tanh", name=n)),
    "sigmoid": ("sigmoid", lambda b, cur, vec, res, n: b.op("sigmoid", cur, name=n)),
    "tanh": ("tanh", lambda b, cur, vec, res, n: b.op("tanh", cur, name=n)),
    "clip": ("clip", lambda b, cur, vec, res, n: b.op("clip", cur, min=-0.2, max=0.3, name=n)),
    "batchnorm": ("mul+add", lambda b, cur, vec, res, n: b.batchnorm(
        cur, vec(2.0).ravel(), vec(0.0).ravel(), vec(0.0).ravel(), np.abs(vec(0.0)).ravel() + np.float32(0.5), name=n)),
}
CHAIN = ["add", "mul", "residual", "gelu_tanh", "sub", "rsub", "div", "sigmoid", "tanh", "clip", "gelu", "relu",
         "batchnorm"]


def _applies(kind: str, path: Path) -> bool:
    return kind != "batchnorm" or path.channel_axis == 1


def _build(path: Path, chains: list[list[str]]) -> tuple[Graph, dict[str, np.ndarray], list[str]]:
    """A graph with one region per chain (anchor + its stages [+ transpose]); returns the expected kernel labels."""
    b = GraphBuilder(path.name)
    ins = {name: b.input(name, f32[shape]) for name, shape in path.inputs.items()}
    feeds = {name: _u(*shape) for name, shape in path.inputs.items()}
    regions, labels, outputs = [], [], []
    for i, chain in enumerate(chains):
        cur = path.anchor(b, ins, f"anchor{i}")
        if i == 0:
            res = b.input("res", cur.type)
            feeds["res"] = _u(*cur.type.shape)
            vec = _vec(cur.type.shape[path.channel_axis], path.channel_axis, cur.type.rank)
        names = [cur.name]
        for j, kind in enumerate(chain):
            cur = STAGES[kind][1](b, cur, vec, res, f"s{i}_{j}")
            names.append(cur.name)
        if path.out_perm is not None:
            cur = b.transpose(cur, path.out_perm, name=f"t{i}")
            names.append(cur.name)
        outputs.append(cur)
        regions.append(names)
        parts = [STAGES[k][0] for k in chain] + (["transpose"] if path.out_perm is not None else [])
        labels.append("+".join([path.label] + parts))
    b.output(*outputs)
    g = b.build()
    for names in regions:
        region(g, *names)
    return g, feeds, labels


def _kernel_labels(graph: Graph) -> list[str]:
    exe = NumbaExecutable(graph, warmup=False)
    return [s.kernel.split("[")[0] for s in exe.plan.steps if not s.is_view]


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_every_stage_alone_and_chained_matches_the_reference(path: Path) -> None:
    if path.needs_microkernel and not k_microkernel.AVAILABLE:
        pytest.skip("no FMA: no micro-kernel path on this host")
    kinds = [k for k in STAGES if _applies(k, path)]
    chains = [[k] for k in kinds] + [[k for k in CHAIN if _applies(k, path)]]
    g, feeds, labels = _build(path, chains)
    assert _kernel_labels(g) == labels
    check(g, feeds, rtol=1e-4, atol=1e-4, thresholds=(SERIAL, PARALLEL))


KINDS = [k for k in STAGES if k != "batchnorm"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain=st.lists(st.sampled_from(KINDS), min_size=1, max_size=6),
       path=st.sampled_from([p for p in PATHS if p.name in ("packed_gemm", "bmm_transposed", "conv_pixels",
                                                            "conv_direct")]))
def test_random_stage_chains_match_the_reference(chain: list[str], path: Path) -> None:
    if path.needs_microkernel and not k_microkernel.AVAILABLE:
        return
    first_residual = chain.index("residual") if "residual" in chain else len(chain)
    chain = chain[:first_residual + 1] + [k for k in chain[first_residual + 1:] if k != "residual"]
    g, feeds, labels = _build(path, [chain])
    assert _kernel_labels(g) == labels
    check(g, feeds, rtol=1e-4, atol=1e-4)


def test_a_suffix_the_kernel_cannot_express_runs_after_it() -> None:
    b = GraphBuilder("suffix")
    x = b.input("x", f32[9, 20])
    h = b.relu(b.linear(x, _u(24, 20), _u(24), name="fc"), name="act")
    h = b.op("add", b.op("softmax", h, axis=-1, name="sm"), _u(24), name="shift")
    b.output(b.op("tanh", h, name="out"))
    g = b.build()
    node = region(g, "fc", "act", "sm", "shift", "out")
    anchor, epi, leftover = epilogue_from_region(node)
    assert anchor.op == "linear" and [s.kind for s in epi.stages] == [StageKind.RELU]
    assert [eq.name for eq in leftover] == ["sm", "shift", "out"]
    exe = NumbaExecutable(g)
    steps = [s for s in exe.plan.steps if not s.is_view]
    assert steps[0].name == "fc+act" and steps[0].kernel.split("[")[0].endswith("+add+relu")
    assert [s.name for s in steps[1:]] == ["sm", "shift", "out"]
    assert exe.stats["fused"] == [["fc", "act", "sm", "shift", "out"]]
    check(g, {"x": _u(9, 20)}, rtol=1e-5, atol=1e-6)


def test_a_value_read_twice_in_the_body_stops_the_epilogue() -> None:
    b = GraphBuilder("twice")
    x = b.input("x", f32[6, 10])
    h = b.linear(x, _u(12, 10), name="fc")
    b.output(b.op("add", b.op("relu", h, name="act"), h, name="sum"))
    g = b.build()
    node = region(g, "fc", "act", "sum")
    _, epi, leftover = epilogue_from_region(node)
    assert epi.stages == [] and [eq.name for eq in leftover] == ["act", "sum"]
    check(g, {"x": _u(6, 10)}, rtol=1e-5, atol=1e-6)


def test_integer_anchors_fall_back_to_equation_by_equation() -> None:
    b = GraphBuilder("ints")
    a = b.input("a", i32[2, 3, 7])
    h = b.matmul(a, RNG.integers(-5, 5, (7, 4)).astype(np.int32), name="mm")
    b.output(b.op("relu", b.op("add", h, np.arange(4, dtype=np.int32), name="shift"), name="act"))
    g = b.build()
    region(g, "mm", "shift", "act")
    exe = NumbaExecutable(g)
    assert [s.name for s in exe.plan.steps if not s.is_view] == ["mm", "shift", "act"]
    check(g, {"a": RNG.integers(-5, 5, (2, 3, 7)).astype(np.int32)}, exact=True)


def test_an_input_bias_is_added_before_the_rest_of_the_chain() -> None:
    b = GraphBuilder("input_bias")
    x = b.input("x", f32[5, 8])
    bias = b.input("bias", f32[6])
    b.output(b.op("relu", b.linear(x, _u(6, 8), bias, name="fc"), name="act"))
    g = b.build()
    region(g, "fc", "act")
    check(g, {"x": _u(5, 8), "bias": _u(6) - 0.5}, rtol=1e-5, atol=1e-6)


def test_epilogue_translation_of_sub_and_batchnorm() -> None:
    b = GraphBuilder("translate")
    x = b.input("x", f32[2, 4, 5, 5])
    c = b.conv2d(x, _u(3, 4, 3, 3), _u(3), pads=1, name="conv")
    c = b.op("sub", c, np.float32(0.25), name="minus")
    c = b.op("sub", np.array([1, 2, 3], np.float32).reshape(3, 1, 1), c, name="flip")
    c = b.batchnorm(c, np.ones(3, np.float32), np.zeros(3, np.float32), np.full(3, 2, np.float32),
                    np.full(3, 4, np.float32), epsilon=0.0, name="bn")
    b.output(b.op("clip", c, min=-1.0, max=2.5, name="clamp"))
    g = b.build()
    _, epi, leftover = epilogue_from_region(region(g, "conv", "minus", "flip", "bn", "clamp"))
    assert leftover == []
    assert [s.kind for s in epi.stages] == [StageKind.ADD, StageKind.MUL, StageKind.ADD, StageKind.MUL,
                                            StageKind.ADD, StageKind.CLIP]
    np.testing.assert_array_equal(epi.stages[0].vec, np.full(3, -0.25, np.float32))
    np.testing.assert_array_equal(epi.stages[1].vec, np.full(3, -1, np.float32))
    np.testing.assert_array_equal(epi.stages[2].vec, np.array([1, 2, 3], np.float32))
    np.testing.assert_allclose(epi.stages[3].vec, np.full(3, 0.5))
    np.testing.assert_allclose(epi.stages[4].vec, np.full(3, -1.0))
    np.testing.assert_array_equal(epi.params()[5], np.array([-1.0, 2.5], np.float32))
    assert epi.label() == "add+mul+add+mul+add+clip"
