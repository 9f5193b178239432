"""ONNX converter for the `Attention` operator (opsets 23-25): onto the IR's `attention` where it fits, else as
a composition of IR ops (`onnx_attention_decomposed.py`).

Onto `attention` (one node, the fused kernel): f32 Q, K, V, all 3-D ([B, S, heads * D], with q_num_heads =
kv_num_heads) or all 4-D ([B, heads, S, D]); as many key/value heads as query heads; V's head size equal to
K's; `is_causal` (without a KV cache its frontier is the top-left diagonal, the IR's `causal`); `scale`; an
`attn_mask` known at import (boolean: True takes part, or float, added to the scores; a last axis shorter than
the keys is padded with -inf, as ONNX says) that leaves every query a key; only the output Y read.

Everything else ONNX defines is decomposed: grouped or multi-query heads, KV caches (past_key / past_value,
nonpad_kv_seqlen) and the present_key / present_value outputs, softcap, sliding windows, a mask computed at run
time or one that masks every key of some query (ONNX gives that query a zero row, a softmax over nothing NaN),
half precision, and the qk_matmul_output output.
"""

from __future__ import annotations

import math

import numpy as np

from .onnx_attention_decomposed import decomposed_attention
from .onnx_context import Handle, NodeContext, UnsupportedError, converter, describe, np_dtype, shape_of
from .ops.attention import causal_mask

_CACHE_INPUTS = {4: "past_key", 5: "past_value", 6: "nonpad_kv_seqlen"}


def _refuse_unsupported(ctx: NodeContext) -> None:
    """UnsupportedError for the features the IR's `attention` does not carry."""
    for i, name in _CACHE_INPUTS.items():
        if ctx.input(i) is not None:
            raise UnsupportedError(f"input {name} (a KV cache) is not converted")
    if float(ctx.attr("softcap", 0.0)) != 0.0:
        raise UnsupportedError(f"softcap={ctx.attr('softcap')} is not converted")
    for side in ("left_window_size", "right_window_size"):
        if int(ctx.attr(side, -1)) != -1:
            raise UnsupportedError(f"{side}={ctx.attr(side)} (a sliding window) is not converted")


def _heads(ctx: NodeContext, q: Handle, k: Handle, v: Handle) -> int:
    """The head count, checked: ranks all 3 or all 4, as many key/value heads as query heads, V's head size K's."""
    ranks = {len(shape_of(h)) for h in (q, k, v)}
    if ranks not in ({3}, {4}):
        raise ValueError(f"Q, K and V must all be 3-D or all 4-D, got {describe(q)}, {describe(k)}, {describe(v)}")
    if ranks == {4}:
        hq, hkv = shape_of(q)[1], shape_of(k)[1]
        dk, dv = shape_of(k)[3], shape_of(v)[3]
    else:
        if not ctx.has_attr("q_num_heads"):
            raise ValueError("3-D Q, K and V need the q_num_heads attribute")
        hq, hkv = int(ctx.attr("q_num_heads")), int(ctx.attr("kv_num_heads", ctx.attr("q_num_heads")))
        if hq < 1 or hkv < 1 or shape_of(q)[2] % hq or shape_of(k)[2] % hkv or shape_of(v)[2] % hkv:
            raise ValueError(f"q_num_heads={hq} / kv_num_heads={hkv} must divide the hidden sizes of "
                             f"{describe(q)}, {describe(k)}, {describe(v)}")
        dk, dv = shape_of(k)[2] // hkv, shape_of(v)[2] // hkv
    if hq != hkv:
        raise UnsupportedError(f"{hq} query heads over {hkv} key/value heads (grouped or multi-query attention) "
                               "are not converted")
    if dk != dv:
        raise UnsupportedError(f"a value head size of {dv} different from the key head size {dk} is not converted")
    return hq


def _additive_mask(ctx: NodeContext, full: tuple[int, int, int, int], causal: bool) -> np.ndarray | None:
    """The attn_mask as an additive f32 constant, checked to leave every query at least one key."""
    mask = ctx.input(3)
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray):
        raise UnsupportedError(f"attn_mask computed at run time ({describe(mask)}): ONNX's Attention gives a query "
                               "whose keys are all masked a zero row, `attention` (a softmax) NaN, and a run-time "
                               "mask cannot be checked for it at import")
    if mask.ndim > 4 or (mask.ndim and mask.shape[-1] > full[3]):
        raise ValueError(f"attn_mask {list(mask.shape)} does not broadcast to [batch, heads, Sq, Skv] = {list(full)}")
    add = np.where(mask, np.float32(0.0), np.float32(-np.inf)) if mask.dtype == np.bool_ else mask.astype(np.float32)
    if add.ndim and add.shape[-1] < full[3]:  # ONNX pads a short last axis with -inf: those keys are masked
        add = np.pad(add, [(0, 0)] * (add.ndim - 1) + [(0, full[3] - add.shape[-1])], constant_values=-np.inf)
    try:
        scores = np.broadcast_to(add, full) + (causal_mask(full[2], full[3]) if causal else np.float32(0.0))
    except ValueError:
        raise ValueError(f"attn_mask {list(mask.shape)} does not broadcast to [batch, heads, Sq, Skv] = "
                         f"{list(full)}") from None
    if full[3] and np.isneginf(scores.max(axis=-1)).any():
        raise UnsupportedError("attn_mask (with is_causal) masks every key of some query: ONNX's Attention gives "
                               "that query a zero row, `attention` (a softmax) NaN")
    return ctx.derived(np.ascontiguousarray(add), mask, ".additive")


def _fused(ctx: NodeContext) -> list[Handle | None]:
    """The node as one IR `attention`; UnsupportedError (before anything is emitted) when it does not fit."""
    q, k, v = ctx.need(0, "Q"), ctx.need(1, "K"), ctx.need(2, "V")
    _refuse_unsupported(ctx)
    for name, h in (("Q", q), ("K", k), ("V", v)):
        if np_dtype(h) != np.float32:
            raise UnsupportedError(f"{name} is {np_dtype(h)}; `attention` takes float32 ({describe(h)})")
    heads = _heads(ctx, q, k, v)
    four_d = len(shape_of(q)) == 4
    b, sq, skv = shape_of(q)[0], shape_of(q)[2 if four_d else 1], shape_of(k)[2 if four_d else 1]
    causal = bool(ctx.attr("is_causal", 0))
    scale = ctx.attr("scale", None)
    if scale is not None and (not math.isfinite(scale) or scale <= 0.0):  # ONNX multiplies Q and K by its root
        raise UnsupportedError(f"scale={scale}: `attention` takes a positive scale")
    mask = _additive_mask(ctx, (b, heads, sq, skv), causal)
    if four_d:  # [B, H, S, D] -> [B, S, H * D]
        d = shape_of(q)[3]
        q, k, v = (ctx.reshape(ctx.transpose(h, [0, 2, 1, 3]), [b, shape_of(h)[2], heads * d]) for h in (q, k, v))
    e = shape_of(q)[2]
    args = (q, k, v) if mask is None else (q, k, v, mask)
    y = ctx.op("attention", *args, heads=heads, scale=0.0 if scale is None else float(scale), causal=causal)
    if four_d:  # back to [B, H, Sq, D]
        y = ctx.transpose(ctx.reshape(y, [b, sq, heads, e // heads]), [0, 2, 1, 3])
    return [y, None, None, None]


@converter("Attention")
def _attention(ctx: NodeContext) -> list[Handle | None]:
    if any(ctx.node.output[1:]):  # present_key / present_value / qk_matmul_output read
        return decomposed_attention(ctx)
    try:
        return _fused(ctx)
    except UnsupportedError:
        return decomposed_attention(ctx)
