"""ONNX's Attention operator (opsets 23-25) imported as the IR's `attention` where it fits and as IR ops
otherwise, against ONNX's reference evaluator and ONNX Runtime; malformed nodes refused with the reason."""

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


def general_model(feeds: dict[str, np.ndarray | None], outputs: tuple[str, ...] = ("y",), opset: int = 24,
                  inits: tuple[str, ...] = (), **attrs: object):  # type: ignore[no-untyped-def]
    """One Attention node over the inputs named by `feeds` in ONNX's order (q, k, v, mask, past_key, past_value,
    nonpad_kv_seqlen; None leaves a slot empty), graph inputs except those in `inits`, reading `outputs`."""
    order = ("q", "k", "v", "mask", "past_key", "past_value", "nonpad")
    names = [n if feeds.get(n) is not None else "" for n in order]
    while names and not names[-1]:
        names.pop()
    every = ("y", "present_key", "present_value", "qk")
    node = helper.make_node("Attention", names, [o if o in outputs else "" for o in every][:max(
        every.index(o) for o in outputs) + 1], **attrs)
    graph_feeds = {n: a for n, a in feeds.items() if a is not None and n not in inits}
    constants = {n: a for n, a in feeds.items() if a is not None and n in inits}
    return make_model([node], graph_feeds, list(outputs), constants, opset=opset), graph_feeds


def _check_both_backends(model, feeds: dict[str, np.ndarray], rtol: float = 1e-5, atol: float = 1e-6):  # type: ignore[no-untyped-def]
    """Import, check against ONNX's reference evaluator (and ONNX Runtime), then the Numba backend against the
    reference backend; the imported graph."""
    g = check(model, feeds, rtol=rtol, atol=atol)
    with np.errstate(all="ignore"):
        want = reference.run(g, feeds)
    got = NumbaExecutable(g).run(feeds)
    for out in g.outputs:
        np.testing.assert_allclose(got[out.name], want[out.name], rtol=1e-5, atol=1e-6)
    return g


MASKED_ROWS = np.where(np.arange(6)[None, :] < np.array([[6], [0], [3], [6]]), np.float32(0.5),
                       np.float32(-np.inf)).astype(np.float32)
"""A float mask over 4 queries and 6 keys whose second query sees no key."""


@pytest.mark.parametrize("case", ["gqa", "value_head_size", "softcap", "run_time_mask", "masked_query",
                                  "kv_cache", "nonpad_causal", "sliding_window", "probabilities", "half",
                                  "zero_scale"])
def test_what_attention_does_not_take_is_decomposed(case: str) -> None:
    """Each ONNX feature the IR's `attention` lacks imports as IR ops matching ONNX on both backends."""
    q4, k4, v4 = rand(2, 4, 4, 8), rand(2, 2, 6, 8), rand(2, 2, 6, 8)
    q, kv = rand(2, 4, 16), rand(2, 6, 16)
    three = {"q_num_heads": 2, "kv_num_heads": 2}
    model, feeds = {
        "gqa": lambda: general_model({"q": q4, "k": k4, "v": v4}, is_causal=1),
        "value_head_size": lambda: general_model({"q": q, "k": kv, "v": rand(2, 6, 10)}, **three),
        "softcap": lambda: general_model({"q": q, "k": kv, "v": kv}, softcap=2.0, scale=0.7, **three),
        "run_time_mask": lambda: general_model({"q": q, "k": kv, "v": kv, "mask": MASKED_ROWS}, **three),
        "masked_query": lambda: general_model({"q": q, "k": kv, "v": kv, "mask": MASKED_ROWS > 0},
                                              inits=("mask",), **three),
        "kv_cache": lambda: general_model({"q": q4, "k": rand(2, 2, 3, 8), "v": rand(2, 2, 3, 8),
                                           "past_key": rand(2, 2, 5, 8), "past_value": rand(2, 2, 5, 8)},
                                          ("y", "present_key", "present_value"), is_causal=1),
        "nonpad_causal": lambda: general_model({"q": q4, "k": k4, "v": v4,
                                                "nonpad": np.array([6, 4], np.int64)}, is_causal=1),
        "sliding_window": lambda: general_model({"q": q, "k": kv, "v": kv}, opset=25, left_window_size=1,
                                                right_window_size=2, **three),
        "probabilities": lambda: general_model({"q": q, "k": kv, "v": kv, "mask": MASKED_ROWS}, ("y", "qk"),
                                               qk_matmul_output_mode=3, **three),
        "half": lambda: general_model({"q": q4.astype(np.float16), "k": k4.astype(np.float16),
                                       "v": v4.astype(np.float16)}, is_causal=1),
        "zero_scale": lambda: general_model({"q": q, "k": kv, "v": kv}, scale=0.0, **three),
    }[case]()
    g = _check_both_backends(model, feeds, *((1e-2, 1e-2) if case == "half" else ()))
    assert "attention" not in [n.op for n in g.nodes]
    if case in ("run_time_mask", "masked_query", "probabilities"):  # the query without keys: a zero row
        with np.errstate(invalid="ignore"):
            y = reference.run(g, feeds)[g.outputs[0].name]
        assert np.all(y[:, 1] == 0) and np.all(np.isfinite(y))


@pytest.mark.parametrize("change,message", [
    (lambda: attention_model(rand(1, 4, 8), rand(1, 4, 8), rand(1, 4, 8)), "need the q_num_heads attribute"),
    (lambda: general_model({"q": rand(1, 4, 8), "k": rand(1, 4, 8), "v": rand(1, 4, 8)}, ("y", "qk"),
                           q_num_heads=2), "need the q_num_heads and kv_num_heads attributes"),
    (lambda: general_model({"q": rand(1, 2, 4, 8), "k": rand(1, 2, 4, 8), "v": rand(1, 2, 4, 8)}, scale=-1.0),
     "scale=-1.0"),
    (lambda: general_model({"q": rand(1, 3, 4, 8), "k": rand(1, 2, 4, 8), "v": rand(1, 2, 4, 8)}),
     "query heads be a multiple"),
    (lambda: general_model({"q": rand(1, 2, 4, 8), "k": rand(1, 2, 4, 8), "v": rand(1, 2, 4, 8),
                            "past_key": rand(1, 2, 3, 8), "past_value": rand(1, 2, 3, 8),
                            "nonpad": np.array([4], np.int64)}), "nonpad_kv_seqlen cannot be combined"),
])
def test_malformed_attention_is_refused_with_its_reason(change, message: str) -> None:  # type: ignore[no-untyped-def]
    model, _ = change()
    with pytest.raises(OnnxImportError, match=message):
        from_onnx(model)


def test_a_node_reading_the_kv_cache_output_gets_it() -> None:
    x = rand(1, 4, 8)
    model, feeds = attention_model(x, x, x, outputs=2, **THREE_D)
    model.graph.output.append(helper.make_empty_tensor_value_info("present_key"))
    g = check(model, feeds)
    assert [tuple(o.type.shape) for o in g.outputs] == [(1, 4, 8), (1, 2, 4, 4)]
