"""quantize: the stated per-layer bound against the reference backend, options, skips, errors, precision=auto."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.backends import reference
from tensorsmith.backends.cost import choose_precision, estimate
from tensorsmith.ir import Graph, GraphBuilder, f32, graphs_equal, parse, verify
from tensorsmith.passes import PassContext, PipelineError, run_pipeline
from tensorsmith.passes.base import TargetRequiredError
from tensorsmith.passes.quantize import QuantizeError

RNG = np.random.default_rng(5)
EPS32 = 2.0**-24


def _linear_graph(n: int = 24, k: int = 64, m: int = 6, bias: bool = True) -> Graph:
    b = GraphBuilder("lin")
    x = b.input("x", f32[m, k])
    w = (RNG.standard_normal((n, k)) * RNG.uniform(0.1, 3.0, (n, 1))).astype(np.float32)
    bb = RNG.standard_normal(n).astype(np.float32) if bias else None
    b.output(b.linear(x, b.const(w, "fc.weight"), None if bb is None else b.const(bb, "fc.bias"), name="fc"))
    return b.build()


def _x(shape: tuple[int, ...]) -> np.ndarray:
    return (RNG.standard_normal(shape) * 2).astype(np.float32)


def _float_slack(w: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """f32 rounding of both GEMMs (before and after): 2 * gamma_K * sum_k |W_ik| |x_k|, per [m, n]."""
    return 2 * (k + 2) * EPS32 * (np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T) + 1e-7


def _quantized(g: Graph, pipeline: str, **ctx: object) -> tuple[Graph, PassContext]:
    c = PassContext(**ctx)  # type: ignore[arg-type]
    return run_pipeline(g, pipeline, ctx=c), c


@pytest.mark.parametrize("precision", ["int8", "uint8", "int4"])
@pytest.mark.parametrize("granularity", ["channel", "tensor"])
def test_linear_error_within_stated_bound(precision: str, granularity: str) -> None:
    g = _linear_graph()
    q, ctx = _quantized(g, f"quantize{{precision={precision},granularity={granularity}}}")
    node = next(n for n in q.nodes if n.op == "linear")
    meta = node.meta["quantize"]
    w = g.value("fc.weight").data
    assert w is not None
    scale = np.asarray(q.nodes[0].attrs["scale"], np.float64)
    scale = np.broadcast_to(scale, (w.shape[0],))
    err = np.broadcast_to(np.asarray(meta["channel_error"]), (w.shape[0],))
    assert np.all(err <= scale / 2 * (1 + 2**-22)), "a weight moved by more than scale/2"
    assert meta["max_weight_error"] > 0 and meta["precision"] == precision
    for _ in range(5):
        x = _x((6, 64))
        y = reference.run(g, {"x": x})["fc"].astype(np.float64)
        y2 = reference.run(q, {"x": x})["fc"].astype(np.float64)
        bound = err[None, :] * np.abs(x.astype(np.float64)).sum(1, keepdims=True) + _float_slack(w, x, 64)
        assert np.all(np.abs(y - y2) <= bound)
        assert np.abs(y - y2).max() > 0
    assert "bound" in ctx.records[-1].report and "max|dW|" in ctx.records[-1].report


def test_conv_error_within_stated_bound() -> None:
    b = GraphBuilder("conv")
    x = b.input("x", f32[2, 3, 7, 7])
    w = RNG.standard_normal((5, 3, 3, 3)).astype(np.float32)
    b.output(b.conv2d(x, b.const(w, "conv.weight"), b.const(RNG.standard_normal(5).astype(np.float32), "conv.bias"),
                      strides=(2, 2), pads=1, name="conv"))
    g = b.build()
    q, _ = _quantized(g, "quantize")
    err = np.asarray(q.value("conv").producer.meta["quantize"]["channel_error"])  # type: ignore[union-attr]
    assert err.shape == (5,)
    # sum of |x| over each output's receptive field: the same conv of |x| with a kernel of ones
    rb = GraphBuilder("window")
    xa = rb.input("x", f32[2, 3, 7, 7])
    rb.output(rb.conv2d(xa, np.ones((1, 3, 3, 3), np.float32), strides=(2, 2), pads=1, name="s"))
    window = rb.build()
    for _ in range(5):
        xv = _x((2, 3, 7, 7))
        d = np.abs(reference.run(g, {"x": xv})["conv"].astype(np.float64) - reference.run(q, {"x": xv})["conv"])
        s = reference.run(window, {"x": np.abs(xv)})["s"].astype(np.float64)  # [2, 1, 4, 4]
        wsum = np.abs(w).sum(axis=(1, 2, 3)).astype(np.float64)[None, :, None, None]
        slack = 2 * (27 + 2) * EPS32 * wsum * s + 1e-6
        assert np.all(d <= err[None, :, None, None] * s * (1 + 1e-6) + slack)


@pytest.mark.parametrize("precision,ulp", [("fp16", 2.0**-11), ("bf16", 2.0**-8)])
def test_half_precision_within_half_an_ulp(precision: str, ulp: float) -> None:
    g = _linear_graph()
    q, _ = _quantized(g, f"quantize{{precision={precision}}}")
    assert [n.op for n in q.nodes] == ["cast", "linear"]
    assert q.nodes[0].inputs[0].type.dtype.name == precision.replace("fp", "f")
    w = g.value("fc.weight").data
    assert w is not None
    err = np.asarray(q.nodes[1].meta["quantize"]["channel_error"])
    assert np.all(err <= ulp * np.abs(w).max(axis=1) + 2.0**-133)
    x = _x((6, 64))
    d = np.abs(reference.run(g, {"x": x})["fc"].astype(np.float64) - reference.run(q, {"x": x})["fc"])
    assert np.all(d <= ulp * (np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T) + _float_slack(w, x, 64))


def test_static_error_within_stated_bound_on_calibrated_inputs() -> None:
    g = _linear_graph()
    batches = [{"x": _x((6, 64))} for _ in range(4)]
    q, ctx = _quantized(g, "quantize{scheme=static,min_kn=0,fold=false}", calibration=batches)
    assert [n.op for n in q.nodes] == ["dequantize", "quantize", "dequantize", "linear"]
    meta = q.nodes[-1].meta["quantize"]
    act = meta["activation"]
    lo = min(float(b["x"].min()) for b in batches)
    hi = max(float(b["x"].max()) for b in batches)
    assert act["range"] == (lo, hi) and act["dtype"] == "u8" and 0 <= act["zero_point"] <= 255
    wq = reference.run(q, {"x": batches[0]["x"]}, keep=True)["fc.weight.dq"].astype(np.float64)
    w = g.value("fc.weight").data
    assert w is not None
    err = np.asarray(meta["channel_error"])
    for b in batches:  # inside the calibrated range by construction
        x = b["x"].astype(np.float64)
        d = np.abs(reference.run(g, b)["fc"] - reference.run(q, b)["fc"].astype(np.float64))
        bound = err[None, :] * np.abs(x).sum(1, keepdims=True) + act["scale"] / 2 * (1 + 1e-6) * np.abs(wq).sum(1)
        assert np.all(d <= bound + _float_slack(w, b["x"], 64))
    assert "calibration" in ctx.records[-1].report and "static" in ctx.records[-1].report


def test_percentile_calibration_clips_outliers() -> None:
    g = _linear_graph()
    x = _x((6, 64))
    x[0, 0] = 500.0
    q, _ = _quantized(g, "quantize{scheme=static,min_kn=0,calibration=percentile,percentile=99}",
                      calibration=[{"x": x}])
    lo, hi = q.nodes[-1].meta["quantize"]["activation"]["range"]
    assert hi < 50.0 and lo > -50.0
    q2, _ = _quantized(g, "quantize{scheme=static,min_kn=0}", calibration=[{"x": x}])
    assert q2.nodes[-1].meta["quantize"]["activation"]["range"][1] == 500.0


def test_round_trips_through_text_and_verifies() -> None:
    g = _linear_graph()
    for pipeline in ("quantize", "quantize{precision=int4}", "quantize{precision=bf16}", "quantize{precision=uint8}"):
        q, _ = _quantized(g, pipeline)
        verify(q)
        text = q.to_text()
        assert ("<quant " in text) == ("16" not in pipeline)
        again = parse(text)
        assert graphs_equal(again, q) and again.to_text() == text
        x = {"x": _x((6, 64))}
        np.testing.assert_array_equal(reference.run(q, x)["fc"], reference.run(again, x)["fc"])


def _two_layer() -> Graph:
    b = GraphBuilder("two")
    x = b.input("x", f32[4, 32])
    h = b.relu(b.linear(x, RNG.standard_normal((32, 32)).astype(np.float32), name="fc1"))
    h = b.linear(h, RNG.standard_normal((16, 32)).astype(np.float32), name="fc2")
    t = b.linear(h, RNG.standard_normal((2, 16)).astype(np.float32), name="tiny")
    b.output(b.matmul(t, b.transpose(t, perm=[1, 0]), name="gram"))
    return b.build()


def test_skips_carry_their_reasons() -> None:
    g = _two_layer()
    q, ctx = _quantized(g, "quantize{skip=fc2,min_params=33}")
    report = ctx.records[-1].report
    assert "fc2 (skip=fc2)" in report
    assert "tiny (32 params < min_params=33)" in report
    assert "gram (matmul of two activations)" in report
    assert "|dy_i| <= max|dW_i|" in q.value("fc1").producer.meta["quantize"]["bound"]  # type: ignore[union-attr]
    again, ctx2 = _quantized(q, "quantize{min_params=0}")
    assert "already quantized x1: fc1 (weight is dequantize of i8)" in ctx2.records[-1].report
    _, ctx3 = _quantized(g, "quantize{ops=conv2d}")
    assert "nothing quantized" in ctx3.records[-1].report and "not in ops=conv2d" in ctx3.records[-1].report


def test_integer_weights_are_skipped() -> None:
    b = GraphBuilder("ints")
    x = b.input("x", f32[2, 32])
    idx = b.cast(b.relu(x), dtype="i32")
    b.output(b.matmul(idx, np.ones((32, 4), np.int32), name="mm"))
    _, ctx = _quantized(b.build(), "quantize{min_params=0}")
    assert "integer weight x1: mm (i32)" in ctx.records[-1].report


def test_shared_weight_is_stored_once() -> None:
    b = GraphBuilder("tied")
    x = b.input("x", f32[2, 16])
    w = b.const(RNG.standard_normal((16, 16)).astype(np.float32), "w")
    b.output(b.linear(b.linear(x, w, name="a"), w, name="b"))
    q, _ = _quantized(b.build(), "quantize")
    assert [n.op for n in q.nodes] == ["dequantize", "linear", "linear"]
    assert q.nodes[1].inputs[1] is q.nodes[2].inputs[1]


def test_errors_name_the_pass_and_option() -> None:
    g = _linear_graph()
    with pytest.raises(TargetRequiredError, match=r"quantize\{precision=auto\} needs a target"):
        _quantized(g, "quantize{precision=auto}")
    with pytest.raises(QuantizeError, match="scheme=static needs calibration data"):
        _quantized(g, "quantize{scheme=static,min_kn=0}")
    with pytest.raises(QuantizeError, match="calibration run failed"):
        _quantized(g, "quantize{scheme=static,min_kn=0}", calibration=[{"y": np.zeros((6, 64), np.float32)}])
    for bad, msg in [("quantize{ops=relu}", "ops='relu'"), ("quantize{percentile=0}", "percentile=0.0"),
                     ("quantize{precision=fp8}", "must be one of"),
                     ("quantize{scheme=static,min_kn=0,precision=fp16}", "needs an integer precision")]:
        with pytest.raises(PipelineError, match=msg):
            run_pipeline(g, bad)


# ---- precision=auto: what the cost model says, per target family --------------------------------
def _sized(m: int, k: int, n: int) -> Graph:
    b = GraphBuilder("auto")
    x = b.input("x", f32[m, k])
    b.output(b.linear(x, RNG.standard_normal((n, k)).astype(np.float32), name="fc"))
    return b.build()


@pytest.mark.parametrize("target,dims,expected", [
    ("npu-edge", (8, 64, 32), "int8"),          # int8-only NPU
    ("npu-edge", (256, 1024, 1024), "int8"),
    ("gpu-a100", (256, 1024, 1024), "int8"),    # tensor-core int8 is the fastest on a big layer
    ("gpu-a100", (8, 64, 32), "fp16"),          # a small layer: int8 and fp16 tie, the wider wins
    ("gpu-h100", (256, 1024, 1024), "int8"),
    ("gpu-h100", (8, 64, 32), None),            # under the 1.05x threshold
    ("tpu-v4", (256, 1024, 1024), "bf16"),      # bf16 and int8 run at the same peak
    ("cpu-host", (256, 1024, 1024), "int8"),
    ("cpu-host", (8, 64, 32), None),            # overhead-bound: fp32 kept
])
def test_auto_applies_the_cost_models_choice(target: str, dims: tuple[int, int, int], expected: str | None) -> None:
    g = _sized(*dims)
    decision = choose_precision(target, g.nodes[0])
    assert decision.choice == expected, decision.reason
    q, ctx = _quantized(g, "quantize{precision=auto}", target=target)
    report = ctx.records[-1].report
    fc = q.value("fc").producer
    assert fc is not None
    assert estimate(q, target).total.latency_s <= estimate(g, target).total.latency_s
    if expected is None or "quantize" not in fc.meta:  # no choice, or the emitted form is predicted slower
        assert [n.op for n in q.nodes] == ["linear"] and "quantize" not in fc.meta
        assert f"kept for {target}" in report
        assert decision.reason in report or f"{expected} as emitted" in report
    else:
        assert decision.reason in report
        assert fc.meta["quantize"]["precision"] == expected and fc.meta["quantize"]["reason"] == decision.reason
        widen = "cast" if expected in ("fp16", "bf16") else "dequantize"
        assert [n.op for n in q.nodes] == [widen, "linear"]
        stored = q.nodes[0].inputs[0].type.dtype.name
        assert stored == {"int8": "i8", "fp16": "f16", "bf16": "bf16"}[expected]


def test_auto_static_quantizes_activations_only_where_int8_is_chosen() -> None:
    b = GraphBuilder("mixed")
    x = b.input("x", f32[256, 1024])
    h = b.linear(x, RNG.standard_normal((1024, 1024)).astype(np.float32), name="big")
    b.output(b.linear(b.relu(h), RNG.standard_normal((16, 1024)).astype(np.float32), name="head"))
    g = b.build()
    q, ctx = _quantized(g, "quantize{precision=auto,scheme=static,fold=false}", target="gpu-a100",
                        calibration=[{"x": _x((256, 1024))}])
    metas = {n.name: n.meta.get("quantize") for n in q.nodes if n.op == "linear"}
    assert metas["big"]["precision"] == "int8" and "activation" in metas["big"]
    head = choose_precision("gpu-a100", g.nodes[-1])
    if head.choice is None:
        assert metas["head"] is None and head.reason in ctx.records[-1].report
    else:
        assert metas["head"]["precision"] == head.choice
        assert ("activation" in metas["head"]) == (head.choice == "int8")


@pytest.mark.parametrize("precision", ["int8", "int4", "fp16"])
def test_pruned_weights_keep_their_sparsity(precision: str) -> None:
    q, _ = _quantized(_linear_graph(n=24, k=64), f"prune{{pattern=nm,min_params=0}},quantize{{precision={precision}}}")
    (w,) = [v for n in q.nodes for v in n.inputs if v.is_constant and v.type.dtype.name != "f32"]
    assert w.type.sparsity is not None and (w.type.sparsity.n, w.type.sparsity.m) == (2, 4)
    assert w.type.sparsity.check(w.data, "linear") is None  # zeros stayed zeros in the narrow storage
    verify(parse(q.to_text()))
