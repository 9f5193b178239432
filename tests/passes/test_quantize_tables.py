"""`quantize{ops=...+gather}`: constant lookup tables stored int8 per row, within half a row scale of f32."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.ir import GraphBuilder, f32, i64
from tensorsmith.passes import PassContext, run_pipeline
from tensorsmith.passes.quantize import Quantize
from tensorsmith.passes.quantize_tables import quantize_rows

TABLES = "quantize{ops=linear+gather}"


def embedding(rows: int = 50, dim: int = 16, n: int = 12, seed: int = 0, axis: int = 0):  # type: ignore[no-untyped-def]
    """ids -> gather(table) -> linear; the table's rows span four orders of magnitude, one row is zero."""
    rng = np.random.default_rng(seed)
    table = (rng.standard_normal((rows, dim)) * 10.0 ** rng.uniform(-3, 1, (rows, 1))).astype(np.float32)
    table[7] = 0.0
    b = GraphBuilder("embed")
    ids = b.input("ids", i64[n])
    tok = b.gather(b.const(table, "emb"), ids, axis=axis, name="tok")
    w = rng.standard_normal((4, tok.type.shape[-1])).astype(np.float32)
    b.output(b.linear(tok, b.const(w, "fc.weight"), name="fc"), tok)
    feeds = {"ids": rng.integers(0, rows if axis == 0 else dim, n).astype(np.int64)}
    feeds["ids"][0] = 7
    return b.build(), table, feeds


def test_every_gathered_element_moves_by_at_most_half_its_row_scale() -> None:
    g, table, feeds = embedding()
    g2 = run_pipeline(g, TABLES)
    assert [n.op for n in g2.nodes][:4] == ["gather", "cast", "gather", "mul"]
    q, scale = quantize_rows(table)
    assert q.dtype == np.int8 and scale.shape == (50, 1)
    got, want = reference.run(g2, feeds)["tok"], reference.run(g, feeds)["tok"]
    bound = scale[feeds["ids"]] / 2 * (1 + 1e-6)
    assert np.all(np.abs(got - want) <= bound)
    assert np.all(got[0] == 0.0)  # the zero row stays zero
    assert np.array_equal(got, q[feeds["ids"]].astype(np.float32) * scale[feeds["ids"]])


def test_the_numba_backend_equals_the_reference_on_the_int8_table() -> None:
    g2 = run_pipeline(embedding()[0], TABLES)
    feeds = embedding()[2]
    got = runtime.compile(g2, backend="numba").run(feeds)
    want = reference.run(g2, feeds)
    assert np.array_equal(got["tok"], want["tok"])
    np.testing.assert_allclose(got["fc"], want["fc"], rtol=1e-5, atol=1e-6)


def test_the_report_counts_tables_and_the_bytes_they_save() -> None:
    ctx = PassContext()
    run_pipeline(embedding()[0], TABLES, ctx=ctx)
    rec = ctx.records[-1]
    assert rec.stats["tables"] == 1
    assert "table tok int8 per row" in rec.report and "smaller" in rec.report
    assert "1 table(s) int8" in rec.summary


def test_tables_that_are_not_row_lookups_or_not_int8_stay_f32_with_the_reason() -> None:
    ctx = PassContext()
    g = run_pipeline(embedding(axis=1)[0], TABLES, ctx=ctx)
    assert "not a row lookup" in ctx.records[-1].report and any(n.op == "gather" for n in g.nodes)
    ctx = PassContext()
    run_pipeline(embedding()[0], "quantize{precision=fp16,ops=linear+gather}", ctx=ctx)
    assert "lookup tables go to int8 only" in ctx.records[-1].report
    ctx = PassContext()
    run_pipeline(embedding()[0], "quantize{ops=linear+gather,skip=tok}", ctx=ctx)
    assert "tok (skip=tok)" in ctx.records[-1].report and ctx.records[-1].stats["tables"] == 0
    b = GraphBuilder("dynamic-table")
    x = b.input("x", f32[5, 3])
    b.output(b.gather(x, b.input("ids", i64[2]), name="picked"))
    assert run_pipeline(b.build(), TABLES).nodes[0].op == "gather"  # an activation, not a table: left alone


def test_ops_may_name_gather_and_nothing_unknown() -> None:
    assert Quantize(ops="gather").ops == "gather"  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="linear\\+conv2d\\+matmul\\+gather"):
        Quantize(ops="linear+embedding")  # type: ignore[call-arg]
