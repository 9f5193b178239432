"""prune reports the measured speed-up of each layer it prunes beside the predicted one, when given a timer."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.ir import Graph, GraphBuilder, f32
from tensorsmith.passes import PassContext
from tensorsmith.passes.layer_timing import layer_graph
from tensorsmith.passes.pipeline import run_pipeline
from tensorsmith.runtime import graph_timer


def _mlp() -> Graph:
    rng = np.random.default_rng(0)
    b = GraphBuilder("mlp")
    x = b.input("x", f32[16, 128])
    h = b.relu(b.linear(x, rng.standard_normal((256, 128)).astype(np.float32), np.ones(256, np.float32), name="fc1"))
    b.output(b.linear(h, rng.standard_normal((64, 256)).astype(np.float32), name="fc2"))
    return b.build()


def _nonzero_timer(graph: Graph) -> float:
    """A stand-in timer: a layer costs one microsecond per 1000 nonzero weights (a perfect sparse kernel)."""
    (node,) = graph.nodes
    return 1e-6 * np.count_nonzero(node.inputs[1].data) / 1000


def test_layer_graph_is_the_layer_alone() -> None:
    g = _mlp()
    fc2 = g.nodes[2]
    alone = layer_graph(fc2, fc2.inputs[1])
    assert [v.name for v in alone.inputs] == [fc2.inputs[0].name] and alone.inputs[0] is not fc2.inputs[0]
    assert len(alone.nodes) == 1 and alone.nodes[0].op == "linear" and alone.nodes[0].inputs[1] is fc2.inputs[1]
    assert alone.outputs[0].type == fc2.outputs[0].type
    fc1 = g.nodes[0]
    assert layer_graph(fc1, fc1.inputs[1]).nodes[0].inputs[2] is fc1.inputs[2]  # the constant bias stays


def test_measured_speedup_per_layer_beside_the_prediction() -> None:
    ctx = PassContext(target="cpu-host", measure=_nonzero_timer)
    run_pipeline(_mlp(), "prune{pattern=block,block=32x32,sparsity=0.75,min_params=0}", ctx=ctx)
    (rec,) = ctx.records
    assert rec.stats["measured_speedup"] == pytest.approx(4.0, rel=0.02)
    assert "measured 4.00x on this machine" in rec.summary
    assert "measured on this machine (predicted on cpu-host): fc1 4.00x (" in rec.report
    assert "fc2 4.00x (" in rec.report


def test_without_a_target_only_the_measurement_and_without_a_timer_none() -> None:
    ctx = PassContext(measure=_nonzero_timer)
    run_pipeline(_mlp(), "prune{pattern=block,block=32x32,sparsity=0.5,min_params=0}", ctx=ctx)
    report = ctx.records[0].report
    assert "measured on this machine: fc1 2.00x, fc2 2.00x" in report
    plain = PassContext(target="cpu-host")
    run_pipeline(_mlp(), "prune{pattern=block,block=32x32,sparsity=0.5,min_params=0}", ctx=plain)
    assert "measured" not in plain.records[0].report
    assert "measured_speedup" not in plain.records[0].stats


def test_graph_timer_times_real_runs() -> None:
    ctx = PassContext(target="cpu-host", measure=graph_timer("reference", repeats=3, warmup=1))
    run_pipeline(_mlp(), "prune{pattern=block,block=32x32,sparsity=0.75,min_params=0}", ctx=ctx)
    assert ctx.records[0].stats["measured_speedup"] > 0
