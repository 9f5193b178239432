"""The early-exit pass: heads fitted, thresholds within the budget, never-firing exits exact, report, errors."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.backends.cost import estimate
from tensorsmith.ir import GraphBuilder, exits, f32, verify
from tensorsmith.passes import PassContext, run_pipeline
from tensorsmith.passes.early_exit import (
    EarlyExit,
    EarlyExitError,
    batch_chunks,
    block_outputs,
    exit_points,
    final_value,
)

pytest.importorskip("sklearn", reason="the digits models need scikit-learn: pip install 'tensorsmith[models]'")

from tensorsmith.bench.models.digits import digits_split  # noqa: E402
from tensorsmith.bench.models.digits_resmlp import graph_from_resmlp, trained_resmlp  # noqa: E402

BATCH = 150


@lru_cache(maxsize=1)
def _setup() -> tuple:
    """The digits ResMLP at batch 150, calibration feeds (train rows to fit, test rows held out), evaluation rows."""
    s = digits_split()
    g = graph_from_resmlp(trained_resmlp(), BATCH)
    feeds = [{"x": s.x_train[:600], "labels": s.y_train[:600]}, {"x": s.x_test[:300], "labels": s.y_test[:300]}]
    return g, feeds, s.x_test[300:450], s.y_test[300:450]


def _run(pipeline: str, **ctx_kw) -> tuple:  # type: ignore[no-untyped-def]
    g, feeds, _, _ = _setup()
    ctx = PassContext(calibration=feeds, **ctx_kw)
    return g, run_pipeline(g, pipeline, ctx=ctx), ctx


HOLDOUT = 300 / 900


def test_exit_points_from_blocks_and_globs() -> None:
    g, _, _, _ = _setup()
    assert block_outputs(g) == [f"block{i}.out" for i in range(8)]
    assert exit_points(g, every=2) == ["block1.out", "block3.out", "block5.out"]  # never after the last block
    assert exit_points(g) == [f"block{i}.out" for i in range(7)]
    assert exit_points(g, at="block[03].out+block1.out") == ["block0.out", "block1.out", "block3.out"]
    assert final_value(g).name == "head"  # the softmax's input: heads are logits
    with pytest.raises(EarlyExitError, match="no node output of graph 'resmlp_digits' matches nope"):
        exit_points(g, at="block1.out+nope")


def test_pass_inserts_heads_exits_and_one_select() -> None:
    g, g2, ctx = _run(f"early-exit{{every=2,holdout={HOLDOUT}}}")
    verify(g2)
    ex = exits.exit_nodes(g2)
    assert 1 <= len(ex) <= 3 and [n.attrs["index"] for n in ex] == list(range(len(ex)))
    sel = exits.select_node(g2)
    assert sel is not None and sel.inputs[0].name == "head"
    assert [o.name for o in g2.outputs] == ["probs"] and g2.outputs[0].producer.inputs[0] is sel.outputs[0]
    seg = exits.exit_segments(g2, write=False)
    assert seg["block0.out"] == 0 and seg["head"] == len(ex)
    probs = [n.meta["exit_probability"] for n in ex]
    assert all(0 < p <= 1 for p in probs)
    est = estimate(g2, "cpu-host").total
    assert est.expected_latency_s < 0.6 * est.latency_s  # most inputs leave after two of eight blocks
    assert len(g.nodes) < len(g2.nodes)  # the input graph is left as it was
    rec = ctx.records[-1]
    assert rec.changed and "threshold" in rec.report and "accuracy of those leaving" in rec.report
    assert "with exits vs" in rec.report


def test_heads_are_fitted() -> None:
    g, g2, _ = _run(f"early-exit{{at=block1.out+block3.out,threshold=1,holdout={HOLDOUT}}}")
    _, _, x, y = _setup()
    vals = reference.run(g2, {"x": x}, keep=True)
    for k in range(2):
        assert np.mean(np.argmax(vals[f"exit{k}.head"], axis=1) == y) > 0.93


@pytest.mark.parametrize("criterion", ["max-prob", "entropy", "margin"])
@pytest.mark.parametrize("budget", [0.0, 1.0])
def test_thresholds_meet_the_budget_on_the_calibration_data(criterion: str, budget: float) -> None:
    g, feeds, _, _ = _setup()
    p = EarlyExit(every=2, criterion=criterion, budget=budget, holdout=HOLDOUT)  # type: ignore[call-arg]
    fitted = p.fit(g, feeds)
    plan = fitted.plan
    assert plan.quality_without - plan.quality_with <= budget / 100 + 1e-12
    specs, _ = p.specs(fitted)
    if not specs:
        return
    from tensorsmith.passes.early_exit import insert_exits

    g2 = insert_exits(g, specs)
    held = feeds[1]  # the held-out rows, run through the graph with its exits
    with_exits = reference.run(g2, {"x": held["x"][:BATCH]})["probs"], reference.run(g2, {"x": held["x"][BATCH:]})
    acc = np.mean(np.argmax(np.concatenate([with_exits[0], with_exits[1]["probs"]]), 1) == held["labels"])
    full = np.concatenate([reference.run(g, {"x": held["x"][i:i + BATCH]})["probs"] for i in (0, BATCH)])
    assert np.mean(np.argmax(full, 1) == held["labels"]) - acc <= budget / 100 + 1e-12
    assert acc == pytest.approx(plan.quality_with)


def test_never_firing_thresholds_give_the_model_without_exits_exactly() -> None:
    g, g2, ctx = _run(f"early-exit{{every=2,criterion=entropy,threshold=0,holdout={HOLDOUT}}}")
    _, _, x, _ = _setup()
    assert len(exits.exit_nodes(g2)) == 3
    full = reference.run(g, {"x": x})["probs"]
    got = reference.run(g2, {"x": x}, keep=True)
    np.testing.assert_array_equal(got["probs"], full)
    assert np.all(got["head.exit.1"] == 3)  # taken: every row ran to the end
    nb = runtime.compile(g2, backend="numba").run({"x": x})["probs"]
    nb_full = runtime.compile(g, backend="numba").run({"x": x})["probs"]
    np.testing.assert_array_equal(nb, nb_full)
    assert "leaving 0.0% of inputs" in ctx.records[-1].report


def test_numba_backend_matches_reference_with_exits_firing() -> None:
    g, g2, _ = _run(f"early-exit{{every=2,budget=2,holdout={HOLDOUT}}}")
    _, _, x, _ = _setup()
    ref = reference.run(g2, {"x": x}, keep=True)
    assert 0 < np.mean(ref["head.exit.1"] < len(exits.exit_nodes(g2)))  # some rows leave early
    got = runtime.compile(g2, backend="numba").run({"x": x})["probs"]
    np.testing.assert_allclose(got, ref["probs"], rtol=1e-4, atol=1e-5)


def test_patience_keeps_head_only_exits_for_the_first_heads() -> None:
    g, g2, ctx = _run(f"early-exit{{every=1,criterion=patience,patience=3,holdout={HOLDOUT}}}")
    ex = exits.exit_nodes(g2)
    assert [n.attrs["criterion"] for n in ex[:2]] == ["entropy", "entropy"]
    assert all(n.attrs["criterion"] == "patience" and n.attrs["patience"] == 3 and len(n.inputs) == 3
               for n in ex[2:])
    assert "head-only" in ctx.records[-1].report


def test_without_labels_the_heads_learn_the_final_argmax() -> None:
    g, feeds, x, _ = _setup()
    unlabeled = [{"x": f["x"]} for f in feeds]
    g2 = run_pipeline(g, f"early-exit{{at=block3.out,threshold=1,holdout={HOLDOUT}}}",
                      ctx=PassContext(calibration=unlabeled))
    vals = reference.run(g2, {"x": x}, keep=True)
    assert np.mean(np.argmax(vals["exit0.head"], 1) == np.argmax(vals["head"], 1)) > 0.95
    with pytest.raises(EarlyExitError, match="quality=accuracy needs labels under 'labels'"):
        run_pipeline(g, "early-exit{quality=accuracy}", ctx=PassContext(calibration=unlabeled))


def test_errors_name_the_fault() -> None:
    g, _, _, _ = _setup()
    with pytest.raises(EarlyExitError, match=r"needs calibration data: PassContext\(calibration="):
        run_pipeline(g, "early-exit{every=2}")
    with pytest.raises(ValueError, match="criterion='vote' is not one of"):
        EarlyExit(criterion="vote")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="patience=2 is for criterion=patience"):
        EarlyExit(patience=2)  # type: ignore[call-arg]
    with pytest.raises(EarlyExitError, match=r"exit0.fire come after final %block2.out: exits go before it"):
        run_pipeline(g, f"early-exit{{at=block3.out,final=block2.out,holdout={HOLDOUT}}}",
                     ctx=PassContext(calibration=_setup()[1]))
    with pytest.raises(EarlyExitError, match=r"calibration feed 0 lacks input\(s\) x"):
        run_pipeline(g, "early-exit{every=2}", ctx=PassContext(calibration=[{"y": np.zeros(3)}]))


def test_feeds_are_cut_into_the_graph_batch() -> None:
    b = GraphBuilder("two")
    x = b.input("x", f32[4, 2])
    b.output(b.relu(x, name="y"))
    chunks = batch_chunks(b.build(), {"x": np.arange(20, dtype=np.float32).reshape(10, 2)})
    assert [r for _, r in chunks] == [4, 4, 2]
    np.testing.assert_array_equal(chunks[-1][0]["x"][2:], np.repeat(chunks[-1][0]["x"][1:2], 2, axis=0))


def _sequence_graph(batch: int = 6, seq: int = 5, emb: int = 8, layers: int = 3) -> tuple:
    """[B, S, E] layers with a mask and mean pooling at the end: a small MiniLM-shaped graph."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("seq")
    x = b.input("x", f32[batch, seq, emb])
    m = b.input("mask", f32[batch, seq])
    h = x
    for i in range(layers):
        w = (rng.standard_normal((emb, emb)) / np.sqrt(emb)).astype(np.float32)
        h = b.add(h, b.tanh(b.linear(h, w, np.zeros(emb, np.float32), name=f"layer{i}.fc"), name=f"layer{i}.act"),
                  name=f"layer{i}.out")
    s = b.reduce_sum(b.mul(h, b.reshape(m, shape=(batch, seq, 1), name="m3"), name="hm"), axes=(1,),
                     keepdims=False, name="summed")
    b.output(b.div(s, b.reduce_sum(m, axes=(1,), keepdims=True, name="count"), name="pooled"))
    g = b.build()
    feeds = []
    for _ in range(4):
        xs = rng.standard_normal((batch, seq, emb)).astype(np.float32)
        mask = (np.arange(seq)[None, :] < rng.integers(1, seq + 1, (batch, 1))).astype(np.float32)
        feeds.append({"x": xs, "mask": mask})
    return g, feeds


def test_cosine_regression_heads_on_masked_sequences() -> None:
    g, feeds = _sequence_graph()
    ctx = PassContext(calibration=feeds)
    g2 = run_pipeline(g, "early-exit{at=layer0.out+layer1.out,criterion=cosine,budget=0.05,mask=mask,holdout=0.5}",
                      ctx=ctx)
    ex = exits.exit_nodes(g2)
    assert [n.attrs["criterion"] for n in ex] == ["entropy", "cosine"] and ex[1].inputs[1] is ex[0].inputs[0]
    assert [o.name for o in g2.outputs] == ["pooled"]
    vals = reference.run(g2, feeds[3], keep=True)
    from tensorsmith.passes.early_exit_fit import pool_rows

    np.testing.assert_allclose(vals["exit0.pool"], pool_rows(vals["layer0.out"], feeds[3]["mask"]), atol=1e-6)
    assert "cosine" in ctx.records[-1].report
