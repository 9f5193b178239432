"""schedule{rewrite=true}: concat convolutions partitioned, sums re-chained; lower peaks within the stated bound."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.bench.random_wired import random_wired_graph
from tensorsmith.ir import parse, verify
from tensorsmith.passes import PASSES, PassContext, run_pipeline
from tensorsmith.passes.instruments import NumericCheck
from tensorsmith.passes.rewrite import apply_rules
from tensorsmith.passes.schedule_memory import MemoryModel
from tensorsmith.passes.schedule_rewrite import PARTITION_RULES, sum_chains, topological_resort

from .golden_cases import GOLDEN, random_inputs

REWRITE = "schedule{rewrite=true}"


def _peak(g) -> int:  # type: ignore[no-untyped-def]
    return MemoryModel.of(g).peak(range(len(g.nodes)))


def _concat_conv(extra: str = "", groups: str = "", axis: int = 1, w_shape: str = "1,6,1,1") -> str:
    """Three 2-channel branches concatenated and convolved (optionally with another reader of the concat)."""
    n = int(np.prod([int(d) for d in w_shape.split(",")]))
    return f"""graph g(%x: f32[1,2,4,4]) -> f32[1,1,4,4] {{
  %a = exp(%x) : f32[1,2,4,4]
  %b = tanh(%x) : f32[1,2,4,4]
  %c = sigmoid(%x) : f32[1,2,4,4]
  %cat = concat(%a, %b, %c) {{axis={axis}}} : f32[1,6,4,4]
  %y = conv2d(%cat, @w){groups} : f32[1,1,4,4]
  {extra}
  return %y
}}
const @w: f32[{w_shape}] = {[round(0.1 * (k + 1), 2) for k in range(n)]}
"""


def test_a_concat_convolution_becomes_one_convolution_per_part_with_the_same_result() -> None:
    g = parse(_concat_conv())
    x = random_inputs(g)
    want = reference.run(g, x)["y"]
    hits = apply_rules(g, PARTITION_RULES)
    assert hits == {"partition-concat-conv": 1}
    verify(g)
    assert [n.op for n in g.nodes].count("conv2d") == 3 and not g.nodes_of("concat")
    assert [n.inputs[1].type.shape for n in g.nodes_of("conv2d")] == [(1, 2, 1, 1)] * 3
    np.testing.assert_allclose(reference.run(g, x)["y"], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("text", "why"), [
    (_concat_conv(axis=-1, w_shape="1,2,1,1").replace("f32[1,6,4,4]", "f32[1,2,4,12]").replace(
        "f32[1,1,4,4]", "f32[1,1,4,12]"), "concatenated along the width"),
    (_concat_conv(groups=" {groups=2}", w_shape="2,3,1,1").replace("-> f32[1,1,4,4]", "-> f32[1,2,4,4]").replace(
        "%y = conv2d(%cat, @w) {groups=2} : f32[1,1,4,4]", "%y = conv2d(%cat, @w) {groups=2} : f32[1,2,4,4]"),
     "grouped"),
])
def test_convolutions_that_do_not_split_by_input_channel_stay_whole(text: str, why: str) -> None:
    g = parse(text)
    assert not apply_rules(g, PARTITION_RULES), why


def test_a_concat_read_elsewhere_is_not_partitioned() -> None:
    text = _concat_conv("%m = reduce-max(%cat) {axes=[1]} : f32[1,1,4,4]").replace(
        "return %y", "return %y, %m").replace("-> f32[1,1,4,4]", "-> (f32[1,1,4,4], f32[1,1,4,4])")
    g = parse(text)
    assert not apply_rules(g, PARTITION_RULES)


def test_sum_chains_take_plain_adds_whose_inner_sums_have_one_reader() -> None:
    g = parse("""graph g(%x: f32[2,4], %v: f32[4]) -> (f32[2,4], f32[2,4]) {
  %a = exp(%x) : f32[2,4]
  %b = tanh(%x) : f32[2,4]
  %c = neg(%x) : f32[2,4]
  %s = add(%a, %b) : f32[2,4]
  %t = add(%s, %c) : f32[2,4]
  %u = add(%t, %a) : f32[2,4]
  %w = add(%u, %v) : f32[2,4]
  %p = add(%a, %c) : f32[2,4]
  %q = add(%p, %b) : f32[2,4]
  %r = mul(%p, %q) : f32[2,4]
  return %w, %r
}""")
    chains = sum_chains(g)
    # %w broadcasts %v: not plain, so %u is a root; %p has two readers, so %q alone is no chain
    assert [[n.name for n in c.adds] for c in chains] == [["s", "t", "u"]]
    assert sorted(v.name for v in chains[0].terms) == ["a", "a", "b", "c"]


def test_re_chaining_adds_the_terms_in_the_order_they_are_made() -> None:
    g = parse((GOLDEN / "schedule{rewrite=true}" / "sum_chain.before.ir").read_text())
    (chain,) = sum_chains(g)
    position = {id(n): i for i, n in enumerate(g.nodes)}
    assert chain.rechain(position)
    topological_resort(g, position)
    verify(g)
    assert [(n.name, [v.name for v in n.inputs]) for n in g.nodes if n.op == "add"] == [
        ("s", ["a", "b"]), ("y", ["s", "c"])]
    assert not chain.rechain({id(n): i for i, n in enumerate(g.nodes)})  # already in production order


def test_the_pass_states_its_bound_only_when_it_rewrites() -> None:
    plain, rewriting = PASSES["schedule"](), PASSES["schedule"](rewrite=True)
    assert plain.exact and plain.tolerance == (0.0, 0.0)
    assert not rewriting.exact and rewriting.tolerance == (1e-4, 1e-5)
    with pytest.raises(ValueError, match="rewrite_rounds"):
        run_pipeline(parse(_concat_conv()), "schedule{rewrite=true,rewrite_rounds=-1}")


def test_a_rewrite_that_does_not_lower_the_peak_is_not_kept() -> None:
    g = parse((GOLDEN / "schedule" / "branches_reduced.before.ir").read_text())
    ctx = PassContext()
    out = run_pipeline(g, REWRITE, ctx=ctx)
    assert "not kept" in ctx.records[-1].report
    def wiring(graph):  # type: ignore[no-untyped-def]
        return sorted((n.name, [v.name for v in n.inputs]) for n in graph.nodes)

    assert wiring(out) == wiring(g)
    x = random_inputs(g)
    np.testing.assert_array_equal(reference.run(out, x)["y"], reference.run(g, x)["y"])


@pytest.mark.parametrize(("kind", "seed"), [("ws", 0), ("er", 1)])
def test_rewritten_random_wired_graphs_peak_lower_and_match_on_both_backends(kind: str, seed: int) -> None:
    g = random_wired_graph(30, kind, seed=seed, channels=4, size=6)
    plain = run_pipeline(g, "schedule")
    x = {"x": np.random.default_rng(seed).standard_normal((1, 4, 6, 6)).astype(np.float32)}
    check = NumericCheck(x)
    ctx = PassContext(instruments=[check])
    out = run_pipeline(g, REWRITE, ctx=ctx)
    verify(out)
    assert _peak(out) < _peak(plain)
    report = ctx.records[-1].report
    assert "rewritten" in report and "partitioned" in report and "not kept" not in report
    assert check.max_errors[0][1] < 1e-4
    y = g.outputs[0].name
    want = reference.run(g, x)[y]
    compiled = runtime.compile(out, backend="numba", fuse=False)
    np.testing.assert_allclose(compiled.run(x)[y], want, rtol=1e-4, atol=1e-4)
    assert compiled.stats["peak_live_bytes"] < runtime.compile(plain, backend="numba", fuse=False).stats[
        "peak_live_bytes"]
    fused = run_pipeline(out, "fuse,schedule")  # the partial sums become residual epilogues of the convolutions
    assert len(fused.nodes_of("fused")) >= len(out.nodes_of("conv2d")) // 2
    np.testing.assert_allclose(runtime.compile(fused, backend="numba", fuse=False).run(x)[y], want, rtol=1e-4,
                               atol=1e-4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(5, 16), kind=st.sampled_from(["ws", "er"]), seed=st.integers(0, 10_000))
def test_rewriting_never_peaks_above_the_plain_schedule_and_stays_within_its_bound(n: int, kind: str,
                                                                                    seed: int) -> None:
    g = random_wired_graph(n, kind, seed=seed, channels=2, size=3)
    x = {"x": np.random.default_rng(seed).standard_normal((1, 2, 3, 3)).astype(np.float32)}
    plain = run_pipeline(g, "schedule")
    out = run_pipeline(g, REWRITE, ctx=PassContext(instruments=[NumericCheck(x)]))
    verify(out)
    assert MemoryModel.of(out).is_topological(range(len(out.nodes)))
    assert _peak(out) <= _peak(plain)
