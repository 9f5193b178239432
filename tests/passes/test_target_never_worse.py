"""A hardware-aware pipeline never makes its own target slower: for every zoo model and target, `estimate` after
prune{pattern=auto},quantize{precision=auto} (with that target as the pass target) is no higher than before."""

from __future__ import annotations

import pytest
from tensorsmith.backends.cost import builtin_names, estimate
from tensorsmith.bench.models import load_model
from tensorsmith.passes import PassContext, run_pipeline

MODELS = ("mlp", "cnn", "transformer-block", "bert-base-layer", "mlp-digits", "cnn-digits")
PIPELINE = "prune{pattern=auto},quantize{precision=auto}"


@pytest.mark.parametrize("name", MODELS)
def test_prune_and_quantize_for_a_target_never_raise_its_estimate(name: str) -> None:
    if name.endswith("-digits"):
        pytest.importorskip("sklearn")
    graph = load_model(name).graph
    worse = []
    for target in builtin_names():
        before = estimate(graph, target).total.latency_s
        ctx = PassContext(target=target)
        after_graph = run_pipeline(graph, PIPELINE, ctx=ctx)
        after = estimate(after_graph, target).total.latency_s
        if after > before:
            worse.append(f"{target}: {before * 1e6:.2f} -> {after * 1e6:.2f} us\n{ctx.report()}")
    assert not worse, f"{name} got slower on its own target:\n" + "\n".join(worse)


def test_a_layer_the_target_would_run_slower_quantized_stays_f32() -> None:
    """Weight-only half precision adds a widening cast per layer: on npu-edge the mlp stays f32, and says why."""
    graph = load_model("mlp").graph
    ctx = PassContext(target="npu-edge")
    out = run_pipeline(graph, "quantize{precision=auto}", ctx=ctx)
    assert estimate(out, "npu-edge").total.latency_s <= estimate(graph, "npu-edge").total.latency_s
    assert [n.op for n in out.nodes] == [n.op for n in graph.nodes]
    assert "kept for npu-edge" in ctx.report(details=True)
