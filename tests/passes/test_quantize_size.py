"""`quantize{min_kn=...}`: products too narrow for integer arithmetic to pay stay f32, with the reason reported."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.ir import GraphBuilder, f32, verify
from tensorsmith.passes import PassContext, PipelineError, run_pipeline
from tensorsmith.passes.quantize_size import DEFAULT_MIN_KN, reduction_and_width, too_narrow

RNG = np.random.default_rng(7)


def _graph():  # type: ignore[no-untyped-def]
    """An RGB convolution (K = 27, N = 16), a wide one (K = 144, N = 128), a linear head (K = 128, N = 10), a
    depthwise convolution and a wide linear (K = N = 256)."""
    b = GraphBuilder("narrow")
    x = b.input("x", f32[2, 3, 8, 8])
    h = b.relu(b.conv2d(x, RNG.standard_normal((16, 3, 3, 3)).astype(np.float32), pads=1, name="rgb"))
    h = b.relu(b.conv2d(h, RNG.standard_normal((128, 16, 3, 3)).astype(np.float32), pads=1, name="wide"))
    h = b.relu(b.conv2d(h, RNG.standard_normal((128, 1, 3, 3)).astype(np.float32), pads=1, groups=128, name="dw"))
    v = b.input("v", f32[4, 256])
    y = b.linear(v, RNG.standard_normal((256, 256)).astype(np.float32), name="fc")
    b.output(b.linear(b.relu(y), RNG.standard_normal((10, 256)).astype(np.float32),
                      name="head"))
    b.output(h)
    return b.build()


def test_reduction_and_width_of_each_product() -> None:
    g = _graph()
    by = {n.name: n for n in g.nodes}
    assert reduction_and_width(by["rgb"]) == (27, 16)
    assert reduction_and_width(by["wide"]) == (144, 128)
    assert reduction_and_width(by["fc"]) == (256, 256)
    assert reduction_and_width(by["head"]) == (256, 10)
    assert too_narrow(by["dw"], DEFAULT_MIN_KN) is None  # grouped: not judged
    assert too_narrow(by["wide"], DEFAULT_MIN_KN) is None  # harmonic mean 137
    assert "K = 27, N = 16: harmonic mean 20 < min_kn=80" in str(too_narrow(by["rgb"], DEFAULT_MIN_KN))
    assert too_narrow(by["rgb"], 0) is None


@pytest.mark.parametrize("scheme", ["dynamic", "static"])
def test_narrow_products_stay_f32_and_the_report_says_why(scheme: str) -> None:
    g = _graph()
    cal = [{"x": RNG.standard_normal((2, 3, 8, 8)).astype(np.float32),
            "v": RNG.standard_normal((4, 256)).astype(np.float32)} for _ in range(2)]
    ctx = PassContext(calibration=cal)
    q = run_pipeline(g, f"quantize{{scheme={scheme}}}", ctx=ctx)
    verify(q)
    ops = {n.name: n.op for n in q.nodes}
    assert ops["rgb"] == "conv2d" and ops["head"] == "linear"  # too narrow: f32
    assert ops["wide"] == "qconv2d" and ops["fc"] == "qlinear"
    report = ctx.report(details=True)
    assert "too narrow for int8 to pay x2" in report
    assert "rgb (K = 27, N = 16: harmonic mean 20 < min_kn=80)" in report
    assert "head (K = 256, N = 10: harmonic mean 19 < min_kn=80)" in report
    every = run_pipeline(g, f"quantize{{scheme={scheme},min_kn=0}}", ctx=PassContext(calibration=cal))
    every_ops = {n.name: n.op for n in every.nodes}
    assert every_ops["rgb"] == "qconv2d" and every_ops["head"] == "qlinear"


def test_weight_only_quantization_is_not_judged() -> None:
    q = run_pipeline(_graph(), "quantize")
    assert sum("quantize" in n.meta for n in q.nodes) == 5  # every weight stored in int8, narrow or not


def test_a_negative_min_kn_is_refused_by_name() -> None:
    with pytest.raises(PipelineError, match="min_kn=-1 must be >= 0"):
        run_pipeline(_graph(), "quantize{scheme=dynamic,min_kn=-1}")


def test_products_reading_one_activation_add_their_widths() -> None:
    """q, k and v (K = N = 64 each) share their input's quantization: N = 192 together, harmonic mean 96, int8;
    a lone 64 x 64 product (harmonic mean 64) stays f32."""
    b = GraphBuilder("qkv")
    x = b.input("x", f32[32, 64])
    heads = [b.linear(x, RNG.standard_normal((64, 64)).astype(np.float32), name=n) for n in ("q", "k", "v")]
    lone = b.linear(b.relu(heads[0]), RNG.standard_normal((64, 64)).astype(np.float32), name="lone")
    b.output(lone)
    b.output(b.add(heads[1], heads[2]))
    ctx = PassContext()
    q = run_pipeline(b.build(), "quantize{scheme=dynamic}", ctx=ctx)
    ops = {n.name: n.op for n in q.nodes}
    assert [ops[n] for n in ("q", "k", "v", "lone")] == ["qlinear", "qlinear", "qlinear", "linear"]
    assert "lone (K = 64, N = 64: harmonic mean 64 < min_kn=80)" in ctx.report(details=True)
    g = b.build()
    by = {n.name: n for n in g.nodes}
    assert too_narrow(by["q"], 80, 192) is None and too_narrow(by["q"], 80) is not None
    assert "(192 with the products sharing its input): harmonic mean 96 < min_kn=100" in str(
        too_narrow(by["q"], 100, 192))
