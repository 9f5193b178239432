"""`bench.time_split` and ONNX Runtime's per-node profile: where a model's time goes on each side."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith import runtime
from tensorsmith.bench.peer_process import PeerNode, ort_node_times, profile_onnx_in_subprocess
from tensorsmith.bench.time_split import describe, ort_split, our_split, weight_product_flops
from tensorsmith.ir import GraphBuilder, f32, to_onnx

RNG = np.random.default_rng(3)


def _graph():  # type: ignore[no-untyped-def]
    """linear 8x64x32 (32,768 FLOPs), gelu, matmul by a constant [32, 16] (8,192), a product of two activations."""
    b = GraphBuilder("split")
    x = b.input("x", f32[8, 64])
    h = b.gelu(b.linear(x, RNG.standard_normal((32, 64)).astype(np.float32), name="fc"))
    y = b.matmul(h, b.const(RNG.standard_normal((32, 16)).astype(np.float32), "w2"), name="proj")
    b.output(b.matmul(y, b.transpose(y, perm=[1, 0]), name="gram"))
    return b.build()


def test_flops_count_only_products_with_weights() -> None:
    assert weight_product_flops(_graph()) == 2 * 8 * 32 * 64 + 2 * 8 * 16 * 32


def test_our_split_puts_fused_products_with_weights_apart() -> None:
    steps = [{"op": "linear+gelu", "seconds": 3e-3}, {"op": "qconv2d+relu", "seconds": 1e-3},
             {"op": "attention", "seconds": 2e-3}, {"op": "layernorm", "seconds": 0.5e-3}]
    s = our_split(steps)
    assert s.products_s == pytest.approx(4e-3) and s.rest_s == pytest.approx(2.5e-3)
    assert dict(s.rest_by_op) == {"attention": 2e-3, "layernorm": 0.5e-3}
    assert s.rate(8_000_000) == pytest.approx(2.0)
    line = describe("m, ours", s, 8_000_000)
    assert line.startswith("m, ours: 6.5 ms; products with weights 4 ms (2 GFLOP/s), the rest 2.5 ms")
    assert "(attention 2, layernorm 0.5)" in line


def test_ort_split_counts_products_reading_a_constant() -> None:
    nodes = [PeerNode("g", "Gemm", 4e-3, 3072), PeerNode("qk", "FusedMatMul", 1e-3, 0),
             PeerNode("ln", "SkipLayerNormalization", 0.5e-3, 6144)]
    s = ort_split(nodes)
    assert s.products_s == pytest.approx(4e-3) and dict(s.rest_by_op) == {"FusedMatMul": 1e-3,
                                                                          "SkipLayerNormalization": 0.5e-3}


def test_ort_node_times_take_the_median_after_the_warm_up_runs() -> None:
    def event(name: str, us: float) -> dict[str, object]:
        return {"cat": "Node", "name": f"{name}_kernel_time", "dur": us, "args": {"op_name": "Gemm"}}

    events = [event("a", 900.0), event("a", 10.0), event("a", 12.0), event("a", 11.0), event("b", 5.0),
              {"cat": "Session", "name": "model_run", "dur": 5000}, {"cat": "Node", "name": "a_fence_before"}]
    assert ort_node_times(events, 1, {"a": 64}) == [
        {"name": "a", "op_type": "Gemm", "median_s": pytest.approx(11e-6), "constant_bytes": 64},
        {"name": "b", "op_type": "Gemm", "median_s": pytest.approx(5e-6), "constant_bytes": 0}]


def test_onnx_runtime_profile_splits_a_real_model() -> None:
    pytest.importorskip("onnxruntime")
    g = _graph()
    feeds = {"x": RNG.standard_normal((8, 64)).astype(np.float32)}
    nodes = profile_onnx_in_subprocess(to_onnx(g).SerializeToString(), feeds, repeats=3)
    assert nodes and all(n.median_s > 0 for n in nodes)
    assert nodes == sorted(nodes, key=lambda n: -n.median_s)
    s = ort_split(nodes)
    assert s.products_s > 0  # the linear and the projection (Gemm or MatMul reading a weight)
    assert "MatMul" in s.rest_by_op or "FusedMatMul" in s.rest_by_op  # the product of two activations
    exe = runtime.compile(g, backend="numba")
    ours = our_split(exe.profile(feeds, 3).to_dicts())
    assert ours.products_s > 0 and ours.products_s + ours.rest_s > 0
