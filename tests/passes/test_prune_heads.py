"""prune-heads: whole heads removed from BERT-style graphs and the attention op equal the masked model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorsmith.backends import reference
from tensorsmith.bench.models import load_model
from tensorsmith.bench.models.registry import is_installed
from tensorsmith.ir import Graph, GraphBuilder, f32, graphs_equal, parse, verify
from tensorsmith.ir.graph import Value
from tensorsmith.passes import PassContext, run_pipeline
from tensorsmith.passes.prune_heads import find_head_units


def _prune(g: Graph, opts: str) -> tuple[Graph, str]:
    ctx = PassContext()
    out = run_pipeline(g, f"prune-heads{{{opts}}}", ctx=ctx)
    return out, ctx.records[-1].report


def masked_heads(g: Graph, pruned: Graph) -> Graph:
    """`g` with the removed heads' columns of each output projection set to zero."""
    m = g.copy()
    meta = {n.name: n.meta["prune-heads"] for n in pruned.nodes if "prune-heads" in n.meta}
    for n in m.nodes:
        if n.name in meta:
            w = n.inputs[1].data.copy()
            view = w.reshape(w.shape[0], meta[n.name]["heads"], meta[n.name]["head_dim"])
            view[:, meta[n.name]["removed"], :] = 0
            n.inputs[1] = Value(n.inputs[1].name, n.inputs[1].type, w)
    return m


def _close_to_masked(g: Graph, out: Graph, inputs: dict[str, np.ndarray]) -> None:
    want, got = reference.run(masked_heads(g, out), inputs), reference.run(out, inputs)
    for v in g.outputs:
        a = want[v.name].astype(np.float64)
        np.testing.assert_allclose(got[v.name], a, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(a).max())))


def attention_op_graph(rng: np.random.Generator, heads: int, d: int, seq: int = 5, mask: bool = True) -> Graph:
    """x -> q/k/v linears -> attention op (with an additive [B, 1, 1, S] mask) -> output linear + residual."""
    e = heads * d
    b = GraphBuilder("att")
    x = b.input("x", f32[2, seq, e])
    w = lambda *s: (rng.standard_normal(s) / np.sqrt(s[-1])).astype(np.float32)  # noqa: E731
    q, k, v = (b.linear(x, w(e, e), w(e), name=n) for n in ("q", "k", "v"))
    m = b.const(np.where(np.arange(seq) < seq - 1, 0, -1e4).astype(np.float32).reshape(1, 1, 1, seq), "m")
    a = b.attention(q, k, v, m if mask else None, heads=heads, name="att")
    b.output(b.add(b.linear(a, w(e, e), w(e), name="o"), x, name="y"))
    return b.build()


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 6), st.integers(1, 4), st.sampled_from([0.25, 0.5, 0.75]), st.booleans(), st.integers(0, 999))
def test_attention_op_heads_pruned_equal_masked(heads: int, d: int, sparsity: float, mask: bool, seed: int) -> None:
    g = attention_op_graph(np.random.default_rng(seed), heads, d, mask=mask)
    out, report = _prune(g, f"sparsity={sparsity}")
    verify(out)
    kept = heads - min(heads - 1, int(np.floor(sparsity * heads + 0.5)))
    att = next(n for n in out.nodes if n.op == "attention")
    assert att.attrs["heads"] == kept and att.inputs[0].type.shape[2] == kept * d, report
    x = {"x": np.random.default_rng(seed).standard_normal((2, 5, heads * d)).astype(np.float32)}
    _close_to_masked(g, out, x)


@pytest.mark.parametrize("model", ["transformer-block", "bert-base-layer"])
def test_bert_layout_heads_pruned_equal_masked(model: str) -> None:
    m = load_model(model)
    out, report = _prune(m.graph, "sparsity=0.5")
    heads = 4 if model == "transformer-block" else 12
    assert f"layer0.o {heads} -> {heads // 2} heads" in report
    hd = 16 if model == "transformer-block" else 64
    nodes = {n.name: n for n in out.nodes}
    assert nodes["layer0.q_heads"].attrs["shape"][2] == heads // 2
    assert nodes["layer0.o"].inputs[1].type.shape[1] == heads // 2 * hd
    assert nodes["layer0.ffn_in"].inputs[1].type.shape == m.graph.value("layer0.ffn_in.weight").type.shape
    _close_to_masked(m.graph, out, m.inputs)
    if model == "transformer-block":  # the text form round-trips (BERT-base's 28 MB of constants: skipped)
        assert graphs_equal(parse(out.to_text()), out)


def test_least_important_heads_go() -> None:
    g = attention_op_graph(np.random.default_rng(1), 4, 2)
    wo = g.value("o.weight").data.astype(np.float64).reshape(8, 4, 2)
    norms = np.sqrt((wo ** 2).sum(axis=(0, 2)))
    out, _ = _prune(g, "sparsity=0.5")
    assert out.nodes[4].meta["prune-heads"]["removed"] == sorted(np.argsort(norms)[:2].tolist())


def test_per_head_mask_and_skip_are_reported() -> None:
    rng = np.random.default_rng(2)
    b = GraphBuilder("att")
    x = b.input("x", f32[1, 3, 8])
    q, k, v = (b.linear(x, rng.standard_normal((8, 8)).astype(np.float32), np.zeros(8, np.float32), name=n)
               for n in "qkv")
    a = b.attention(q, k, v, b.const(np.zeros((1, 4, 1, 3), np.float32), "hm"), heads=4, name="att")
    b.output(b.linear(a, rng.standard_normal((8, 8)).astype(np.float32), name="o"))
    _, report = _prune(b.build(), "sparsity=0.5")
    assert "att (the mask %hm differs per head)" in report
    _, report = _prune(attention_op_graph(rng, 4, 2), "sparsity=0.5,skip=o")
    assert "o (named in skip)" in report and "nothing pruned" in report


@pytest.mark.skipif(not is_installed("tokenizers"), reason="needs the models extra")
def test_minilm_units_are_found_in_every_layer() -> None:
    try:
        from tensorsmith.bench.models.minilm import minilm_graph
        g = minilm_graph(1, 8)
    except (ImportError, FileNotFoundError) as e:
        pytest.skip(str(e))
    units, skipped = find_head_units(g)
    assert [u.out.name for u in units] == [f"layer{i}.o" for i in range(6)] and not skipped
    assert all(u.heads == 12 and u.head_dim == 32 for u in units)
    out, _ = _prune(g, "sparsity=0.5")
    inputs = {"input_ids": np.array([[101, 7592, 2088, 2003, 1037, 3231, 1012, 102]]),
              "attention_mask": np.ones((1, 8), np.float32)}
    _close_to_masked(g, out, inputs)


def test_after_fuse_the_attention_op_is_found_and_the_report_says_to_prune_first() -> None:
    m = load_model("transformer-block")
    _, report = _prune(run_pipeline(m.graph, "fuse"), "sparsity=0.5")
    assert "inside fused region %layer0.attn_residual: run prune-heads before fuse" in report
    out = run_pipeline(m.graph, "prune-heads{sparsity=0.5},fuse")
    att = next(n for n in out.nodes if n.op == "attention")
    assert att.attrs["heads"] == 2
    pruned = run_pipeline(m.graph, "prune-heads{sparsity=0.5}")
    _close_to_masked(m.graph, pruned, m.inputs)
    y_fused, y = reference.run(out, m.inputs)["layer0.ln2"], reference.run(pruned, m.inputs)["layer0.ln2"]
    np.testing.assert_allclose(y_fused, y, rtol=1e-5, atol=1e-5)
