"""The rewrite engine: rules as data, captures as arguments, fixed point, hit counts."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.backends import reference
from tensorsmith.ir import GraphBuilder, f32, verify
from tensorsmith.passes import Const, RewriteError, Rewriter, Rule, RuleSet, Var, apply_rules, op, rules


def chain():  # type: ignore[no-untyped-def]
    b = GraphBuilder("g")
    x = b.input("x", f32[4])
    y = b.neg(b.neg(b.neg(b.neg(x))))
    b.output(b.relu(y))
    return b.build()


def test_rule_fires_to_fixed_point_and_counts_hits() -> None:
    g = chain()
    hits = apply_rules(g, rules(("neg-neg", op("neg", op("neg", Var("x"))), lambda rw, x: x)))
    assert hits == {"neg-neg": 2}
    assert [n.op for n in g.nodes] == ["relu"]
    verify(g)


def test_none_means_no_match_and_emitted_nodes_are_dropped() -> None:
    g = chain()

    def refuse(rw: Rewriter, x):  # type: ignore[no-untyped-def]
        rw.emit("relu", x)
        return None

    hits = apply_rules(g, rules(("refuse", op("neg", Var("x")), refuse)))
    assert not hits and [n.op for n in g.nodes] == ["neg"] * 4 + ["relu"]


def test_rule_sets_combine_with_plus_and_keep_order() -> None:
    a = rules(("a", op("neg", Var("x")), lambda rw, x: None))
    b = RuleSet((Rule("b", op("relu", Var("x")), lambda rw, x: None),))
    both = a + b + Rule("c", Var("x"), lambda rw, x: None)
    assert [r.name for r in both] == ["a", "b", "c"] and len(both) == 3


def test_const_predicate_and_repeated_capture() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[3])
    s = b.add(x, x)  # x + x -> 2 * x
    b.output(b.mul(s, np.float32(3.0)))
    g = b.build()

    def twice(rw: Rewriter, x):  # type: ignore[no-untyped-def]
        return rw.emit("mul", x, rw.const(np.float32(2.0)))

    three = Const("c", lambda a: bool(np.all(a == 3)))
    rs = rules(("x-plus-x", op("add", Var("x"), Var("x")), twice),
               ("times-three", op("mul", Var("y"), three), lambda rw, y, c: None))
    inp = {"x": np.array([1, 2, 3], np.float32)}
    before = reference.run(g, inp)
    hits = apply_rules(g, rs)
    assert hits == {"x-plus-x": 1}
    verify(g)
    np.testing.assert_array_equal(reference.run(g, inp)[g.outputs[0].name], before[list(before)[0]])


def test_single_use_blocks_shared_intermediates() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[3])
    n = b.neg(x)
    b.output(b.neg(n), b.relu(n))
    g = b.build()
    hits = apply_rules(g, rules(("neg-neg", op("neg", op("neg", Var("x"), single_use=True)), lambda rw, x: x)))
    assert not hits


def test_type_changing_replacement_is_an_error_naming_the_rule() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[2, 3])
    b.output(b.relu(x))
    g = b.build()

    def bad(rw: Rewriter, x):  # type: ignore[no-untyped-def]
        return rw.emit("reshape", x, shape=(3, 2))

    with pytest.raises(RewriteError) as e:
        apply_rules(g, rules(("bad-rule", op("relu", Var("x")), bad)))
    assert "bad-rule" in str(e.value)


def test_non_terminating_rules_are_reported() -> None:
    g = chain()

    def flip(rw: Rewriter, x):  # type: ignore[no-untyped-def]
        return rw.emit("neg", rw.emit("neg", rw.emit("relu", x)))

    with pytest.raises(RewriteError) as e:
        apply_rules(g, rules(("grow", op("relu", Var("x")), flip)), max_sweeps=5)
    assert "fixed point" in str(e.value)
