"""schedule{recompute=true}: values read far apart computed a second time where that lowers the peak, bit for bit."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.bench.random_wired import random_wired_graph
from tensorsmith.ir import GraphBuilder, f32, verify
from tensorsmith.passes import PASSES, PassContext, run_pipeline, schedule_recompute
from tensorsmith.passes.instruments import NumericCheck
from tensorsmith.passes.schedule_memory import MemoryModel
from tensorsmith.passes.schedule_recompute import recompute_for_memory, widest_gap, with_copy
from tensorsmith.passes.schedule_search import schedule_for_memory

RNG = np.random.default_rng(9)


def _peak(g) -> int:  # type: ignore[no-untyped-def]
    return MemoryModel.of(g).peak(range(len(g.nodes)))


def _wide_value_read_early_and_late():  # type: ignore[no-untyped-def]
    """x (8 channels) -> v (32 channels) read by the first of a chain of convolutions (32 -> 64 -> 64 -> 32
    channels) and again by the add at its end: v is live through the chain's wide middle unless it is computed
    again from x near the add."""
    b = GraphBuilder("far")
    x = b.input("x", f32[1, 8, 8, 8])
    v = b.conv2d(x, (RNG.standard_normal((32, 8, 1, 1)) / 3).astype(np.float32), name="v")
    h = v
    for i, (ci, co) in enumerate([(32, 64), (64, 64), (64, 32)]):
        h = b.relu(b.conv2d(h, (RNG.standard_normal((co, ci, 1, 1)) / 6).astype(np.float32), name=f"c{i}"),
                   name=f"r{i}")
    b.output(b.add(h, v, name="y"))
    return b.build()


def test_a_copy_feeds_the_later_readers_and_computes_the_same() -> None:
    g = _wide_value_read_early_and_late()
    position = next(i for i, n in enumerate(g.nodes) if n.name == "v")
    copy = with_copy(g, position)
    verify(copy)
    convs = [n for n in copy.nodes if n.op == "conv2d" and n.inputs[0] is copy.inputs[0]]
    assert len(convs) == 2 and convs[0].outputs[0] is not convs[1].outputs[0]
    (add,) = copy.nodes_of("add")
    assert convs[1].outputs[0] in add.inputs  # the late reader reads the copy
    x = {"x": RNG.standard_normal((1, 8, 8, 8)).astype(np.float32)}
    np.testing.assert_array_equal(reference.run(copy, x)["y"], reference.run(g, x)["y"])


def _value_read_twice_early_and_once_late():  # type: ignore[no-untyped-def]
    """v read by two adjacent nodes at the start (t, s) and by the add at the end of a chain of convolutions."""
    b = GraphBuilder("split")
    x = b.input("x", f32[1, 8, 8, 8])
    v = b.conv2d(x, (RNG.standard_normal((32, 8, 1, 1)) / 3).astype(np.float32), name="v")
    h = b.add(b.tanh(v, name="t"), b.sigmoid(v, name="s"), name="ts")
    for i, (ci, co) in enumerate([(32, 64), (64, 32)]):
        h = b.relu(b.conv2d(h, (RNG.standard_normal((co, ci, 1, 1)) / 6).astype(np.float32), name=f"c{i}"),
                   name=f"r{i}")
    b.output(b.add(h, v, name="y"))
    return b.build()


def test_widest_gap_is_the_widest_space_between_consecutive_readers() -> None:
    assert widest_gap([2, 3, 9, 10]) == (6, 2)
    assert widest_gap([0, 5]) == (5, 1)
    assert widest_gap([1, 2, 3]) == (1, 2)  # ties: the last (the copy serves the fewest readers)


def test_a_copy_serves_the_readers_after_the_widest_gap_unless_told_which() -> None:
    g = _value_read_twice_early_and_once_late()
    position = next(i for i, n in enumerate(g.nodes) if n.name == "v")
    name = g.nodes[position].outputs[0].name

    def readers_of_copy(h):  # type: ignore[no-untyped-def]
        (again,) = [n.outputs[0] for n in h.nodes if n.outputs[0].name.startswith(f"{name}.again")]
        return ({n.name for n in h.nodes if again in n.inputs},
                {n.name for n in h.nodes if any(x.name == name for x in n.inputs)})

    x = {"x": RNG.standard_normal((1, 8, 8, 8)).astype(np.float32)}
    want = reference.run(g, x)["y"]
    for first, copy_readers, original_readers in ((None, {"y"}, {"t", "s"}), (1, {"s", "y"}, {"t"})):
        h = with_copy(g, position, first)
        verify(h)
        assert readers_of_copy(h) == (copy_readers, original_readers)
        np.testing.assert_array_equal(reference.run(h, x)["y"], want)
    for bad in (0, 3):
        with pytest.raises(ValueError, match=r"node v \(conv2d\) has 3 reader"):
            with_copy(g, position, bad)


def test_copies_that_only_narrow_a_plateau_of_peaks_lead_lower(monkeypatch: pytest.MonkeyPatch) -> None:
    """Watts-Strogatz, 12 operators, seed 0: its schedule peaks at several steps; a copy that lowers one of them
    leaves the peak as it is, yet the next copy, with it, lowers the peak (kept only by the plateau rule)."""
    g = random_wired_graph(12, "ws", 0)
    heuristic = lambda h: schedule_for_memory(h, exact=False)  # noqa: E731
    found, done = recompute_for_memory(g, heuristic)
    level = schedule_recompute._level
    monkeypatch.setattr(schedule_recompute, "_level", lambda h: (level(h)[0], 0))  # keep strict descents only
    _, strict = recompute_for_memory(g, heuristic)
    assert done.peak < strict.peak and len(done.copies) > len(strict.copies)
    assert _peak(found) == done.peak
    verify(found)
    x = {"x": RNG.standard_normal(g.inputs[0].type.shape).astype(np.float32)}
    np.testing.assert_array_equal(reference.run(found, x)[found.outputs[0].name],
                                  reference.run(g, x)[g.outputs[0].name])


def test_recomputing_the_wide_value_lowers_the_peak_bit_for_bit() -> None:
    g = _wide_value_read_early_and_late()
    plain = run_pipeline(g, "schedule")
    ctx = PassContext()
    out = run_pipeline(g, "schedule{recompute=true}", ctx=ctx)
    report = ctx.records[-1].report
    assert "recompute: 1 value(s) computed twice (v)" in report and "not kept" not in report
    assert f"{8 * 32 * 64} multiply-adds more" in report
    assert _peak(out) < _peak(plain)
    assert PASSES["schedule"](recompute=True).exact  # same ops on the same inputs
    x = {"x": RNG.standard_normal((1, 8, 8, 8)).astype(np.float32)}
    want = reference.run(g, x)["y"]
    np.testing.assert_array_equal(reference.run(out, x)["y"], want)
    np.testing.assert_allclose(runtime.compile(out, backend="numba").run(x)["y"], want, rtol=1e-5, atol=1e-5)


def test_a_copy_that_does_not_pay_is_not_kept() -> None:
    """A value whose readers are adjacent: computing it twice frees nothing."""
    b = GraphBuilder("near")
    x = b.input("x", f32[1, 4, 4, 4])
    v = b.exp(x, name="v")
    b.output(b.add(b.tanh(v, name="t"), b.sigmoid(v, name="s"), name="y"))
    g = b.build()
    found, done = recompute_for_memory(g, lambda h: schedule_for_memory(h, exact=False))
    assert done.copies == [] and len(found.nodes) == len(g.nodes)
    ctx = PassContext()
    run_pipeline(g, "schedule{recompute=true}", ctx=ctx)
    assert "0 value(s) computed twice" in ctx.records[-1].report and "not kept" in ctx.records[-1].report


def test_a_random_wired_graph_goes_lower_with_recomputation_after_the_rewrite() -> None:
    """Erdos-Renyi, 30 operators, seed 1: the rewrite alone leaves a peak that computing values twice lowers."""
    g = random_wired_graph(30, "er", 1)
    rewritten = run_pipeline(g, "schedule{rewrite=true}", ctx=PassContext(verify_each=False))
    ctx = PassContext(verify_each=False)
    both = run_pipeline(g, "schedule{rewrite=true,recompute=true}", ctx=ctx)
    verify(both)
    assert _peak(both) < _peak(rewritten) and "not kept" not in ctx.records[-1].report
    x = {"x": RNG.standard_normal(g.inputs[0].type.shape).astype(np.float32)}
    np.testing.assert_allclose(reference.run(both, x)[both.outputs[0].name], reference.run(g, x)[g.outputs[0].name],
                               rtol=1e-4, atol=1e-5)  # the rewrite's bound; the copies add nothing to it


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(5, 14), kind=st.sampled_from(["ws", "er"]), seed=st.integers(0, 10_000))
def test_recomputation_never_peaks_above_the_plain_schedule_and_is_exact(n: int, kind: str, seed: int) -> None:
    g = random_wired_graph(n, kind, seed=seed, channels=2, size=3)
    x = {"x": np.random.default_rng(seed).standard_normal((1, 2, 3, 3)).astype(np.float32)}
    out = run_pipeline(g, "schedule{recompute=true}", ctx=PassContext(instruments=[NumericCheck(x)]))
    verify(out)
    assert MemoryModel.of(out).is_topological(range(len(out.nodes)))
    assert _peak(out) <= _peak(run_pipeline(g, "schedule"))
    np.testing.assert_array_equal(reference.run(out, x)[out.outputs[0].name], reference.run(g, x)[g.outputs[0].name])


def test_recompute_work_bounds_the_multiply_adds_the_copies_add() -> None:
    g = random_wired_graph(30, "er", 1)
    total = sum(n.outputs[0].type.numel * int(np.prod(n.inputs[1].type.shape[1:])) for n in g.nodes
                if n.op == "conv2d")  # the graph's multiply-adds (it has no matrix products)
    reports = {}
    for budget in (0.0, 0.05, 0.5):
        ctx = PassContext(verify_each=False)
        out = run_pipeline(g, f"schedule{{recompute=true,recompute_work={budget}}}", ctx=ctx)
        report = ctx.records[-1].report
        extra = int(re.search(r"(\d+) multiply-adds more", report).group(1))  # type: ignore[union-attr]
        assert extra <= budget * total, (budget, extra, total)
        reports[budget] = (extra, _peak(out))
    assert reports[0.0][0] == 0 and reports[0.5][0] > reports[0.05][0]
    assert reports[0.5][1] < reports[0.0][1]
    with pytest.raises(ValueError, match="recompute_work not negative"):
        run_pipeline(g, "schedule{recompute=true,recompute_work=-1}")
