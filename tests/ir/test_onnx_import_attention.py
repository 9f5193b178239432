"""ONNX's Attention operator (opsets 23-25) imported as the IR's `attention`, against ONNX's reference evaluator
and ONNX Runtime; what it refuses, with the reason."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from tensorsmith.backends import reference
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError
from tensorsmith.runtime.numba_exec import NumbaExecutable

from .test_onnx_import import check, make_model, rand

THREE_D = {"q_num_heads": 2, "kv_num_heads": 2}


def attention_model(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None,
                    mask_input: bool = False, opset: int = 24, outputs: int = 1, **attrs: object):  # type: ignore[no-untyped-def]
    """One Attention node over graph inputs q, k, v (k and v the same input when they are the same array), the mask
    an initializer (or a graph input with `mask_input`)."""
    names = ["q", "k", "k" if v is k else "v"]
    feeds = {"q": q, "k": k} | ({} if v is k else {"v": v})
    inits = {}
    if mask is not None:
        names.append("mask")
        (feeds if mask_input else inits)["mask"] = mask
    outs = ["y", "present_key", "present_value", "qk"][:outputs]
    node = helper.make_node("Attention", names, outs, **attrs)
    return make_model([node], feeds, outs[:1], inits, opset=opset), feeds


@pytest.mark.parametrize("opset", [23, 24, 25])
@pytest.mark.parametrize("causal", [0, 1])
def test_three_d_attention_matches_onnx(opset: int, causal: int) -> None:
    x = rand(2, 5, 8)
    model, feeds = attention_model(x, x, x, opset=opset, is_causal=causal, **THREE_D)
    g = check(model, feeds, rtol=1e-5, atol=1e-6)
    (att,) = [n for n in g.nodes if n.op == "attention"]
    assert att.attrs["causal"] == bool(causal) and att.attrs["heads"] == 2


@pytest.mark.parametrize("mask", [
    np.tril(np.ones((4, 6), bool)) | np.eye(4, 6, 2, dtype=bool),  # boolean, True takes part
    np.where(np.arange(6)[None, :] % 3 == 2, -np.inf, 0.5).astype(np.float32)[None, None].repeat(4, 2),  # float
    rand(3, 4, 4),  # float, its last axis shorter than the 6 keys: the last two keys masked
])
def test_four_d_attention_with_a_constant_mask_and_a_scale(mask: np.ndarray) -> None:
    q, k, v = rand(1, 3, 4, 5), rand(1, 3, 6, 5), rand(1, 3, 6, 5)
    model, feeds = attention_model(q, k, v, mask, scale=0.25)
    g = check(model, feeds, rtol=1e-5, atol=1e-6)
    assert [n.op for n in g.nodes].count("attention") == 1
    want = reference.run(g, feeds)[g.outputs[0].name]
    got = NumbaExecutable(g).run(feeds)[g.outputs[0].name]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("change,message", [
    (lambda: attention_model(rand(1, 4, 8), rand(1, 4, 4), rand(1, 4, 4), q_num_heads=2, kv_num_heads=1),
     "2 query heads over 1 key/value heads"),
    (lambda: attention_model(rand(1, 4, 8), rand(1, 4, 8), rand(1, 4, 8), softcap=30.0, **THREE_D),
     "softcap=30.0 is not converted"),
    (lambda: attention_model(rand(1, 4, 8), rand(1, 4, 8), rand(1, 4, 8), rand(1, 1, 4, 4), mask_input=True,
                             **THREE_D), "attn_mask computed at run time"),
    (lambda: attention_model(rand(1, 4, 8), rand(1, 4, 8), rand(1, 4, 8), np.eye(4, dtype=bool)[::-1].copy(),
                             is_causal=1, **THREE_D), "masks every key of some query"),
    (lambda: attention_model(rand(1, 4, 8), rand(1, 4, 8), rand(1, 4, 12), **THREE_D),
     "value head size of 6 different from the key head size 4"),
    (lambda: attention_model(rand(1, 4, 8), rand(1, 4, 8), rand(1, 4, 8)), "need the q_num_heads attribute"),
])
def test_what_is_not_converted_is_refused_with_its_reason(change, message: str) -> None:  # type: ignore[no-untyped-def]
    model, _ = change()
    with pytest.raises(OnnxImportError, match=message):
        from_onnx(model)


def test_a_node_reading_the_kv_cache_output_is_reported() -> None:
    x = rand(1, 4, 8)
    model, _ = attention_model(x, x, x, outputs=2, **THREE_D)
    model.graph.output.append(helper.make_empty_tensor_value_info("present_key"))
    with pytest.raises(OnnxImportError, match="present_key.*not produce"):
        from_onnx(model)
