"""Numba lowering: clear errors, fused regions as one kernel, unfused graphs op by op, in-place views."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from tensorsmith.backends import reference
from tensorsmith.backends.numba import NUMBA_LOWERINGS, NumbaLoweringError, lower
from tensorsmith.ir import Graph, GraphBuilder, Node, Value, f32
from tensorsmith.runtime.numba_exec import NumbaExecutable

from ..strategies import random_graphs
from .numba_check import check, region

RNG = np.random.default_rng(13)


def _u(*shape: int) -> np.ndarray:
    return RNG.uniform(-1, 1, shape).astype(np.float32)


def test_an_op_without_a_rule_is_a_compile_time_error_naming_it() -> None:
    x = Value("x", f32[2])
    y = Value("y", f32[2])
    g = Graph("g", [x], [y], [Node("made-up-op", [x], {}, [y])])
    with pytest.raises(NumbaLoweringError, match="made-up-op.*%y = made-up-op"):
        lower(g)


def test_values_no_kernel_computes_run_their_reference_rule() -> None:
    """int4 values, and boolean reductions and scatters, are steps running the nodes' reference rules: every IR
    dtype lowers, with the reference backend's results."""
    b = GraphBuilder("narrow")
    x = b.input("x", f32[4, 3])
    narrow = b.cast(b.cast(x, dtype="i4", name="narrow"), dtype="f32", name="wide")
    flags = b.op("greater", x, np.float32(0.0))
    b.output(narrow, b.op("reduce-max", flags, axes=[1], keepdims=False, name="any"),
             b.op("scatter-elements", flags, np.zeros((1, 3), np.int64), np.ones((1, 3), bool), name="set"))
    g = b.build()
    exe = NumbaExecutable(g)
    kernels = {s.kernel for s in exe.plan.steps}
    assert {"reference_cast", "reference_reduce-max", "reference_scatter-elements"} <= kernels
    feeds = {"x": np.array([[9.7, -3.2, 0.4], [-0.1, -2.0, -9.0], [1.0, 2.0, 3.0], [-8.6, 0.0, 7.5]], np.float32)}
    want = reference.run(g, feeds)
    for name, got in exe.run(feeds).items():
        np.testing.assert_array_equal(got, want[name], err_msg=name)


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
    region(g, "fc", "act")
    region(g, "proj", "res", "out")
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


def test_an_unfused_graph_lowers_each_op_alone() -> None:
    g, feeds = _mlp_block()
    exe = NumbaExecutable(g)
    kernels = [s for s in exe.plan.steps if not s.is_view]
    assert exe.stats["fused"] == []
    assert [s.name for s in kernels] == ["fc", "act", "proj", "res", "out"]
    assert kernels[0].kernel.split("[")[0].endswith("+add")  # the linear's own bias stays in its kernel
    check(g, feeds, rtol=1e-5, atol=1e-5)


def test_conv_batchnorm_relu_residual_fuse() -> None:
    b = GraphBuilder("cnn")
    x = b.input("x", f32[2, 4, 9, 9])
    c = b.conv2d(x, _u(4, 4, 3, 3), _u(4), pads=1, name="conv")
    c = b.batchnorm(c, _u(4) + 2, _u(4), _u(4), np.abs(_u(4)) + 0.5, name="bn")
    c = b.add(x, c, name="skip")
    b.output(b.relu(c, name="act"))
    g = b.build()
    region(g, "conv", "bn", "skip", "act")
    exe = NumbaExecutable(g)
    assert exe.stats["fused"] == [["conv", "bn", "skip", "act"]]
    assert [s.name for s in exe.plan.steps if not s.is_view] == ["conv+bn+skip+act"]
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
    region(g, "scores", "scaled")
    region(g, "context", "context_t")
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
