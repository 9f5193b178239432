"""prune-channels: the pruned graph computes what the masked graph computes, on random MLPs, CNNs and residuals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from tensorsmith.backends import reference
from tensorsmith.ir import Graph, GraphBuilder, f32, graphs_equal, parse, verify
from tensorsmith.passes import PassContext, PipelineError, make_pass, run_pipeline

from .channel_graphs import cnn, cnn_graphs, inputs_for, masked, mlp, mlp_graphs


def _prune(g: Graph, opts: str = "sparsity=0.5") -> tuple[Graph, str]:
    ctx = PassContext()
    out = run_pipeline(g, f"prune-channels{{{opts}}}", ctx=ctx)
    return out, ctx.records[-1].report


def _assert_matches_masked(g: Graph, out: Graph, report: str) -> None:
    x = inputs_for(g)
    want = reference.run(masked(g, out), x)
    got = reference.run(out, x)
    for v in g.outputs:
        a, b = want[v.name].astype(np.float64), got[v.name].astype(np.float64)
        assert a.shape == b.shape
        scale = max(1.0, float(np.abs(a).max()))
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=2e-5 * scale, err_msg=report)


@settings(max_examples=40, deadline=None)
@given(mlp_graphs())
def test_mlp_pruned_equals_masked(g: Graph) -> None:
    out, report = _prune(g)
    verify(out)
    _assert_matches_masked(g, out, report)
    assert out.num_parameters() <= g.num_parameters()


@settings(max_examples=40, deadline=None)
@given(cnn_graphs())
def test_cnn_and_residual_pruned_equals_masked(g: Graph) -> None:
    out, report = _prune(g)
    verify(out)
    _assert_matches_masked(g, out, report)


def test_shapes_shrink_through_batchnorm_flatten_and_the_next_layer() -> None:
    rng = np.random.default_rng(1)
    g = cnn(rng, [3, 8, 6], ["relu", "sigmoid"], [True, True], [1, 0], [True, False], residual=False)
    out, report = _prune(g)
    conv0, conv1, fc = (out.value(n) for n in ("conv0", "conv1", "out"))
    assert conv0.type.shape[1] == 4 and conv1.type.shape[1] == 3
    nodes = {n.name: n for n in out.nodes}
    assert nodes["bn0"].inputs[1].type.shape == (4,) and nodes["conv1"].inputs[1].type.shape == (3, 4, 3, 3)
    spatial = out.value("act1").type.shape[2] * out.value("act1").type.shape[3]
    assert nodes["out"].inputs[1].type.shape == (5, 3 * spatial) and fc.type.shape == (2, 5)
    assert nodes["conv0"].meta["prune-channels"]["channels"] == 8
    assert len(nodes["conv0"].meta["prune-channels"]["removed"]) == 4
    assert "conv0 8 -> 4" in report and "out (%out is a graph output)" in report
    _assert_matches_masked(g, out, report)


def test_lowest_norm_channels_go_and_criterion_counts() -> None:
    g = mlp(np.random.default_rng(2), [6, 8], ["relu"], [False], [False])
    w = g.nodes[0].inputs[1].data.astype(np.float64)
    for crit, score in (("l1", np.abs(w).sum(1)), ("l2", np.sqrt((w * w).sum(1)))):
        out, _ = _prune(g, f"sparsity=0.25,criterion={crit}")
        removed = out.nodes[0].meta["prune-channels"]["removed"]
        assert sorted(removed) == sorted(np.argsort(score)[:2].tolist())


def test_residual_ties_both_operands_to_the_same_channels() -> None:
    rng = np.random.default_rng(3)
    g = cnn(rng, [2, 6], ["relu"], [False], [1], [False], residual=True)
    out, report = _prune(g)
    nodes = {n.name: n for n in out.nodes}
    a, b = nodes["conv0"].meta["prune-channels"], nodes["branch"].meta["prune-channels"]
    assert a["removed"] == b["removed"] and a["tied"] == ["branch"]
    assert "conv0+branch (tied) 6 -> 3" in report
    _assert_matches_masked(g, out, report)


def _graph(build) -> Graph:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    b = GraphBuilder("g")
    x = b.input("x", f32[2, 8])
    b.output(build(b, x, lambda *s: rng.standard_normal(s).astype(np.float32)))
    return b.build()


@pytest.mark.parametrize("name,build,why", [
    ("layernorm over the channels",
     lambda b, x, w: b.linear(b.layernorm(b.linear(x, w(6, 8), w(6), name="fc"), w(6), w(6), name="ln"), w(3, 6)),
     "fc (layernorm %ln normalizes over the channel axis 1"),
    ("residual from the input",
     lambda b, x, w: b.linear(b.add(b.linear(x, w(8, 8), w(8), name="fc"), x, name="res"), w(3, 8)),
     "fc (add %res joins the channels with %x, which no prunable layer produces"),
    ("softmax over the channels",
     lambda b, x, w: b.linear(b.softmax(b.linear(x, w(6, 8), name="fc"), name="sm"), w(3, 6)),
     "fc (softmax %sm normalizes over the channel axis"),
    ("reshape splitting the channels",
     lambda b, x, w: b.reshape(b.linear(x, w(6, 8), name="fc"), (2, 2, 3), name="rs"),
     "fc (reshape %rs [2, 6] -> [2, 2, 3] splits or moves the channel axis 1)"),
    ("skip by glob",
     lambda b, x, w: b.linear(b.relu(b.linear(x, w(6, 8), name="fc_keep")), w(3, 6)),
     "nothing pruned"),
])
def test_groups_that_cannot_shrink_are_kept_with_the_reason(name: str, build, why: str) -> None:  # type: ignore[no-untyped-def]
    g = _graph(build)
    out, report = _prune(g, "sparsity=0.5,skip=fc_*")
    assert why in report, report
    assert graphs_equal(out, g)


def test_layernorm_over_another_axis_lets_conv_channels_shrink() -> None:
    rng = np.random.default_rng(4)
    b = GraphBuilder("g")
    x = b.input("x", f32[2, 3, 4, 4])
    h = b.conv2d(x, rng.standard_normal((6, 3, 1, 1)).astype(np.float32), name="conv")
    h = b.layernorm(h, axis=2, name="ln")  # over H, W: each channel on its own
    h = b.flatten(h, axis=1, name="flat")
    b.output(b.linear(h, rng.standard_normal((2, 96)).astype(np.float32), name="out"))
    g = b.build()
    out, report = _prune(g)
    assert out.value("ln").type.shape == (2, 3, 4, 4) and "not be constant" in report
    _assert_matches_masked(g, out, report)


def test_concat_along_the_channels_shrinks_each_part() -> None:
    rng = np.random.default_rng(5)
    w = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    b = GraphBuilder("g")
    x = b.input("x", f32[2, 8])
    a = b.sigmoid(b.linear(x, w(4, 8), w(4), name="fa"), name="sa")
    c = b.relu(b.linear(x, w(6, 8), w(6), name="fc"), name="rc")
    cat = b.concat([a, x, c], axis=1, name="cat")
    b.output(b.linear(cat, w(3, 18), w(3), name="out"))
    g = b.build()
    out, report = _prune(g)
    assert out.value("cat").type.shape == (2, 2 + 8 + 3)
    _assert_matches_masked(g, out, report)


def test_padded_conv_after_a_nonzero_constant_is_reported_and_exact_inside() -> None:
    rng = np.random.default_rng(6)
    g = cnn(rng, [2, 6, 4], ["sigmoid", "relu"], [False, False], [0, 1], [False, False], residual=False)
    out, report = _prune(g)
    assert "conv1: removed channels' constants folded into the bias; exact away from the padded border" in report
    x = inputs_for(g)
    want = reference.run(masked(g, out), x, keep=True)["act1"]
    got = reference.run(out, x, keep=True)["act1"]
    kept = [c for c in range(4) if c not in out.nodes[2].meta["prune-channels"]["removed"]]
    np.testing.assert_allclose(got[:, :, 1:-1, 1:-1], want[:, kept, 1:-1, 1:-1], rtol=1e-5, atol=1e-5)


def test_fused_regions_block_and_say_run_before_fuse() -> None:
    g = mlp(np.random.default_rng(7), [6, 8, 8], ["relu", "relu"], [False, False], [False, False])
    fused = run_pipeline(g, "fuse")
    _, report = _prune(fused)
    assert "nothing pruned" in report


def test_options_and_text_round_trip() -> None:
    p = make_pass("prune-channels", {"sparsity": "0.3", "criterion": "l1", "skip": "fc*"})
    assert (p.sparsity, p.criterion, p.skip) == (0.3, "l1", "fc*")
    with pytest.raises(PipelineError, match="sparsity"):
        make_pass("prune-channels", {"sparsity": "1.5"})
    with pytest.raises(PipelineError, match="criterion"):
        make_pass("prune-channels", {"criterion": "l3"})
    g = mlp(np.random.default_rng(8), [6, 8, 8], ["relu", "gelu"], [True, False], [False, True])
    out, _ = _prune(g)
    assert graphs_equal(parse(out.to_text()), out)
