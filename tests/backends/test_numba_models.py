"""Whole models on the Numba backend against the reference: GraphBuilder models, and the model zoo fused."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.bench.models import list_models, load_model
from tensorsmith.ir import GraphBuilder, f32

from .numba_check import check

RNG = np.random.default_rng(23)


def _w(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)


def test_mlp() -> None:
    b = GraphBuilder("mlp")
    x = b.input("x", f32[5, 37])
    h = b.relu(b.linear(x, _w(61, 37), _w(61)))
    h = b.relu(b.linear(h, _w(29, 61), _w(29)))
    b.output(b.softmax(b.linear(h, _w(10, 29), _w(10))))
    check(b.build(), {"x": RNG.standard_normal((5, 37)).astype(np.float32)}, rtol=1e-5, atol=1e-6)


def test_small_cnn() -> None:
    b = GraphBuilder("cnn")
    x = b.input("x", f32[2, 3, 19, 17])
    h = x
    for i, (ci, co) in enumerate([(3, 8), (8, 16)]):
        h = b.conv2d(h, _w(co, ci, 3, 3), _w(co), pads=1)
        h = b.batchnorm(h, np.abs(_w(co)) + 1, _w(co), _w(co), np.abs(_w(co)) + 0.5)
        h = b.relu(h)
        h = b.maxpool2d(h, (2, 2)) if i == 0 else b.avgpool2d(h, (3, 3), strides=(2, 2), pads=1)
    h = b.conv2d(h, _w(16, 1, 3, 3), pads=1, groups=16)
    h = b.flatten(b.global_avgpool(h))
    b.output(b.linear(h, _w(7, 16), _w(7)))
    check(b.build(), {"x": RNG.standard_normal((2, 3, 19, 17)).astype(np.float32)}, rtol=1e-4, atol=1e-5)


def test_transformer_encoder_block() -> None:
    bsz, seq, hid, heads = 2, 7, 24, 3
    hd = hid // heads
    b = GraphBuilder("encoder")
    x = b.input("x", f32[bsz, seq, hid])
    mask = b.input("mask", f32[bsz, 1, 1, seq])

    def heads_of(h, perm):  # type: ignore[no-untyped-def]
        return b.transpose(b.reshape(h, (bsz, seq, heads, hd)), perm)

    q = heads_of(b.linear(x, _w(hid, hid), _w(hid)), (0, 2, 1, 3))
    k = heads_of(b.linear(x, _w(hid, hid), _w(hid)), (0, 2, 3, 1))
    v = heads_of(b.linear(x, _w(hid, hid), _w(hid)), (0, 2, 1, 3))
    s = b.add(b.mul(b.matmul(q, k), np.float32(1 / np.sqrt(hd))), mask)
    ctx = b.reshape(b.transpose(b.matmul(b.softmax(s), v), (0, 2, 1, 3)), (bsz, seq, hid))
    h = b.layernorm(b.add(b.linear(ctx, _w(hid, hid), _w(hid)), x), np.ones(hid, np.float32), _w(hid))
    f = b.linear(b.gelu(b.linear(h, _w(4 * hid, hid), _w(4 * hid))), _w(hid, 4 * hid), _w(hid))
    b.output(b.layernorm(b.add(f, h), np.ones(hid, np.float32), _w(hid)))
    m = np.zeros((bsz, 1, 1, seq), np.float32)
    m[1, ..., -2:] = -1e9
    check(b.build(), {"x": RNG.standard_normal((bsz, seq, hid)).astype(np.float32), "mask": m},
          rtol=1e-4, atol=1e-5)


AVAILABLE = {m.name for m in list_models() if m.available}
ZOO_CLOSE = ["mlp", "cnn", "transformer-block", "bert-base-layer", "onnx-resnet50", "onnx-inception-v1",
             "onnx-shufflenet"]
ZOO_QUALITY = ["mlp-digits", "cnn-digits", "minilm-l6"]


@pytest.mark.parametrize("name", ZOO_CLOSE)
def test_zoo_model_outputs_match_the_reference(name: str) -> None:
    if name not in AVAILABLE:
        pytest.skip(f"zoo model {name} is not available here (optional package or data missing)")
    model = load_model(name)
    exe = runtime.compile(model.graph, backend="numba")  # the default pipeline: fused
    assert exe.stats["fused"], f"{name}: nothing was fused"
    got = exe.run(model.inputs)
    ref = reference.run(model.graph, model.inputs)
    for k in ref:
        scale = max(1.0, float(np.abs(ref[k]).max()))
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-4, atol=1e-4 * scale, err_msg=f"{name}: {k}")


@pytest.mark.parametrize("name", ZOO_QUALITY)
def test_zoo_model_quality_matches_the_reference(name: str) -> None:
    if name not in AVAILABLE:
        pytest.skip(f"zoo model {name} is not available here (optional package or data missing)")
    model = load_model(name)
    exe = runtime.compile(model.graph, backend="numba")
    assert model.quality(exe.run) == pytest.approx(model.quality(lambda f: reference.run(model.graph, f)), abs=1e-4)
