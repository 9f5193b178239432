"""quantize-fold: Q/DQ folded into the integer ops; what stays and why; the cost model prices the result."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.backends.cost import estimate
from tensorsmith.backends.numba.cpu_features import int8_paths
from tensorsmith.bench.models.builtin import bert_base_layer
from tensorsmith.ir import Graph, GraphBuilder, f32
from tensorsmith.passes import PassContext, run_pipeline

RNG = np.random.default_rng(3)


def _mlp(with_conv: bool = False) -> Graph:
    b = GraphBuilder("mlp")
    x = b.input("x", f32[4, 32])
    h = b.relu(b.linear(x, RNG.standard_normal((48, 32)).astype(np.float32) / 6, np.zeros(48, np.float32),
                        name="fc1"))
    y = b.linear(h, RNG.standard_normal((10, 48)).astype(np.float32) / 7, RNG.standard_normal(10).astype(np.float32),
                 name="fc2")
    out = [b.matmul(y, RNG.standard_normal((10, 6)).astype(np.float32), name="mm")]
    if with_conv:
        img = b.input("img", f32[1, 4, 6, 6])
        out.append(b.conv2d(img, RNG.standard_normal((4, 2, 3, 3)).astype(np.float32), groups=2, name="gc"))
        seq = b.input("seq", f32[2, 4, 32])
        out.append(b.matmul(seq, RNG.standard_normal((2, 32, 6)).astype(np.float32), name="bmm"))
    b.output(*out)
    return b.build()


def _feeds(g: Graph) -> dict[str, np.ndarray]:
    return {v.name: RNG.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}


def _ops(g: Graph) -> Counter[str]:
    return Counter(n.op for n in g.nodes)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_static_folds_every_pair_and_matches_the_qdq_form() -> None:
    g = _mlp()
    cal = [_feeds(g) for _ in range(4)]
    ctx = PassContext(calibration=cal)
    folded = run_pipeline(g, "quantize{scheme=static,min_kn=0,weight_bits=8}", ctx=ctx)
    qdq = run_pipeline(g, "quantize{scheme=static,min_kn=0,fold=false}", ctx=PassContext(calibration=cal))
    ops = _ops(folded)
    assert ops["qlinear"] == 2 and ops["qmatmul"] == 1
    assert ops["quantize"] == 2 and ops["dequantize"] == 0  # x and relu(fc1); fc2 requantizes its own output
    assert "folded 3 matrix op(s)" in ctx.report(details=True)
    feeds = cal[0]
    want, got = reference.run(qdq, feeds), reference.run(folded, feeds)
    for k in want:  # the same integers but for a requantization rounding that float order may flip
        assert _cos(got[k], want[k]) > 0.9999


def test_requantization_folds_a_quantize_that_reads_the_product() -> None:
    """fc2 feeds the matmul directly: its output quantize joins fc2, which then writes u8."""
    g = _mlp()
    cal = [_feeds(g) for _ in range(2)]
    ctx = PassContext(calibration=cal)
    b = run_pipeline(g, "quantize{scheme=static,min_kn=0,weight_bits=8}", ctx=ctx)
    fc2 = next(n for n in b.nodes if n.name == "fc2")
    assert fc2.op == "qlinear" and fc2.attrs["dtype"] == "u8" and fc2.outputs[0].type.dtype.name == "u8"
    assert "1 requantize their output" in ctx.report(details=True)
    mm = next(n for n in b.nodes if n.op == "qmatmul")
    assert mm.inputs[0] is fc2.outputs[0]


def test_dynamic_inserts_run_time_quantization_and_reports_what_stays() -> None:
    g = _mlp(with_conv=True)
    ctx = PassContext()
    q = run_pipeline(g, "quantize{scheme=dynamic,min_kn=0,weight_bits=8}", ctx=ctx)
    ops = _ops(q)
    assert ops["quantize-dynamic"] == 3 and ops["qlinear"] == 2 and ops["qmatmul"] == 1
    assert ops["conv2d"] == 1 and ops["matmul"] == 1 and ops["dequantize"] == 2
    report = ctx.report(details=True)
    assert "gc (conv2d): it is a grouped conv2d (groups=2) with more than one input channel per group" in report
    assert "bmm (matmul): it is not a matmul by a 2-D B" in report
    assert "dequantize %" in report and "read by matmul" in report and "read by conv2d" in report
    feeds = _feeds(g)
    want, got = reference.run(g, feeds), reference.run(q, feeds)
    for k in want:
        assert _cos(got[k], want[k]) > 0.99
    grouped = run_pipeline(g, "quantize{scheme=dynamic,min_kn=0,weight_bits=8,grouped_conv=true}")
    (gc,) = [n for n in grouped.nodes if n.op == "qconv2d"]
    assert gc.attrs["groups"] == 2 and "conv2d" not in _ops(grouped)
    want_gc = reference.run(grouped, feeds)[gc.outputs[0].name]
    assert _cos(want_gc, want[gc.outputs[0].name]) > 0.99
    if "avx512vnni" in int8_paths():
        got_gc = runtime.compile(grouped, backend="numba", int8_path="avx512vnni").run(feeds)[gc.outputs[0].name]
        np.testing.assert_allclose(got_gc, want_gc, rtol=1e-5, atol=1e-5)


def test_fold_alone_with_row_granularity_and_seven_bit_weights() -> None:
    g = run_pipeline(_mlp(), "quantize{scheme=weight}")
    ctx = PassContext()
    f = run_pipeline(g, "quantize-fold{dynamic=true,granularity=row,weight_bits=7}", ctx=ctx)
    for n in f.nodes:
        if n.op in ("qlinear", "qmatmul"):
            w = n.inputs[3].data
            assert n.attrs["weight_bits"] == 7 and w.min() >= -64 and w.max() <= 63
            assert n.meta["quantize_fold"]["extra_weight_error"] > 0
        if n.op == "quantize-dynamic":
            assert n.attrs["granularity"] == "row"
    feeds = _feeds(g)
    assert _cos(reference.run(f, feeds)["mm"], reference.run(g, feeds)["mm"]) > 0.99
    for path in [p for p in int8_paths() if p != "avx512vnni"]:  # 7-bit weights run on every path
        got = runtime.compile(f, backend="numba", int8_path=path).run(feeds)["mm"]
        np.testing.assert_allclose(got, reference.run(f, feeds)["mm"], rtol=1e-5, atol=1e-5)


def test_weight_only_stays_in_qdq_form() -> None:
    q = run_pipeline(_mlp(), "quantize")
    assert not {"qlinear", "qmatmul", "quantize-dynamic"} & set(_ops(q))


@pytest.mark.parametrize("scheme", ["dynamic"])
def test_quantized_bert_layer_is_predicted_3x_faster_on_a100(scheme: str) -> None:
    g = bert_base_layer(64, 384).graph
    q = run_pipeline(g, f"quantize{{scheme={scheme}}}", ctx=PassContext(target="gpu-a100"))
    assert _ops(q)["qlinear"] == 6
    fp32, int8 = estimate(g, "gpu-a100").total.latency_s, estimate(q, "gpu-a100").total.latency_s
    assert fp32 / int8 >= 3.0
    rows = [r for r in estimate(q, "cpu-host").rows if r.op == "qlinear"]
    assert rows and all(r.precision == "int8" for r in rows)


@pytest.mark.parametrize("scheme", ["static", "dynamic"])
def test_depthwise_convolutions_fold_into_grouped_qconv2d(scheme: str) -> None:
    """A depthwise conv2d (MobileNet / ShuffleNet) folds; the Numba backend runs it on its phase-plane kernel."""
    b = GraphBuilder("dw")
    x = b.input("x", f32[2, 8, 10, 10])
    h = b.relu(b.conv2d(x, RNG.standard_normal((8, 1, 3, 3)).astype(np.float32) / 3, np.zeros(8, np.float32),
                        pads=1, groups=8, name="dw"))
    b.output(b.conv2d(h, RNG.standard_normal((16, 8, 1, 1)).astype(np.float32) / 3, name="pw"))
    g = b.build()
    ctx = PassContext(calibration=[_feeds(g) for _ in range(2)])
    q = run_pipeline(g, f"quantize{{scheme={scheme},min_kn=0}}", ctx=ctx)  # weight_bits for this host's int8 kernels
    dw = next(n for n in q.nodes if n.name == "dw")
    assert dw.op == "qconv2d" and dw.attrs["groups"] == 8 and _ops(q)["qconv2d"] == 2
    feeds = _feeds(g)
    want = reference.run(q, feeds)[q.outputs[0].name]
    assert _cos(want, reference.run(g, feeds)[g.outputs[0].name]) > 0.99
    if int8_paths():
        got = runtime.compile(q, backend="numba").run(feeds)[q.outputs[0].name]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
