"""quantize{group_size}: one scale per output channel and group along K; the stated bound against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.backends import reference
from tensorsmith.ir import Graph, GraphBuilder, f32, graphs_equal, parse, verify
from tensorsmith.passes import PassContext, PipelineError, run_pipeline

RNG = np.random.default_rng(11)
EPS32 = 2.0**-24
QMAX = {"int4": 7, "int8": 127}


def _linear(n: int, k: int, m: int = 5) -> Graph:
    b = GraphBuilder("lin")
    x = b.input("x", f32[m, k])
    w = (RNG.standard_normal((n, k)) * RNG.uniform(0.1, 3.0, (1, k))).astype(np.float32)  # scales vary along K
    b.output(b.linear(x, b.const(w, "fc.weight"), b.const(RNG.standard_normal(n).astype(np.float32), "fc.bias"),
                      name="fc"))
    return b.build()


def _dequantized(q: Graph) -> tuple[np.ndarray, np.ndarray, int]:
    dq = next(n for n in q.nodes if n.op == "dequantize")
    return np.asarray(dq.inputs[0].data), np.asarray(dq.inputs[1].data), dq.attrs["group_size"]


@pytest.mark.parametrize("precision", ["int4", "int8"])
@pytest.mark.parametrize("k,group", [(128, 32), (100, 32), (64, 64), (70, 128)])
def test_grouped_linear_within_the_stated_bound(precision: str, k: int, group: int) -> None:
    """K not a multiple of group_size: the last group is shorter (ONNX block_size semantics)."""
    n = 12
    g = _linear(n, k)
    q = run_pipeline(g, f"quantize{{precision={precision},group_size={group}}}", ctx=PassContext())
    stored, scale, gs = _dequantized(q)
    groups = -(-k // group)
    assert gs == group and scale.shape == (n, groups) and scale.dtype == np.float32
    w = np.asarray(g.value("fc.weight").data, np.float64)
    full = np.repeat(scale.astype(np.float64), group, axis=1)[:, :k]
    for gi in range(groups):  # scale = max|w| over the group / qmax
        blk = np.abs(w[:, gi * group:(gi + 1) * group]).max(axis=1)
        np.testing.assert_allclose(scale[:, gi], blk / QMAX[precision], rtol=1e-6)
    back = stored.astype(np.float64) * full
    assert np.all(np.abs(w - back) <= full / 2 * (1 + 2**-20)), "a weight moved by more than its group's scale/2"
    meta = next(nd for nd in q.nodes if nd.op == "linear").meta["quantize"]
    assert meta["group_size"] == group and meta["weight_bound"] == "scale/2 of its group"
    for _ in range(3):
        x = (RNG.standard_normal((5, k)) * 2).astype(np.float32)
        y = reference.run(g, {"x": x})["fc"].astype(np.float64)
        y2 = reference.run(q, {"x": x})["fc"].astype(np.float64)
        ax = np.abs(x.astype(np.float64))
        gx = np.stack([ax[:, gi * group:(gi + 1) * group].sum(1) for gi in range(groups)], 1)  # [m, groups]
        bound = gx @ (scale.astype(np.float64) / 2).T  # sum_g scale_ig / 2 * sum_(k in g) |x_k|
        slack = 2 * (k + 2) * EPS32 * (ax @ np.abs(w).T) + 1e-6
        assert np.all(np.abs(y - y2) <= bound + slack)


def test_groups_are_finer_than_channels() -> None:
    g = _linear(16, 256)
    x = RNG.standard_normal((5, 256)).astype(np.float32)
    y = reference.run(g, {"x": x})["fc"]
    err = {}
    for pipe in ("quantize{precision=int4}", "quantize{precision=int4,group_size=32}"):
        err[pipe] = np.abs(reference.run(run_pipeline(g, pipe), {"x": x})["fc"] - y).mean()
    assert err["quantize{precision=int4,group_size=32}"] < err["quantize{precision=int4}"]


def test_matmul_b_is_grouped_along_its_rows_and_conv2d_keeps_channels() -> None:
    b = GraphBuilder("mm")
    x = b.input("x", f32[1, 2, 6, 6])
    w = RNG.standard_normal((4, 2, 3, 3)).astype(np.float32)
    c = b.conv2d(x, b.const(w, "conv.weight"), name="conv")
    flat = b.flatten(c)
    bm = RNG.standard_normal((64, 5)).astype(np.float32)
    b.output(b.matmul(flat, b.const(bm, "proj"), name="proj_out"))
    g = b.build()
    q = run_pipeline(g, "quantize{precision=int4,group_size=32}")
    dqs = {n.outputs[0].name: n for n in q.nodes if n.op == "dequantize"}
    mm = dqs["proj.dq"]
    assert mm.attrs["axis"] == 0 and mm.attrs["group_size"] == 32 and mm.inputs[1].type.shape == (2, 5)
    conv = dqs["conv.weight.dq"]
    assert len(conv.inputs) == 1 and conv.attrs["axis"] == 0 and len(conv.attrs["scale"]) == 4
    back = np.asarray(mm.inputs[0].data, np.float32) * np.repeat(np.asarray(mm.inputs[1].data), 32, axis=0)
    full = np.repeat(np.asarray(mm.inputs[1].data, np.float64), 32, axis=0)
    assert np.all(np.abs(back - bm) <= full / 2 * (1 + 2**-20))


def test_text_round_trip_prints_the_scales_as_one_constant() -> None:
    q = run_pipeline(_linear(8, 64), "quantize{precision=int4,group_size=32}")
    text = q.to_text()
    assert "dequantize(@fc.weight.i4, @fc.weight.scale) {axis=1, group_size=32}" in text
    assert "const @fc.weight.scale: f32[8,2] = [" in text
    assert graphs_equal(verify(parse(text)), q)


def test_report_names_the_groups() -> None:
    ctx = PassContext()
    run_pipeline(_linear(8, 64), "quantize{precision=int4,group_size=32}", ctx=ctx)
    report = ctx.records[-1].report
    assert "per group of 32 along K" in report and "sum_g scale_ig/2" in report


@pytest.mark.parametrize("options,match", [
    ("group_size=-1", "group_size=-1 must be >= 0"),
    ("group_size=32,scheme=static", "needs scheme=weight"),
    ("group_size=32,precision=fp16", "precision=int4 or int8"),
    ("group_size=32,precision=uint8", "precision=int4 or int8"),
])
def test_bad_options_name_the_option(options: str, match: str) -> None:
    with pytest.raises((ValueError, PipelineError), match=match):
        run_pipeline(_linear(4, 32), f"quantize{{{options}}}")


def test_quantize_fold_leaves_grouped_weights_and_says_why() -> None:
    ctx = PassContext()
    q = run_pipeline(_linear(8, 64), "quantize{precision=int8,group_size=32},quantize-fold{dynamic=true}", ctx=ctx)
    assert any(n.op == "linear" for n in q.nodes) and not any(n.op == "qlinear" for n in q.nodes)
    assert "quantized in groups of 32" in ctx.records[-1].report
