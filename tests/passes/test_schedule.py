"""schedule: least-peak node orders (exact search, heuristics, never worse than the original) and latency streams."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.backends.cost import STREAM_KEY, TargetError, estimate, load_target, target_from_dict
from tensorsmith.bench.random_wired import random_wired_graph
from tensorsmith.ir import parse, verify
from tensorsmith.passes import PassContext, PipelineError, run_pipeline
from tensorsmith.passes.schedule_latency import schedule_for_latency
from tensorsmith.passes.schedule_memory import MemoryModel
from tensorsmith.passes.schedule_search import Piece, cut_nodes, schedule_for_memory, search, split_pieces

from ..strategies import random_graphs
from .golden_cases import GOLDEN

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def wired(draw, low: int = 5, high: int = 14):  # type: ignore[no-untyped-def]
    """A randomly wired graph of `low` to `high` operators (Watts-Strogatz or Erdos-Renyi)."""
    n = draw(st.integers(low, high))
    kind = draw(st.sampled_from(["ws", "er"]))
    return random_wired_graph(n, kind, seed=draw(st.integers(0, 10_000)), channels=2, size=3)


def _pieces(g):  # type: ignore[no-untyped-def]
    """Every piece of `g` as `schedule_for_memory` sees it (bytes live at each cut replayed in the original order)."""
    model = MemoryModel.of(g)
    out = []
    for nodes in split_pieces(len(g.nodes), cut_nodes(g)):
        before = nodes[0]
        live = {b for b in range(len(model.sizes)) if model.producer[b] < before
                and (model.pinned[b] or max(model.readers[b], default=-1) >= before)}
        out.append(Piece.of(model, nodes, sum(model.sizes[b] for b in live), live))
    return model, out


@SETTINGS
@given(g=wired())
def test_exact_search_is_never_above_the_heuristic_nor_the_original(g) -> None:  # type: ignore[no-untyped-def]
    model, pieces = _pieces(g)
    for piece in pieces:
        exact = search(piece)
        assert exact.complete and exact.order is not None
        assert sorted(exact.order) == list(range(len(piece.nodes)))
        assert exact.peak == piece.peak(exact.order) >= piece.lower_bound
        for rank in ("peak", "live"):
            beam = search(piece, beam=3, rank=rank)
            assert beam.order is not None and exact.peak <= beam.peak == piece.peak(beam.order)
        assert exact.peak <= piece.peak(range(len(piece.nodes)))
    found = schedule_for_memory(g, max_states=10**7)
    heuristic = schedule_for_memory(g, exact=False)
    assert model.is_topological(found.order) and model.is_topological(heuristic.order)
    assert found.optimal and found.peak_after == model.peak(found.order)
    assert found.peak_after <= heuristic.peak_after <= heuristic.peak_before == model.peak(range(len(g.nodes)))


@SETTINGS
@given(g=wired(5, 7))
def test_exact_schedule_is_the_least_peak_of_all_topological_orders(g) -> None:  # type: ignore[no-untyped-def]
    assume(len(g.nodes) <= 10)
    model = MemoryModel.of(g)
    dag = nx.DiGraph()
    dag.add_nodes_from(range(len(g.nodes)))
    dag.add_edges_from((p, i) for i, ps in enumerate(model.preds) for p in ps)
    best = min(model.peak(order) for order in nx.all_topological_sorts(dag))
    found = schedule_for_memory(g, max_states=10**7)
    assert found.optimal and found.peak_after == best


@SETTINGS
@given(case=random_graphs())
def test_scheduled_random_graphs_verify_and_match_the_reference_exactly(case) -> None:  # type: ignore[no-untyped-def]
    g, inputs = case
    out = run_pipeline(g, "schedule")
    verify(out)
    model = MemoryModel.of(g)
    assert MemoryModel.of(out).peak(range(len(out.nodes))) <= model.peak(range(len(g.nodes)))
    before, after = reference.run(g, inputs), reference.run(out, inputs)
    for v in g.outputs:
        np.testing.assert_array_equal(after[v.name], before[v.name])


def test_branches_reduced_one_at_a_time_on_both_backends() -> None:
    g = parse((GOLDEN / "schedule" / "branches_reduced.before.ir").read_text())
    ctx = PassContext()
    out = run_pipeline(g, "schedule", ctx=ctx)
    assert [n.name for n in out.nodes] == ["e", "se", "t", "st", "a", "s", "ss", "y"]
    assert "peak live 0.012 MB -> 0.004 MB" in ctx.records[-1].report and "exact" in ctx.records[-1].report
    x = {"x": np.random.default_rng(0).standard_normal((4, 256)).astype(np.float32)}
    np.testing.assert_array_equal(reference.run(out, x)["y"], reference.run(g, x)["y"])
    before = runtime.compile(g, backend="numba", fuse=False)
    after = runtime.compile(out, backend="numba", fuse=False)
    np.testing.assert_array_equal(after.run(x)["y"], before.run(x)["y"])
    np.testing.assert_allclose(after.run(x)["y"], reference.run(g, x)["y"], rtol=1e-5, atol=1e-4)
    # the runtime takes the nodes in the scheduled order: its arena shrinks with the peak
    assert after.stats["peak_live_bytes"] < before.stats["peak_live_bytes"]
    assert after.stats["arena_bytes"] < before.stats["arena_bytes"]
    assert after.stats["peak_live_bytes"] <= after.stats["arena_bytes"]


@pytest.mark.parametrize("seed", [0, 1])
def test_scheduled_random_wired_graph_on_numba_equals_the_original(seed: int) -> None:
    g = random_wired_graph(24, "ws", seed=seed, channels=4, size=6)
    fused = run_pipeline(g, "fuse")
    out = run_pipeline(fused, "schedule")
    x = {"x": np.random.default_rng(seed).standard_normal((1, 4, 6, 6)).astype(np.float32)}
    y = g.outputs[0].name
    np.testing.assert_array_equal(reference.run(out, x)[y], reference.run(fused, x)[y])
    before = runtime.compile(fused, backend="numba", fuse=False)
    after = runtime.compile(out, backend="numba", fuse=False)
    np.testing.assert_array_equal(after.run(x)[y], before.run(x)[y])
    np.testing.assert_allclose(after.run(x)[y], reference.run(g, x)[y], rtol=1e-4, atol=1e-4)
    assert after.stats["peak_live_bytes"] <= before.stats["peak_live_bytes"]


def test_a_tight_budget_falls_back_to_the_heuristic_and_says_so() -> None:
    g = random_wired_graph(40, "er", seed=3, channels=2, size=3)
    found = schedule_for_memory(g, max_states=10)
    assert found.peak_after <= found.peak_before
    assert MemoryModel.of(g).is_topological(found.order)
    ctx = PassContext()
    run_pipeline(g, "schedule{max_states=10}", ctx=ctx)
    report = ctx.records[-1].report
    assert "peak live" in report and "arena" in report and " ms" in report
    assert ("heuristic" in report) or ("original kept" in report) or ("proven" in report)


def test_bad_options_are_refused() -> None:
    g = parse((GOLDEN / "schedule" / "chain_kept.before.ir").read_text())
    with pytest.raises(PipelineError, match="peak-memory"):
        run_pipeline(g, "schedule{objective=speed}")
    with pytest.raises(ValueError, match="max_states"):
        run_pipeline(g, "schedule{max_states=0}")
    with pytest.raises(ValueError, match="needs a target"):
        run_pipeline(g, "schedule{objective=latency}")


@pytest.mark.parametrize("target", ["gpu-a100", "tpu-v4", "npu-mobile", "fpga-u250", "cpu-host"])
def test_latency_schedule_lies_between_the_critical_path_and_the_serial_sum(target: str) -> None:
    g = random_wired_graph(30, "ws", seed=5, channels=16, size=16)
    found = schedule_for_latency(g, load_target(target))
    assert found.critical_path <= found.makespan * (1 + 1e-12)
    assert found.makespan <= found.serial * (1 + 1e-12)
    assert set(found.units) <= set(range(load_target(target).parallel_units))
    if load_target(target).parallel_units == 1:
        assert found.makespan == pytest.approx(found.serial)
    ctx = PassContext(target=target)
    out = run_pipeline(g, "schedule{objective=latency}", ctx=ctx)
    assert MemoryModel.of(out).is_topological(range(len(out.nodes)))
    assert all(isinstance(n.meta[STREAM_KEY], int) for n in out.nodes)
    table = estimate(out, target)  # replays the streams in node order: the same start times, or the full-chip bound
    assert table.total.schedule.startswith("parallel")
    assert found.makespan * (1 - 1e-9) <= table.total.latency_s <= table.total.serial_latency_s * (1 + 1e-9)
    assert "makespan" in ctx.records[-1].report and "critical path" in ctx.records[-1].report


def test_latency_schedule_uses_several_streams_and_estimate_follows_them() -> None:
    g = random_wired_graph(30, "ws", seed=5, channels=16, size=16)
    out = run_pipeline(g, "schedule{objective=latency}", target="gpu-a100")
    found = schedule_for_latency(g, load_target("gpu-a100"))
    assert found.units_used > 1 and found.makespan < found.serial
    assert estimate(out, "gpu-a100").total.latency_s < estimate(g, "gpu-a100").total.latency_s
    x = {"x": np.random.default_rng(0).standard_normal((1, 16, 16, 16)).astype(np.float32)}
    y = g.outputs[0].name
    np.testing.assert_array_equal(reference.run(out, x)[y], reference.run(g, x)[y])


def test_parallel_units_are_read_from_the_target_file_and_checked() -> None:
    assert load_target("gpu-a100").parallel_units == 4 and load_target("tpu-v5e").parallel_units == 1
    base = {"name": "t", "kind": "gpu", "clock_ghz": 1.0, "units": 1, "peak_tops": {"fp32": 1.0},
            "matrix": {"kind": "tiled", "tile": [1, 1, 1]},
            "memory": [{"name": "dram", "capacity": "1 GiB", "bandwidth_gbs": 1.0}]}
    assert target_from_dict(base).parallel_units == 1
    assert target_from_dict({**base, "parallel_units": 3}).parallel_units == 3
    with pytest.raises(TargetError, match="parallel_units"):
        target_from_dict({**base, "parallel_units": 0})
