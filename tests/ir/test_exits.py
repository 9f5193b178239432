"""The early-exit ops: type rules, reference semantics, text form, verifier checks, segments, cost, ONNX refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from tensorsmith.backends import reference
from tensorsmith.backends.cost import estimate
from tensorsmith.ir import (
    BuildError,
    GraphBuilder,
    VerificationError,
    assert_graphs_equal,
    f32,
    parse,
    to_onnx,
    verify,
)
from tensorsmith.ir.exits import exit_nodes, exit_segments, select_node
from tensorsmith.ir.onnx_export import OnnxExportError

from .refcase import covers, mark_ran
from .sample_exits import exit_mlp

GOLDEN = Path(__file__).parent / "golden" / "early_exit.ir"


def one_exit(head: np.ndarray, criterion: str, threshold: float = 0.0, patience: int = 1,
             earlier: tuple[np.ndarray, ...] = ()) -> np.ndarray:
    """The fire mask of a last exit on `head` (earlier exits on `earlier`), run on the reference backend."""
    b = GraphBuilder("one")
    h = b.input("h", f32[head.shape])
    es = [b.input(f"e{i}", f32[e.shape]) for i, e in enumerate(earlier)]
    fires = [b.exit(e, criterion="entropy", threshold=0.0, name=f"f{k}") for k, e in enumerate(es)]
    fires.append(b.exit(h, criterion=criterion, threshold=threshold, patience=patience, earlier=es, name="fire"))
    out, taken = b.exit_select(h, list(zip([*es, h], fires)), name="y")
    b.output(out, taken)
    ins = {"h": head, **{f"e{i}": e for i, e in enumerate(earlier)}}
    g = b.build()
    mark_ran(g)
    return reference.run(g, ins, keep=True)["fire"]


# ---- reference semantics, worked by hand -----------------------------------------------------------------
@covers("exit")
def test_max_prob_fires_where_the_largest_softmax_reaches_the_threshold() -> None:
    head = np.array([[0.0, 0.0], [np.log(3.0), 0.0], [5.0, -5.0]], np.float32)  # max prob 0.5, 0.75, ~1
    assert_array_equal(one_exit(head, "max-prob", 0.75), [False, True, True])
    assert_array_equal(one_exit(head, "max-prob", 0.0), [True, True, True])


@covers("exit")
def test_entropy_fires_at_or_below_the_threshold_in_nats() -> None:
    head = np.array([[0.0, 0.0, 0.0, 0.0], [30.0, 0.0, 0.0, 0.0]], np.float32)  # ln 4 = 1.386, ~0
    assert_array_equal(one_exit(head, "entropy", 1.38), [False, True])
    assert_array_equal(one_exit(head, "entropy", 1.39), [True, True])


@covers("exit")
def test_margin_is_top1_minus_top2_of_the_softmax() -> None:
    head = np.array([[np.log(6.0), np.log(3.0), 0.0], [0.0, 0.0, 0.0]], np.float32)  # 0.6 - 0.3, 0
    assert_array_equal(one_exit(head, "margin", 0.29), [True, False])
    assert_array_equal(one_exit(head, "margin", 0.31), [False, False])


@covers("exit")
def test_patience_needs_the_argmax_of_the_last_heads_to_agree() -> None:
    e0 = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    e1 = np.array([[1, 0], [0, 1], [0, 1]], np.float32)
    h = np.array([[2, 0], [0, 2], [0, 2]], np.float32)
    assert_array_equal(one_exit(h, "patience", patience=3, earlier=(e0, e1)), [True, False, True])
    assert_array_equal(one_exit(h, "patience", patience=2, earlier=(e0, e1)), [True, True, True])
    assert_array_equal(one_exit(h, "patience", patience=1), [True, True, True])


@covers("exit")
def test_cosine_compares_with_the_last_earlier_head() -> None:
    e = np.array([[1, 0], [1, 0], [0, 0]], np.float32)
    h = np.array([[2, 0], [1, 1], [1, 1]], np.float32)  # cosine 1, 0.707, 0 (zero vector)
    assert_array_equal(one_exit(h, "cosine", 0.7, earlier=(e,)), [True, True, False])
    assert_array_equal(one_exit(h, "cosine", 0.8, earlier=(e,)), [True, False, False])


@covers("exit_select")
def test_exit_select_takes_the_first_exit_that_fired() -> None:
    g = exit_mlp(6)
    mark_ran(g)
    vals = reference.run(g, {"x": np.random.default_rng(1).standard_normal((6, 8)).astype(np.float32)}, keep=True)
    f0, f1 = vals["fire0"], vals["fire1"]
    want_taken = np.where(f0, 0, np.where(f1, 1, 2))
    assert_array_equal(vals["y.1"], want_taken)
    want = np.where(f0[:, None], vals["head0"], np.where(f1[:, None], vals["head1"], vals["final"]))
    assert_array_equal(vals["y"], want)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 1.0), st.sampled_from(["max-prob", "margin"]))
def test_probability_criteria_agree_with_a_loop_over_rows(seed: int, thr: float, crit: str) -> None:
    head = np.random.default_rng(seed).standard_normal((5, 4)).astype(np.float32) * 3
    got = one_exit(head, crit, thr)
    for r in range(5):
        x = head[r].astype(np.float64)
        p = (np.exp(x - x.max()) / np.exp(x - x.max()).sum()).astype(np.float32)
        top = np.sort(p)[::-1]
        want = top[0] >= np.float32(thr) if crit == "max-prob" else float(top[0]) - float(top[1]) >= thr
        assert got[r] == want


# ---- type rules and the builder ---------------------------------------------------------------------------
@pytest.mark.parametrize("crit,thr,match", [
    ("max-prob", 1.5, r"max-prob threshold must lie in \[0.0, 1.0\]"),
    ("margin", -0.1, r"margin threshold must lie in \[0.0, 1.0\]"),
    ("entropy", -1.0, r"entropy threshold must lie in \[0.0, inf\]"),
    ("cosine", 1.1, r"cosine threshold must lie in \[-1.0, 1.0\]"),
])
def test_thresholds_out_of_range_are_refused(crit: str, thr: float, match: str) -> None:
    with pytest.raises(BuildError, match=match):
        exit_mlp(2, [("max-prob", 0.5, 1), (crit, thr, 1)])


def test_patience_must_be_positive_and_have_its_earlier_heads() -> None:
    with pytest.raises(BuildError, match="patience must be >= 1"):
        exit_mlp(2, [("max-prob", 0.5, 1), ("patience", 0.0, 0)])
    with pytest.raises(BuildError, match=r"patience reads at least 2 earlier head\(s\), got 1"):
        exit_mlp(2, [("max-prob", 0.5, 1), ("patience", 0.0, 3)])
    with pytest.raises(BuildError, match="cosine reads at least 1 earlier head"):
        exit_mlp(2, [("cosine", 0.5, 1), ("max-prob", 0.5, 1)])


def test_every_head_must_have_the_final_output_type() -> None:
    b = GraphBuilder("bad")
    x = b.input("x", f32[2, 4])
    h = b.linear(x, np.ones((3, 4)), name="h")
    f = b.exit(h, threshold=0.5, name="f")
    with pytest.raises(BuildError, match=r"head 0 is f32\[2,3\] but every head must have final's type f32\[2,4\]"):
        b.exit_select(b.relu(x), [(h, f)])


# ---- text form ---------------------------------------------------------------------------------------------
def test_golden_text_and_round_trip() -> None:
    g = exit_mlp(2, features=3, hidden=4, classes=2)
    assert g.to_text() == GOLDEN.read_text()
    back = parse(GOLDEN.read_text())
    assert_graphs_equal(back, g)
    x = {"x": np.arange(6, dtype=np.float32).reshape(2, 3) / 3 - 1}
    for name, arr in reference.run(g, x).items():
        assert_array_equal(reference.run(back, x)[name], arr)


# ---- verifier ----------------------------------------------------------------------------------------------
def _fails(g, match: str, node: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(VerificationError, match=match) as err:
        verify(g)
    assert err.value.kind == "exit" and err.value.node is not None and err.value.node.name == node
    assert f"%{node}" in str(err.value)


def test_verify_exits_numbered_in_graph_order() -> None:
    g = exit_mlp(2)
    exit_nodes(g)[1].attrs["index"] = 0
    _fails(g, "exit has index 0 but is exit number 1 in graph order", "fire1")


def test_verify_pairs_in_exit_order() -> None:
    g = exit_mlp(2, [("max-prob", 0.5, 1), ("max-prob", 0.5, 1)])
    sel = select_node(g)
    assert sel is not None
    sel.inputs[1:5] = [sel.inputs[3], sel.inputs[4], sel.inputs[1], sel.inputs[2]]
    _fails(g, r"pair 0: fire %fire1 is not the output of exit 0 \(%fire0\)", "y")


def test_verify_one_exit_select_and_one_pair_per_exit() -> None:
    g = exit_mlp(2)
    sel = select_node(g)
    assert sel is not None
    del sel.inputs[3:5]
    _fails(g, r"exit_select takes 1 \(head, fire\) pair\(s\) but the graph has 2 exit\(s\)", "y")
    g = exit_mlp(2)
    g.outputs = [g.value("final")]
    g.nodes.remove(select_node(g))
    with pytest.raises(VerificationError, match="needs exactly one exit_select, it has 0"):
        verify(g, allow_dead=True)


def test_verify_earlier_heads_are_heads_of_earlier_exits() -> None:
    g = exit_mlp(2)
    fire1 = exit_nodes(g)[1]
    fire1.inputs[1] = g.value("head1")  # its own head, not an earlier one
    _fails(g, r"earlier heads \(%head1\) must be heads of exits before 1", "fire1")


def test_verify_fires_are_read_only_by_exit_select() -> None:
    b = GraphBuilder("leak")
    x = b.input("x", f32[2, 4])
    h = b.relu(x, name="h")
    f = b.exit(h, threshold=0.5, name="f")
    out, taken = b.exit_select(b.neg(h, name="final"), [(h, f)], name="y")
    b.output(out, taken, b.cast(f, dtype="f32", name="leak"))
    with pytest.raises(VerificationError, match="reads an exit's fire; only exit_select may") as err:
        b.build()
    assert err.value.node is not None and err.value.node.name == "leak"


def test_verify_recorded_segments_are_well_nested() -> None:
    g = exit_mlp(2)
    exit_segments(g)
    g.value("head0").producer.meta["exit_segment"] = 0  # type: ignore[union-attr]
    g.value("act1").producer.meta["exit_segment"] = 2  # type: ignore[union-attr]  (stale: head0 reads it)
    _fails(g, r"segment 0 reads %act1 of segment 2: segments must be well nested", "head0")


def test_verify_out_of_range_threshold_names_the_node() -> None:
    g = exit_mlp(2)
    exit_nodes(g)[0].attrs["threshold"] = 2.0
    with pytest.raises(VerificationError, match=r"fire0 \(exit\).*max-prob threshold must lie in"):
        verify(g)


# ---- segments and cost ----------------------------------------------------------------------------------
def test_segments_follow_what_each_exit_needs() -> None:
    g = exit_mlp(2)
    seg = exit_segments(g)
    assert seg == {"fc1": 0, "act1": 0, "head0": 0, "fire0": 0, "fc2": 1, "act2": 1, "head1": 1, "fire1": 1,
                   "fc3": 2, "act3": 2, "final": 2, "y": 2}
    assert all(n.meta["exit_segment"] == seg[n.name] for n in g.nodes)
    g2 = exit_mlp(2)
    g2.nodes.sort(key=lambda n: n.op in ("exit", "exit_select"))  # exits placed last: segments do not change
    assert exit_segments(g2, write=False) == seg
    assert all("exit_segment" not in n.meta for n in g2.nodes)


def test_cost_estimate_uses_the_segments_and_exit_probabilities() -> None:
    g = exit_mlp(64)
    seg = exit_segments(g, write=False)
    t = estimate(g, "gpu-a100", exit_probabilities=[0.5, 0.2])
    lat = {k: sum(t[n].latency_s for n, s in seg.items() if s == k) for k in range(3)}
    want = lat[0] + 0.5 * lat[1] + 0.5 * 0.8 * lat[2]
    assert t.total.expected_latency_s == pytest.approx(want) and t.total.expected_latency_s < t.total.latency_s
    g.value("head0").producer.meta["exit_probability"] = 0.5  # type: ignore[union-attr]
    g.value("act2").producer.meta["exit_probability"] = 0.2  # type: ignore[union-attr]
    assert estimate(g, "gpu-a100").total.expected_latency_s == pytest.approx(want)


def test_onnx_export_refuses_exits_naming_the_nodes() -> None:
    with pytest.raises(OnnxExportError, match=r"early exits \(%fire0, %fire1, %y\) have no ONNX form"):
        to_onnx(exit_mlp(2))
    to_onnx(exit_mlp(2, exits=False))


# ---- batch rows ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["mlp", "cnn", "transformer-block", "bert-base-layer", "mlp-digits"])
def test_every_node_of_the_zoo_models_keeps_batch_rows_apart(model: str) -> None:
    from tensorsmith.bench.models import load_model
    from tensorsmith.ir.exit_rows import batch_rows
    from tensorsmith.passes import run_pipeline

    g = load_model(model).graph
    for graph in (g, run_pipeline(g, "fuse")):
        rows = batch_rows(graph, graph.inputs[0].type.shape[0])
        assert not rows.reasons and not rows.mixed
        assert all(id(v) in rows.rows for v in graph.outputs)


@pytest.mark.parametrize("build,reason", [
    (lambda b, x: b.transpose(x, [1, 0]), "it moves the batch axis"),
    (lambda b, x: b.concat([x, x], axis=0), "it joins along the batch axis"),
    (lambda b, x: b.add(x, np.ones((4, 6), np.float32)), "does not carry the batch but spans axis 0"),
    (lambda b, x: b.op_multi("quantize-dynamic", x)[0], "per-tensor dynamic quantization"),
    (lambda b, x: b.softmax(x, axis=0), "axis 0 is the batch axis"),
    (lambda b, x: b.slice(x, [1], [3], axes=[0]), "it slices the batch axis"),
])
def test_nodes_that_mix_rows_say_why(build, reason: str) -> None:  # type: ignore[no-untyped-def]
    from tensorsmith.ir.exit_rows import batch_rows

    b = GraphBuilder("mix")
    x = b.input("x", f32[4, 6])
    y = build(b, x)
    b.output(y)
    rows = batch_rows(b.build(), 4)
    assert any(reason in why for why in rows.reasons.values()), rows.reasons
