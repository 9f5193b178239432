"""schedule: the heuristic against random orders, the local improvement, and the randomly wired benchmark graphs."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorsmith.bench.random_wired import WIDTH_FACTORS, random_dag, random_wired_graph
from tensorsmith.bench.schedule import random_order
from tensorsmith.ir import GraphBuilder, f32, verify
from tensorsmith.passes import run_pipeline
from tensorsmith.passes.schedule_improve import improve_order
from tensorsmith.passes.schedule_memory import MemoryModel
from tensorsmith.passes.schedule_search import Piece, schedule_for_memory

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(("kind", "n", "seed"), [("ws", 40, 0), ("ws", 50, 1), ("er", 40, 1), ("er", 60, 0)])
def test_heuristic_is_at_or_below_the_best_of_200_random_orders(kind: str, n: int, seed: int) -> None:
    g = random_wired_graph(n, kind, seed)  # type: ignore[arg-type]
    model = MemoryModel.of(g)
    rng = random.Random(seed)
    best_random = min(model.peak(random_order(model, rng)) for _ in range(200))
    found = schedule_for_memory(g, exact=False)
    assert model.is_topological(found.order)
    assert found.peak_after == model.peak(found.order) <= best_random
    assert found.peak_after < found.peak_before


def _whole_graph_piece(g):  # type: ignore[no-untyped-def]
    model = MemoryModel.of(g)
    return Piece.of(model, list(range(len(g.nodes))), 0, set())


@SETTINGS
@given(n=st.integers(5, 24), kind=st.sampled_from(["ws", "er"]), seed=st.integers(0, 10_000),
       start_seed=st.integers(0, 100), moves=st.integers(0, 300))
def test_local_improvement_keeps_the_order_topological_and_never_raises_the_peak(
        n: int, kind: str, seed: int, start_seed: int, moves: int) -> None:
    g = random_wired_graph(n, kind, seed, channels=2, size=3)  # type: ignore[arg-type]
    model = MemoryModel.of(g)
    piece = _whole_graph_piece(g)
    start = random_order(model, random.Random(start_seed))
    improved = improve_order(piece, start, moves)
    assert model.is_topological(improved)
    assert piece.peak(improved) == model.peak(improved) <= model.peak(start)
    steps, before = piece.steps(improved), piece.steps(start)
    assert (max(steps), steps.count(max(steps)), sum(steps)) <= (max(before), before.count(max(before)), sum(before))


def test_local_improvement_moves_a_branch_past_the_peak() -> None:
    # w, run early, holds 512 bytes across the widest step (c); run after it, only a's 256 bytes wait there
    bld = GraphBuilder("late-branch")
    x = bld.input("x", f32[1, 64])
    a = bld.relu(x, name="a")
    w = bld.concat([a, a], axis=1, name="w")
    b = bld.concat([a, a, a, a], axis=1, name="b")
    c = bld.concat([b, b], axis=1, name="c")
    d = bld.linear(c, np.ones((128, 512), np.float32), name="d")
    bld.output(bld.add(w, d, name="y"))
    g = bld.build()
    model = MemoryModel.of(g)
    names = [node.name for node in g.nodes]
    assert names == ["a", "w", "b", "c", "d", "y"] and model.peak(range(6)) == 512 + 1024 + 2048
    improved = improve_order(_whole_graph_piece(g), list(range(6)), 100)
    assert model.peak(improved) == 256 + 1024 + 2048
    order = [names[i] for i in improved]
    assert order.index("w") > order.index("c")


@pytest.mark.parametrize("kind", ["ws", "er"])
def test_random_wired_graphs_vary_widths_and_keep_the_dag_numbering(kind: str) -> None:
    n, channels = 40, 4
    g = random_wired_graph(n, kind, seed=3, channels=channels, size=4)  # type: ignore[arg-type]
    verify(g)
    convs = {node.name: node.outputs[0].type.shape[1] for node in g.nodes if node.op == "conv2d"}
    operators = [f"n{i}" for i in range(n)]
    assert all(name in convs for name in operators)  # every operator ends in a convolution
    widths = {convs[name] for name in operators}
    assert widths <= {channels * f for f in WIDTH_FACTORS} and len(widths) > 1
    names = [node.name for node in g.nodes]
    assert [names.index(name) for name in operators] == sorted(names.index(name) for name in operators)
    dag = random_dag(n, kind, seed=3)  # type: ignore[arg-type]
    assert all(a < b for a, b in dag.edges())


def test_a_negative_improvement_budget_is_refused() -> None:
    g = random_wired_graph(8, "ws", seed=0, channels=2, size=3)
    with pytest.raises(ValueError, match="improve"):
        run_pipeline(g, "schedule{improve=-1}")
    out = run_pipeline(g, "schedule{improve=0}")
    assert MemoryModel.of(out).peak(range(len(out.nodes))) <= MemoryModel.of(g).peak(range(len(g.nodes)))
