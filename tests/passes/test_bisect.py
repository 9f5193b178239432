"""Pass bisection: the first pass whose outputs leave the tolerance, and the first diverging node in its graph."""

from __future__ import annotations

import numpy as np
from tensorsmith.bench.cli import main
from tensorsmith.ir import Graph, GraphBuilder, f32
from tensorsmith.passes import Pass, PassResult, bisect, register_pass
from tensorsmith.passes.bisect import max_abs_diff

X = {"x": np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 64)}


@register_pass
class SigmoidForRelu(Pass):
    """Test pass (deliberately wrong): the first relu becomes a sigmoid, keeping its name."""

    name = "test-bisect-sigmoid-for-relu"

    def run(self, graph, ctx):  # type: ignore[no-untyped-def]
        node = next(n for n in graph.nodes if n.op == "relu")
        node.op = "sigmoid"
        return PassResult(graph, True, "replaced one relu")


@register_pass
class NudgeOutput(Pass):
    """Test pass: adds `eps` to the graph's first output (a new add node, so no same-named value moves)."""

    name = "test-bisect-nudge"
    eps: float = 1e-7

    def run(self, graph, ctx):  # type: ignore[no-untyped-def]
        from tensorsmith.ir import Node, Value

        y = graph.outputs[0]
        old = Value(y.name + ".before", y.type)
        y.producer.outputs[0] = old  # type: ignore[union-attr]
        old.producer = y.producer
        for n in graph.nodes:
            n.inputs = [old if v is y else v for v in n.inputs]
        eps = Value(f"{y.name}.eps", f32[()], np.asarray(self.eps, np.float32))
        graph.nodes.append(Node("add", [old, eps], {}, [y]))
        return PassResult(graph, True, f"added {self.eps}")


@register_pass
class Crash(Pass):
    """Test pass: fails."""

    name = "test-bisect-crash"

    def run(self, graph, ctx):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")


def mlp() -> Graph:
    rng = np.random.default_rng(0)
    b = GraphBuilder("mlp")
    x = b.input("x", f32[1, 64])
    h = b.relu(b.linear(x, rng.standard_normal((32, 64)), np.zeros(32)), name="hidden")
    b.output(b.linear(h, rng.standard_normal((10, 32)), np.zeros(10), name="y"))
    return b.build()


def test_a_broken_pass_and_its_node_are_named() -> None:
    r = bisect(mlp(), "simplify,fold-constants,test-bisect-sigmoid-for-relu,cse,dce", X, tol=1e-4)
    assert not r.ok
    assert (r.pass_name, r.pass_index, r.passes) == ("test-bisect-sigmoid-for-relu", 3, 5)
    assert [s.pass_name for s in r.steps] == ["simplify", "fold-constants", "test-bisect-sigmoid-for-relu"]
    assert [s.within for s in r.steps] == [True, True, False]
    assert (r.node, r.node_op) == ("hidden", "sigmoid")
    assert r.node_diff is not None and r.node_diff > 0.1 and r.compared >= 2
    text = str(r)
    assert "first pass beyond the tolerance: #3 test-bisect-sigmoid-for-relu" in text
    assert "first diverging node in its output: %hidden (sigmoid)" in text


def test_a_clean_pipeline_stays_within() -> None:
    r = bisect(mlp(), "simplify,fold-constants,cse,dce", X, tol=0.0)
    assert r.ok and r.pass_name is None and len(r.steps) == 4
    assert all(s.max_abs_diff == 0.0 for s in r.steps)
    assert "every pass keeps the outputs within the tolerance" in str(r)


def test_the_tolerance_decides() -> None:
    g = mlp()
    assert bisect(g, "cse,test-bisect-nudge{eps=1e-3}", X, tol=1e-2).ok
    r = bisect(g, "cse,test-bisect-nudge{eps=1e-3}", X, tol=1e-4)
    assert r.pass_index == 2 and 5e-4 < r.steps[-1].max_abs_diff < 2e-3
    # the new add node carries the output's name, so the same-named value diverges there
    assert (r.node, r.node_op) == ("y", "add")


def test_a_pass_that_fails_is_the_culprit_with_its_error() -> None:
    r = bisect(mlp(), "cse,test-bisect-crash,dce", X, tol=1e-5)
    assert r.pass_index == 2 and "RuntimeError: boom" in r.steps[-1].error
    assert r.node is None and "FAILED: RuntimeError: boom" in str(r)


@register_pass
class RenameAll(Pass):
    """Test pass: renames every node output (graph outputs included) to new_<name>, but the first `skip` nodes'."""

    name = "test-bisect-rename-all"
    skip: int = 0

    def run(self, graph, ctx):  # type: ignore[no-untyped-def]
        for n in graph.nodes[self.skip:]:
            for v in n.outputs:
                v.name = "new_" + v.name
        return PassResult(graph, True, "renamed")


def test_no_same_named_value_is_reported() -> None:
    r = bisect(mlp(), "test-bisect-rename-all,test-bisect-sigmoid-for-relu", X, tol=1e-4)
    assert r.pass_index == 2 and r.node is None and r.compared == 0
    assert "no value of its output graph has a same-named, same-shaped value in the original graph" in str(r)
    r = bisect(mlp(), "test-bisect-rename-all{skip=1},test-bisect-sigmoid-for-relu", X, tol=1e-4)
    assert r.pass_index == 2 and r.node is None and r.compared == 1
    assert "no same-named value diverges (1 compared)" in str(r)


def test_max_abs_diff_handles_nan_inf_and_shapes() -> None:
    a = np.array([1.0, np.nan, np.inf, -np.inf], np.float32)
    assert max_abs_diff(a, a.copy()) == 0.0
    assert max_abs_diff(a, np.array([1.0, 0.0, np.inf, -np.inf], np.float32)) == np.inf
    assert max_abs_diff(a, a[:2]) == np.inf
    assert max_abs_diff(np.array([1, 2], np.int8), np.array([1, 5], np.int8)) == 3.0


def test_bench_bisect_on_an_ir_file(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "mlp.ir"
    path.write_text(mlp().to_text())
    rc = main(["bisect", str(path), "--pipelines", "simplify,test-bisect-sigmoid-for-relu,dce", "--tol", "1e-5"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "first pass beyond the tolerance: #2 test-bisect-sigmoid-for-relu" in out and "%hidden (sigmoid)" in out
    assert main(["bisect", "mlp", "--pipelines", "simplify,cse,dce"]) == 0
    assert "every pass keeps the outputs within the tolerance" in capsys.readouterr().out
    assert main(["bisect", str(tmp_path / "missing.ir")]) == 2
    assert "no such file" in capsys.readouterr().out
