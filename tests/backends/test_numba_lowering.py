"""Numba lowering: rule coverage, clear errors, epilogue fusion, in-place views, whole models."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from tensorsmith.backends.numba import NUMBA_LOWERINGS, NumbaLoweringError, find_groups, lower
from tensorsmith.ir import Graph, GraphBuilder, Node, Value, f16, f32
from tensorsmith.runtime.numba_exec import NumbaExecutable

from ..strategies import random_graphs
from .numba_check import check

RNG = np.random.default_rng(13)
CORE_OPS = [
    "add", "sub", "mul", "div", "pow", "maximum", "minimum", "relu", "gelu", "sigmoid", "tanh", "erf", "sqrt", "exp",
    "log", "neg", "abs", "identity", "dropout", "clip", "cast", "linear", "matmul", "conv2d", "batchnorm",
    "layernorm", "softmax", "lrn", "maxpool2d", "avgpool2d", "global-avgpool", "reduce-sum", "reduce-mean",
    "reduce-max", "reshape", "transpose", "flatten", "concat", "slice", "gather", "quantize", "dequantize",
]


def _u(*shape: int) -> np.ndarray:
    return RNG.uniform(-1, 1, shape).astype(np.float32)


def test_every_core_op_has_a_lowering() -> None:
    assert [op for op in CORE_OPS if op not in NUMBA_LOWERINGS] == []


def test_an_op_without_a_rule_is_a_compile_time_error_naming_it() -> None:
    x = Value("x", f32[2])
    y = Value("y", f32[2])
    g = Graph("g", [x], [y], [Node("made-up-op", [x], {}, [y])])
    with pytest.raises(NumbaLoweringError, match="made-up-op.*%y = made-up-op"):
        lower(g)


def test_unsupported_dtype_names_the_node() -> None:
    b = GraphBuilder("half")
    x = b.input("x", f16[4])
    b.output(b.relu(x, name="act"))
    with pytest.raises(NumbaLoweringError, match="act.*f16"):
        NumbaExecutable(b.build())


def _mlp_block() -> tuple[Graph, dict[str, np.ndarray]]:
    b = GraphBuilder("block")
    x = b.input("x", f32[6, 16])
    h = b.linear(x, _u(32, 16), _u(32), name="fc")
    h = b.gelu(h, name="act")
    h = b.linear(h, _u(16, 32), _u(16), name="proj")
    h = b.add(h, x, name="res")
    b.output(b.relu(h, name="out"))
    return b.build(), {"x": _u(6, 16)}


def test_linear_bias_gelu_residual_relu_fuse_into_two_kernels() -> None:
    g, feeds = _mlp_block()
    exe = NumbaExecutable(g)
    kernels = [s for s in exe.plan.steps if not s.is_view]
    assert [s.name for s in kernels] == ["fc+act", "proj+res+out"]
    labels = [s.kernel.split("[")[0] for s in kernels]
    assert labels[0].endswith("+add+gelu") and labels[1].endswith("+add+residual+relu"), labels
    assert exe.stats["fused"] == [["fc", "act"], ["proj", "res", "out"]]
    prof = exe.profile(feeds, repeats=2)
    assert [p.name for p in prof.nodes] == ["fc+act", "proj+res+out"]
    assert all(p.seconds > 0 and p.bytes > 0 for p in prof.nodes)
    check(g, feeds, rtol=1e-5, atol=1e-5)


def test_no_fusion_through_a_value_with_two_users_or_a_graph_output() -> None:
    b = GraphBuilder("two")
    x = b.input("x", f32[4, 8])
    h = b.linear(x, _u(8, 8), name="fc")
    b.output(b.relu(h, name="a"), b.gelu(h, name="b"))
    g = b.build()
    assert find_groups(g) == {}
    b2 = GraphBuilder("out")
    x2 = b2.input("x", f32[4, 8])
    h2 = b2.linear(x2, _u(8, 8), name="fc")
    b2.output(h2, b2.relu(h2))
    assert find_groups(b2.build()) == {}


def test_conv_batchnorm_relu_residual_fuse() -> None:
    b = GraphBuilder("cnn")
    x = b.input("x", f32[2, 4, 9, 9])
    c = b.conv2d(x, _u(4, 4, 3, 3), _u(4), pads=1, name="conv")
    c = b.batchnorm(c, _u(4) + 2, _u(4), _u(4), np.abs(_u(4)) + 0.5, name="bn")
    c = b.add(x, c, name="skip")
    b.output(b.relu(c, name="act"))
    g = b.build()
    exe = NumbaExecutable(g)
    assert exe.stats["fused"] == [["conv", "bn", "skip", "act"]]
    check(g, {"x": _u(2, 4, 9, 9)}, rtol=1e-4, atol=1e-5)


def test_attention_reads_heads_in_place_and_writes_the_merged_layout() -> None:
    b = GraphBuilder("attn")
    x = b.input("x", f32[2, 8, 12])
    q = b.transpose(b.reshape(x, (2, 8, 3, 4)), (0, 2, 1, 3))
    k = b.transpose(b.reshape(b.relu(x), (2, 8, 3, 4)), (0, 2, 3, 1))
    s = b.softmax(b.mul(b.matmul(q, k, name="scores"), np.float32(0.5), name="scaled"))
    ctx = b.transpose(b.matmul(s, q, name="context"), (0, 2, 1, 3), name="context_t")
    b.output(b.reshape(ctx, (2, 8, 12)))
    g = b.build()
    exe = NumbaExecutable(g)
    kernels = [s.kernel for s in exe.plan.steps if not s.is_view]
    assert not any(k.startswith("copy_strided") for k in kernels), kernels
    assert ["scores", "scaled"] in exe.stats["fused"] and ["context", "context_t"] in exe.stats["fused"]
    check(g, {"x": _u(2, 8, 12)}, rtol=1e-5, atol=1e-5)


def test_a_strided_view_is_copied_once_when_a_kernel_needs_it_contiguous() -> None:
    b = GraphBuilder("copy")
    x = b.input("x", f32[3, 5])
    t = b.transpose(x, (1, 0))
    b.output(b.relu(t), b.neg(t))
    g = b.build()
    exe = NumbaExecutable(g)
    assert [s.kernel for s in exe.plan.steps if not s.is_view].count("copy_strided") == 1
    check(g, {"x": _u(3, 5)}, exact=True)


OPS = set(NUMBA_LOWERINGS)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=random_graphs(max_nodes=10, ops=OPS))
def test_random_graphs_match_the_reference(case: tuple[Graph, dict[str, np.ndarray]]) -> None:
    graph, feeds = case
    check(graph, feeds, rtol=2e-4, atol=2e-4)
