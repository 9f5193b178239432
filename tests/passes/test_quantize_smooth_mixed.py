"""SmoothQuant (exact in f32, folded or as a mul) and per-layer sensitivity / mixed precision."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.backends import reference
from tensorsmith.ir import Graph, GraphBuilder, f32, verify
from tensorsmith.passes import PassContext, PipelineError, run_pipeline
from tensorsmith.passes.calibration import observe_graph
from tensorsmith.passes.pipeline import make_pass
from tensorsmith.passes.sensitivity import agreement, format_sensitivity
from tensorsmith.passes.smoothquant import smooth, smoothing_scales

RNG = np.random.default_rng(23)
K = 32


def _w(n: int, k: int) -> np.ndarray:
    return (RNG.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)


def _block(residual: bool) -> Graph:
    """layernorm -> q, k (sharing the input) -> linear -> linear; with `residual` the layernorm also feeds an add."""
    b = GraphBuilder("block")
    x = b.input("x", f32[6, 10, K])
    h = b.layernorm(x, RNG.uniform(0.5, 2, K).astype(np.float32), RNG.standard_normal(K).astype(np.float32),
                    name="ln")
    q = b.linear(h, _w(K, K), RNG.standard_normal(K).astype(np.float32), name="q")
    k = b.linear(h, _w(K, K), name="k")
    u = b.linear(b.add(q, k), _w(48, K), RNG.standard_normal(48).astype(np.float32), name="up")
    y = b.linear(u, _w(K, 48), name="down")
    b.output(b.add(y, h) if residual else y)
    return b.build()


def _inputs() -> dict[str, np.ndarray]:
    return {"x": RNG.standard_normal((6, 10, K)).astype(np.float32)}


def test_scales_formula() -> None:
    s = smoothing_scales(np.array([4.0, 0.0, 1.0]), np.array([1.0, 2.0, 0.0]), 0.5)
    np.testing.assert_allclose(s, [2.0, 1.0, 1.0])


@pytest.mark.parametrize("residual", [False, True])
def test_smoothing_alone_preserves_outputs(residual: bool) -> None:
    g = _block(residual)
    cal = [_inputs() for _ in range(2)]
    g2 = g.copy()
    layers = [n for n in g2.nodes if n.op == "linear"]
    names = {n.inputs[0].name: n.inputs[0].name for n in layers}
    st = observe_graph(g2, cal, names, names)
    done = smooth(g2, layers, {k: st[k].channel_absmax for k in names}, 0.5)  # type: ignore[misc]
    verify(g2)
    where = {d.layers: d.folded_into for d in done}
    assert where[("q", "k")] == ("mul ln.smooth" if residual else "layernorm ln")  # the residual add reads ln too
    assert where[("up",)].startswith("mul ")  # its input is an add: nothing to fold into
    assert where[("down",)] == "linear up"
    for b in cal + [_inputs()]:
        y, y2 = reference.run(g, b), reference.run(g2, b)
        for name in y:
            np.testing.assert_allclose(y2[name], y[name], rtol=1e-5, atol=1e-5 * np.abs(y[name]).max())


def _outlier_mlp() -> tuple[Graph, list[dict[str, np.ndarray]]]:
    """Four linears; fc1's output channel 0 is 300x larger (fc2's weight column shrunk to match), so fc2's
    activation has an outlier channel and per-tensor u8 leaves its other channels a few levels."""
    w1, w2 = _w(K, K), _w(K, K)
    w1[0] *= 300.0
    w2[:, 0] /= 300.0
    b = GraphBuilder("outlier")
    x = b.input("x", f32[64, K])
    h = b.linear(x, w1, name="fc1")
    h = b.relu(b.linear(h, w2, name="fc2"))
    h = b.relu(b.linear(h, _w(K, K), name="fc3"))
    b.output(b.linear(h, _w(8, K), name="fc4"))
    return b.build(), [{"x": RNG.standard_normal((64, K)).astype(np.float32)} for _ in range(2)]


def test_sensitivity_ranks_the_outlier_layer_first() -> None:
    g, cal = _outlier_mlp()
    ranking = make_pass("quantize", {"scheme": "static", "min_kn": "0"}).sensitivity(g, PassContext(calibration=cal))  # type: ignore[attr-defined]
    assert [s.layer for s in ranking][0] == "fc2" and len(ranking) == 4
    assert ranking[0].sqnr_db < ranking[1].sqnr_db - 10 and ranking[0].cosine < ranking[-1].cosine
    assert all(a.sqnr_db <= b.sqnr_db for a, b in zip(ranking, ranking[1:]))
    table = format_sensitivity(ranking, 2)
    assert table.count("\n") == 3 and "| fc2 |" in table


def test_agreement_metrics() -> None:
    y = [{"y": np.array([[1.0, 0.0], [0.0, 2.0]])}]
    a = agreement(y, [{"y": np.array([[1.0, 0.1], [0.0, 2.0]])}])
    assert a.sqnr_db == pytest.approx(10 * np.log10(5 / 0.01)) and a.cosine == pytest.approx(1 / np.sqrt(1.01))


def test_keep_fp32_and_min_cosine() -> None:
    g, cal = _outlier_mlp()
    ctx = PassContext(calibration=cal)
    full = run_pipeline(g, "quantize{scheme=static,min_kn=0}", ctx=ctx)
    ref = [reference.run(g, b) for b in cal]
    base = agreement(ref, [reference.run(full, b) for b in cal])
    kept = run_pipeline(g, "quantize{scheme=static,min_kn=0,keep_fp32=1}", ctx=ctx)
    assert "quantize" not in kept.value("fc2").producer.meta  # type: ignore[union-attr]
    assert sum("quantize" in n.meta for n in kept.nodes) == 3
    assert "kept f32 by sensitivity: fc2" in ctx.records[-1].report
    mixed = agreement(ref, [reference.run(kept, b) for b in cal])
    assert mixed.cosine > base.cosine and mixed.sqnr_db > base.sqnr_db + 10
    budget = min(0.99999, (1 + mixed.cosine) / 2) if mixed.cosine < 0.99999 else 0.999999
    q = run_pipeline(g, f"quantize{{scheme=static,min_cosine={budget}}}", ctx=ctx)
    got = agreement(ref, [reference.run(q, b) for b in cal])
    assert got.cosine >= budget and "fc2" in ctx.records[-1].report
    with pytest.raises(PipelineError, match="min_cosine"):
        run_pipeline(g, "quantize{min_cosine=2}")


def test_smooth_option_helps_the_outlier_layer_and_is_reported() -> None:
    g, cal = _outlier_mlp()
    ctx = PassContext(calibration=cal)
    ref = [reference.run(g, b) for b in cal]
    plain_graph = run_pipeline(g, "quantize{scheme=static,min_kn=0}", ctx=ctx)
    plain = agreement(ref, [reference.run(plain_graph, b) for b in cal])
    sm = run_pipeline(g, "quantize{scheme=static,min_kn=0,smooth=0.5}", ctx=ctx)
    verify(sm)
    smoothed = agreement(ref, [reference.run(sm, b) for b in cal])
    assert smoothed.sqnr_db > plain.sqnr_db + 6
    report = ctx.records[-1].report
    assert "smoothed 4 activation(s), 1 folded into their producer, 3 by an inserted mul" in report
    assert "via linear fc1" in report
    with pytest.raises(PipelineError, match="needs scheme=static"):
        run_pipeline(g, "quantize{smooth=0.5}")
