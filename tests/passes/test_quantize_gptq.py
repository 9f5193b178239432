"""quantize{rounding=gptq}: GPTQ rounding, kept per layer only where it lowers the calibration output error."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.ir import Graph, GraphBuilder, f32, parse, verify
from tensorsmith.ir.dtypes import i4, i8
from tensorsmith.passes import PassContext, run_pipeline
from tensorsmith.passes.gptq import conv_patches, gptq_or_nearest, gptq_round, output_error
from tensorsmith.passes.quantize import QuantizeError
from tensorsmith.passes.quantize_numeric import dequantized, quantize_grouped, quantize_weight

RNG = np.random.default_rng(5)
K, N, ROWS = 96, 24, 256


def correlated_inputs(rows: int, k: int = K, seed: int = 0) -> np.ndarray:
    """Inputs whose features are correlated and of unequal energy (what makes GPTQ pay)."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((k, k)) / np.sqrt(k) + np.eye(k)
    return ((rng.standard_normal((rows, k)) @ mix) * np.exp(rng.standard_normal(k) * 0.7)).astype(np.float32)


def mlp(k: int = K, hidden: int = N, rows: int = ROWS) -> Graph:
    """Two linears with a ReLU between."""
    b = GraphBuilder("mlp")
    x = b.input("x", f32[rows, k])
    w0 = RNG.standard_normal((hidden, k)).astype(np.float32) / np.sqrt(k)
    w1 = RNG.standard_normal((8, hidden)).astype(np.float32) / np.sqrt(hidden)
    h = b.relu(b.linear(x, b.const(w0, "fc0.weight"), b.const(np.zeros(hidden, np.float32), "fc0.bias"), name="fc0"))
    b.output(b.linear(h, b.const(w1, "fc1.weight"), name="fc1"))
    return b.build()


@pytest.mark.parametrize(("dtype", "group"), [(i4, 0), (i4, 32), (i4, 40), (i8, 0)])
def test_gptq_rounding_lowers_the_output_error_on_correlated_inputs(dtype, group: int) -> None:  # type: ignore[no-untyped-def]
    x = correlated_inputs(2000).astype(np.float64)
    gram = x.T @ x
    w = RNG.standard_normal((N, K)).astype(np.float32)
    q, scale = gptq_round(w, gram, 7 if dtype is i4 else 127, group)
    assert q.shape == (N, K) and np.abs(q).max() <= (7 if dtype is i4 else 127) and np.all(q == np.rint(q))
    assert scale.shape == (N, -(-K // group) if group else 1)
    nearest = quantize_grouped(w, dtype, 1, group) if group else quantize_weight(w, dtype, 0)
    choice = gptq_or_nearest("linear", w, nearest, gram, dtype, group)
    assert choice.gptq and choice.error < 0.9 * choice.nearest_error
    assert choice.error == pytest.approx(output_error(w - dequantized(choice.weight), gram))
    # a matmul's B [K, N] is the same weight transposed: the same rounding
    as_b = gptq_or_nearest("matmul", w.T.copy(), quantize_grouped(w.T.copy(), dtype, 0, group) if group else
                           quantize_weight(w.T.copy(), dtype, 1), gram, dtype, group)
    np.testing.assert_array_equal(as_b.weight.data, choice.weight.data.T)


@pytest.mark.parametrize(("strides", "pads", "dilations"), [((1, 1), (1, 1, 1, 1), (1, 1)),
                                                            ((2, 1), (0, 1, 2, 0), (1, 2))])
def test_conv_patches_times_the_weight_are_the_convolution(strides, pads, dilations) -> None:  # type: ignore[no-untyped-def]
    b = GraphBuilder("conv")
    x = b.input("x", f32[2, 3, 9, 8])
    w = RNG.standard_normal((4, 3, 3, 2)).astype(np.float32)
    b.output(b.conv2d(x, w, None, strides=list(strides), pads=list(pads), dilations=list(dilations), name="cv"))
    g = b.build()
    xv = RNG.standard_normal((2, 3, 9, 8)).astype(np.float32)
    want = reference.run(g, {"x": xv})[g.outputs[0].name]
    rows = conv_patches(xv, g.nodes[0]) @ w.reshape(4, -1).T.astype(np.float64)
    n, o, ho, wo = want.shape
    np.testing.assert_allclose(rows.reshape(n, ho, wo, o).transpose(0, 3, 1, 2), want, rtol=1e-5, atol=1e-5)


def test_a_convolution_is_rounded_by_gptq_from_its_patches() -> None:
    b = GraphBuilder("cnn")
    x = b.input("x", f32[8, 6, 10, 10])
    w = RNG.standard_normal((12, 6, 3, 3)).astype(np.float32) / 7
    b.output(b.conv2d(x, w, np.zeros(12, np.float32), pads=1, name="cv"))
    g = b.build()
    smooth = np.cumsum(RNG.standard_normal((8, 6, 10, 10)), axis=3).astype(np.float32)  # neighbouring pixels correlate
    ctx = PassContext(calibration=[{"x": smooth}])
    q = run_pipeline(g, "quantize{precision=int4,rounding=gptq}", ctx=ctx)
    meta = next(n for n in q.nodes if n.op == "conv2d").meta["quantize"]
    assert meta["rounding"] == "gptq" and meta["output_error"]["kept"] < 0.9 * meta["output_error"]["nearest"]
    nearest = run_pipeline(g, "quantize{precision=int4}", ctx=PassContext())
    feeds = [{"x": smooth}]
    assert _calibration_error(g, q, feeds) < _calibration_error(g, nearest, feeds)


def test_with_uncorrelated_inputs_of_equal_energy_nearest_is_kept() -> None:
    w = RNG.standard_normal((N, K)).astype(np.float32)
    nearest = quantize_weight(w, i4, 0)
    choice = gptq_or_nearest("linear", w, nearest, np.eye(K) * 50.0, i4)
    assert not choice.gptq and choice.weight is nearest and choice.error == choice.nearest_error


def _calibration_error(g: Graph, q: Graph, feeds: list[dict[str, np.ndarray]]) -> float:
    return sum(float(np.sum((reference.run(q, f)[g.outputs[0].name] - reference.run(g, f)[g.outputs[0].name]) ** 2))
               for f in feeds)


@pytest.mark.parametrize("pipeline", ["quantize{precision=int4,rounding=gptq}",
                                      "quantize{precision=int4,group_size=32,rounding=gptq}"])
def test_the_pass_rounds_by_gptq_where_it_pays_and_says_so(pipeline: str) -> None:
    g = mlp()
    feeds = [{"x": correlated_inputs(ROWS, seed=s)} for s in range(2)]
    ctx = PassContext(calibration=feeds)
    q = run_pipeline(g, pipeline, ctx=ctx)
    verify(parse(q.to_text()))
    metas = [n.meta["quantize"] for n in q.nodes if n.op == "linear"]
    assert len(metas) == 2 and all(m["rounding"] in ("gptq", "nearest") for m in metas)
    for m in metas:
        assert m["output_error"]["kept"] <= m["output_error"]["nearest"]
    assert metas[0]["rounding"] == "gptq"  # the first layer reads the correlated inputs themselves
    assert "GPTQ kept on" in ctx.records[-1].report and "bound is |dy_i| <= max|dW_i|" in ctx.records[-1].report
    nearest = run_pipeline(g, pipeline.replace(",rounding=gptq", ""), ctx=PassContext())
    assert _calibration_error(g, q, feeds) < _calibration_error(g, nearest, feeds)
    x = {"x": correlated_inputs(ROWS, seed=9)}
    np.testing.assert_allclose(runtime.compile(q, backend="numba").run(x)[g.outputs[0].name],
                               reference.run(q, x)[g.outputs[0].name], rtol=1e-4, atol=1e-4)


def test_pruned_weights_round_to_nearest_and_keep_their_zeros() -> None:
    g = mlp()
    ctx = PassContext(calibration=[{"x": correlated_inputs(ROWS)}])
    q = run_pipeline(g, "prune{pattern=nm,min_params=0},quantize{precision=int4,rounding=gptq}", ctx=ctx)
    stored = [v for n in q.nodes for v in n.inputs if v.is_constant and v.type.dtype.name == "i4"]
    assert stored and all(v.type.sparsity is not None and v.type.sparsity.check(v.data, "linear") is None
                          for v in stored)
    assert all("rounding" not in n.meta["quantize"] for n in q.nodes if n.op == "linear")


def test_bad_combinations_are_refused() -> None:
    g = mlp()
    with pytest.raises(ValueError, match="rounding=gptq needs an integer precision"):
        run_pipeline(g, "quantize{precision=fp16,rounding=gptq}")
    with pytest.raises(ValueError, match="granularity=channel"):
        run_pipeline(g, "quantize{granularity=tensor,rounding=gptq}")
    with pytest.raises(QuantizeError, match="rounding=gptq needs calibration inputs"):
        run_pipeline(g, "quantize{rounding=gptq}", ctx=PassContext())
