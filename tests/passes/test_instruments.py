"""Instruments: timing, print-IR-after, numbered dumps, verify-each and numeric checks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from tensorsmith.ir import GraphBuilder, Value, f32
from tensorsmith.passes import (
    DumpIR,
    Instrument,
    NumericCheck,
    Pass,
    PassCheckError,
    PassContext,
    PassResult,
    PrintIRAfter,
    Timing,
    register_pass,
    run_pipeline,
)


def graph():  # type: ignore[no-untyped-def]
    b = GraphBuilder("g")
    x = b.input("x", f32[2, 3])
    d = b.relu(b.tanh(x))  # dead branch
    del d
    b.output(b.sigmoid(b.add(x, np.zeros(3, np.float32))))
    return b.build(check=False)


@register_pass
class BreakTypes(Pass):
    """Declares a wrong shape on an output: verify must catch it."""

    name = "test-break-types"

    def run(self, graph, ctx):  # type: ignore[no-untyped-def]
        n = graph.nodes[-1]
        n.outputs[0].type = f32[9, 9]
        return PassResult(graph, True, "broke a type")


@register_pass
class ChangeNumbers(Pass):
    """Adds 1 to the output while claiming to be exact: the numeric check must catch it."""

    name = "test-change-numbers"

    def run(self, graph, ctx):  # type: ignore[no-untyped-def]
        old = graph.outputs[0]
        one = Value("one", f32[()], np.ones((), np.float32))
        from tensorsmith.ir import Node

        out = Value("shifted", old.type)
        graph.nodes.append(Node("add", [old, one], {}, [out]))
        graph.outputs[0] = out
        return PassResult(graph, True, "added one")


def test_timing_records_every_pass() -> None:
    t = Timing()
    run_pipeline(graph(), "dce,simplify,cse", instruments=[t])
    assert [name for name, _ in t.times] == ["dce", "simplify", "cse"]
    assert all(s >= 0 for _, s in t.times)
    assert "total" in t.summary()


def test_print_ir_after_all_and_by_name() -> None:
    buf = io.StringIO()
    run_pipeline(graph(), "dce,simplify", instruments=[PrintIRAfter(stream=buf)])
    text = buf.getvalue()
    assert "IR after dce" in text and "IR after simplify" in text and text.count("graph g(") == 2
    buf = io.StringIO()
    run_pipeline(graph(), "dce,simplify", instruments=[PrintIRAfter(only=["simplify"], stream=buf)])
    assert "IR after dce" not in buf.getvalue() and "IR after simplify" in buf.getvalue()


def test_dump_ir_writes_numbered_files(tmp_path: Path) -> None:
    run_pipeline(graph(), "dce,simplify,cse", instruments=[DumpIR(tmp_path)])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["000_input.ir", "001_dce.ir", "002_simplify.ir", "003_cse.ir"]
    assert "tanh" in (tmp_path / "000_input.ir").read_text()
    assert "tanh" not in (tmp_path / "001_dce.ir").read_text()


def test_verify_each_names_the_pass_that_broke_the_graph() -> None:
    with pytest.raises(PassCheckError) as e:
        run_pipeline(graph(), "dce,test-break-types")
    assert "test-break-types" in str(e.value) and "shape-mismatch" in str(e.value)


def test_verify_each_can_be_turned_off() -> None:
    out = run_pipeline(graph(), "dce,test-break-types", ctx=PassContext(verify_each=False))
    assert out.nodes[-1].outputs[0].type == f32[9, 9]


def test_numeric_check_catches_a_pass_that_changes_results() -> None:
    x = {"x": np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)}
    with pytest.raises(PassCheckError) as e:
        run_pipeline(graph(), "dce,test-change-numbers", instruments=[NumericCheck(x)])
    assert "test-change-numbers" in str(e.value) and "exact" in str(e.value)


def test_numeric_check_accepts_exact_passes_and_records_errors() -> None:
    x = {"x": np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)}
    check = NumericCheck(x)
    run_pipeline(graph(), "dce,simplify,fold-constants,cse", instruments=[check])
    assert [e for _, e in check.max_errors] == [0.0, 0.0, 0.0, 0.0]


def test_should_run_can_skip_passes() -> None:
    class SkipCse(Instrument):
        def should_run(self, graph, p, ctx):  # type: ignore[no-untyped-def]
            return p.name != "cse"

    ctx = PassContext(instruments=[SkipCse()])
    run_pipeline(graph(), "dce,cse", ctx=ctx)
    assert ctx.records[1].report == "skipped by an instrument"
