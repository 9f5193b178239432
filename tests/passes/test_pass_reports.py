"""Pass reports share one shape: a table row per pass with a short summary, counters, and details on demand."""

from __future__ import annotations

import numpy as np
from tensorsmith.ir import GraphBuilder, f32
from tensorsmith.passes import PassContext, run_pipeline
from tensorsmith.passes.report_table import SUMMARY_WIDTH, detail_lines, summarize


def _mlp():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    b = GraphBuilder("mlp")
    x = b.input("x", f32[2, 32])
    h = b.relu(b.linear(x, rng.standard_normal((64, 32)).astype(np.float32), np.zeros(64, np.float32), name="fc1"))
    h = b.mul(h, np.float32(1.0))
    b.tanh(h, name="unused")  # dead: left for dce
    b.output(b.linear(h, rng.standard_normal((8, 64)).astype(np.float32), np.zeros(8, np.float32), name="y"))
    return b.build()


PIPELINE = "dce,simplify,fold-constants,cse,prune{sparsity=0.5},quantize,fuse"


def test_every_pass_has_one_short_row_and_counters() -> None:
    ctx = PassContext()
    run_pipeline(_mlp(), PIPELINE, ctx=ctx)
    table = ctx.report().splitlines()
    assert table[0].split() == ["pass", "changed", "ms", "summary"]
    assert len(table) == 1 + len(PIPELINE.split(","))
    assert all(len(r.summary) <= SUMMARY_WIDTH and "\n" not in r.summary for r in ctx.records)
    by = {r.name.split("{")[0]: r for r in ctx.records}
    assert by["simplify"].stats["rewrites"] == 1 and by["cse"].stats["merged_nodes"] == 0
    assert by["dce"].stats["removed"] == 1 and by["dce"].stats["nodes_after"] == by["dce"].stats["nodes_before"] - 1
    assert by["prune"].stats["layers"] == 2 and by["prune"].summary.startswith("pruned 2 layer(s)")
    assert by["quantize"].stats["layers"] == 2
    assert by["quantize"].stats["weight_bytes_after"] * 4 == by["quantize"].stats["weight_bytes_before"]
    assert by["quantize"].stats["constant_bytes_after"] < by["quantize"].stats["constant_bytes_before"]
    assert by["fuse"].stats["regions"] >= 1


def test_details_on_demand_and_as_data() -> None:
    ctx = PassContext()
    run_pipeline(_mlp(), PIPELINE, ctx=ctx)
    short, full = ctx.report(), ctx.report(details=True)
    assert len(full.splitlines()) > len(short.splitlines())
    assert "max|dW|" not in short and "max|dW|" in full and "stats: " in full
    rows = ctx.stats()
    assert [r["pass"] for r in rows] == [r.name for r in ctx.records]
    assert rows[0]["removed"] == 1 and rows[0]["summary"] == "removed 1 dead node(s) (no tanh left)"


def test_summarize_cuts_at_clauses() -> None:
    assert summarize("folded 2 node(s)") == "folded 2 node(s)"
    long = "pruned 6 layer(s): " + "; ".join(f"layer{i} (2:4, density 0.50)" for i in range(20))
    assert summarize(long) == "pruned 6 layer(s): layer0 (2:4, density 0.50)"
    assert summarize("first line\nsecond") == "first line"
    assert len(summarize("x" * 500)) == SUMMARY_WIDTH
    assert detail_lines(long)[0] == "pruned 6 layer(s): layer0 (2:4, density 0.50)" and len(detail_lines(long)) == 20


def test_verify_each_accepts_a_pass_that_leaves_dead_nodes_for_dce() -> None:
    from tensorsmith.ir import Node, Value, lint
    from tensorsmith.passes import PASSES, Pass, PassResult, VerifyEach, register_pass

    @register_pass
    class LeaveDead(Pass):
        """Adds an unused tanh of the first input (a later dce removes it)."""

        name = "test-leave-dead"

        def run(self, graph, ctx):  # type: ignore[no-untyped-def]
            x = graph.inputs[0]
            graph.nodes.insert(0, Node("tanh", [x], {}, [Value(graph.fresh_name("left"), x.type)]))
            return PassResult(graph, True, "added 1 dead node", {"added": 1})

    ctx = PassContext(instruments=[VerifyEach()])
    try:
        mid = run_pipeline(_mlp(), "dce,test-leave-dead", ctx=ctx)
    finally:
        PASSES.pop(LeaveDead.name)
    assert [n.op for n in mid.nodes].count("tanh") == 1 and len(lint(mid)) == 1
    out = run_pipeline(mid, "dce", ctx=ctx)
    assert lint(out) == [] and ctx.stats()[-1]["removed"] == 1
