"""ONNX's Attention (opsets 23-25) as a composition of IR ops, for what the IR's `attention` does not take.

Follows the operator's definition step by step: Q and K each scaled by the square root of the scale, a KV cache
(past_key / past_value concatenated before the new keys and values, returned as present_key / present_value),
grouped or multi-query heads (each key/value head repeated for its query heads), a value head size other than the
key's, softcap (c * tanh(scores / c)), an additive bias built from the mask (boolean or float, known at import or
computed at run time, a short last axis padded), the causal frontier (bottom-right: offset by the cache's length,
or per batch by nonpad_kv_seqlen - Sq), sliding windows and the padding of nonpad_kv_seqlen, a softmax, a query
whose keys are all masked given a zero row (decided on the bias, as ONNX does), and qk_matmul_output in each of
its modes (0 and 1: the scores after softcap, 2: with the bias, 3: the probabilities). Half precision is computed
in float32 and cast back. The bias is folded to one constant whenever it depends on no run-time input.
"""

from __future__ import annotations

import math

import numpy as np

from .onnx_context import Handle, NodeContext, UnsupportedError, describe, np_dtype, shape_of
from .onnx_ops_shape import broadcast_to

_HALF = {"float16": "f16", "bfloat16": "bf16"}


def _f32(value: float) -> np.ndarray:
    return np.asarray(value, np.float32)


def _i64(value: int) -> np.ndarray:
    return np.asarray(value, np.int64)


def _float(ctx: NodeContext, h: Handle) -> Handle:
    """`h` in float32 when it is half precision."""
    return ctx.op("cast", h, dtype="f32") if np_dtype(h).name in _HALF else h


def _float_input(ctx: NodeContext, i: int) -> Handle | None:
    """Input i in float32 when it is half precision (None when absent)."""
    h = ctx.input(i)
    return None if h is None else _float(ctx, h)


def _to_heads(ctx: NodeContext, x: Handle, heads: int, what: str) -> Handle:
    """[B, S, heads * D] -> [B, heads, S, D]."""
    b, s, e = shape_of(x)
    if heads < 1 or e % heads:
        raise ValueError(f"{heads} heads do not divide the hidden size of {what} {describe(x)}")
    return ctx.transpose(ctx.reshape(x, [b, s, heads, e // heads]), [0, 2, 1, 3])


def _repeat_heads(ctx: NodeContext, x: Handle, reps: int) -> Handle:
    """[B, H, S, D] -> [B, H * reps, S, D], each head repeated reps times in place (h0, h0, h1, h1, ...)."""
    if reps == 1:
        return x
    b, h, s, d = shape_of(x)
    wide = broadcast_to(ctx, ctx.reshape(x, [b, h, 1, s, d]), (b, h, reps, s, d))
    return ctx.reshape(wide, [b, h * reps, s, d])


def _select(ctx: NodeContext, allowed: Handle) -> Handle:
    """0 where `allowed`, -inf elsewhere (float32)."""
    return ctx.op("where", allowed, _f32(0.0), _f32(-np.inf))


def _padded_mask(ctx: NodeContext, mask: Handle, skv: int) -> Handle:
    """attn_mask with its last axis padded to the skv keys (False or -inf: those keys are masked)."""
    shape = shape_of(mask)
    if not shape or shape[-1] >= skv:
        if shape and shape[-1] > skv:
            raise ValueError(f"attn_mask {describe(mask)} has more than the {skv} keys")
        return mask
    fill = np.full(shape[:-1] + (skv - shape[-1],), False if np_dtype(mask) == np.bool_ else -np.inf,
                   np_dtype(mask))
    return ctx.op("concat", mask, fill, axis=len(shape) - 1)


def _offset_allowed(ctx: NodeContext, sq: int, skv: int, offset: int | Handle, rule: str,
                    window: tuple[int, int] = (-1, -1)) -> Handle:
    """Which keys j each query i may see, for the causal frontier (`rule` "causal": j <= i + offset) or a sliding
    window ("window": i + offset - left <= j <= i + offset + right): [Sq, Skv] for a constant offset, [B, 1, Sq,
    Skv] for a per-batch one ([B] int64, at run time)."""
    diff = np.arange(sq, dtype=np.int64)[:, None] - np.arange(skv, dtype=np.int64)[None, :]  # i - j
    if not isinstance(offset, int):
        b = shape_of(offset)[0]
        per_batch = ctx.reshape(ctx.op("cast", offset, dtype="i64"), [b, 1, 1, 1])
        diff = ctx.op("add", per_batch, diff[None, None])  # i + offset[b] - j
    else:
        diff = diff + np.int64(offset)
    if rule == "causal":
        return ctx.op("greater-equal", diff, _i64(0))
    left, right = window
    allowed: Handle | None = None
    for bound, side in ((left, diff), (right, ctx.op("neg", diff))):
        if bound >= 0:
            ok = ctx.op("less-equal", side, _i64(bound))
            allowed = ok if allowed is None else ctx.op("logical-and", allowed, ok)
    assert allowed is not None
    return allowed


def _bias(ctx: NodeContext, b: int, sq: int, skv: int, past: int, nonpad: Handle | None) -> Handle | None:
    """The additive bias (broadcasting to [B, H, Sq, Skv]) as ONNX builds it, or None when it is all zeros."""
    mask = _float_input(ctx, 3)
    if mask is not None:
        mask = _padded_mask(ctx, mask, skv)
        if np_dtype(mask) == np.bool_:
            mask = _select(ctx, mask)
    offset: int | Handle = nonpad if (nonpad is not None and past == 0) else past
    if not isinstance(offset, int):
        offset = ctx.op("sub", ctx.op("cast", offset, dtype="i64"), _i64(sq))
    zeros = np.zeros((sq, skv), np.float32)
    bias: Handle | None = mask
    if int(ctx.attr("is_causal", 0)):
        bias = ctx.op("add", zeros if bias is None else bias, _select(ctx, _offset_allowed(ctx, sq, skv, offset,
                                                                                           "causal")))
    window = (int(ctx.attr("left_window_size", -1)), int(ctx.attr("right_window_size", -1)))
    if min(window) < -1:
        raise ValueError(f"left_window_size / right_window_size {window} must be -1 or >= 0")
    if max(window) >= 0:
        allowed = _offset_allowed(ctx, sq, skv, offset, "window", window)
        bias = ctx.op("add", ctx.op("add", zeros, bias) if bias is not None else zeros, _select(ctx, allowed))
    if nonpad is not None:
        if shape_of(nonpad) != (b,):
            raise ValueError(f"nonpad_kv_seqlen must be [batch] = [{b}], got {describe(nonpad)}")
        keys = ctx.op("less", np.arange(skv, dtype=np.int64)[None, :],
                      ctx.reshape(ctx.op("cast", nonpad, dtype="i64"), [b, 1]))
        padding = _select(ctx, ctx.reshape(keys, [b, 1, 1, skv]))
        bias = padding if bias is None else ctx.op("add", bias, padding)
    if bias is not None and shape_of(bias) and len(shape_of(bias)) > 4:
        raise ValueError(f"attn_mask {describe(ctx.input(3))} does not broadcast to [batch, heads, Sq, Skv]")
    return bias


def _guard_masked_rows(ctx: NodeContext, p: Handle, bias: Handle | None) -> Handle:
    """The probabilities with a zero row for every query whose bias masks all keys."""
    if bias is None:
        return p
    row_max = ctx.op("reduce-max", bias, axes=[len(shape_of(bias)) - 1], keepdims=True)
    masked = ctx.op("equal", row_max, _f32(-np.inf))
    if isinstance(masked, np.ndarray) and not masked.any():
        return p
    return ctx.op("where", masked, _f32(0.0), p)


def _heads_4d(ctx: NodeContext) -> tuple[Handle, Handle, Handle, bool]:
    """Q, K, V as float32 [B, heads, S, D] and whether they came 3-D."""
    q, k, v = (_float(ctx, ctx.need(i, name)) for i, name in enumerate(("Q", "K", "V")))
    for name, h in (("Q", q), ("K", k), ("V", v)):
        if np_dtype(h) != np.float32:
            raise UnsupportedError(f"{name} is {np_dtype(h)} ({describe(h)}); float32 and half precision only")
    ranks = {len(shape_of(h)) for h in (q, k, v)}
    if ranks not in ({3}, {4}):
        raise ValueError(f"Q, K and V must all be 3-D or all 4-D, got {describe(q)}, {describe(k)}, {describe(v)}")
    if ranks == {4}:
        return q, k, v, False
    if not ctx.has_attr("q_num_heads") or not ctx.has_attr("kv_num_heads"):
        raise ValueError("3-D Q, K and V need the q_num_heads and kv_num_heads attributes")
    hq, hkv = int(ctx.attr("q_num_heads")), int(ctx.attr("kv_num_heads"))
    return _to_heads(ctx, q, hq, "Q"), _to_heads(ctx, k, hkv, "K"), _to_heads(ctx, v, hkv, "V"), True


def _with_cache(ctx: NodeContext, k: Handle, v: Handle) -> tuple[Handle, Handle, int]:
    """K and V after the past_key / past_value (concatenated on the sequence axis) and the past's length."""
    past_k, past_v = _float_input(ctx, 4), _float_input(ctx, 5)
    if past_k is None and past_v is None:
        return k, v, 0
    if past_k is None or past_v is None:
        raise ValueError("past_key and past_value must be given together")
    if ctx.input(6) is not None:
        raise ValueError("nonpad_kv_seqlen cannot be combined with past_key / past_value")
    if len(shape_of(past_k)) != 4 or len(shape_of(past_v)) != 4:
        raise ValueError(f"past_key / past_value must be 4-D, got {describe(past_k)}, {describe(past_v)}")
    return ctx.op("concat", past_k, k, axis=2), ctx.op("concat", past_v, v, axis=2), shape_of(past_k)[2]


def _scale_root(ctx: NodeContext, head_size: int) -> np.ndarray:
    """The square root of the scale (default 1 / sqrt(head size)), which ONNX multiplies Q and K by."""
    scale = ctx.attr("scale", None)
    scale = 1.0 / math.sqrt(head_size) if scale is None else float(scale)
    if not math.isfinite(scale) or scale < 0:
        raise UnsupportedError(f"scale={scale}: ONNX multiplies Q and K by its square root, so it must be finite "
                               "and not negative")
    return _f32(math.sqrt(scale))


def decomposed_attention(ctx: NodeContext) -> list[Handle | None]:
    """The Attention node as IR ops: [Y, present_key, present_value, qk_matmul_output]."""
    half = _HALF.get(np_dtype(ctx.need(0, "Q")).name)
    q, k, v, three_d = _heads_4d(ctx)
    b, hq, sq, dq = shape_of(q)
    k, v, past = _with_cache(ctx, k, v)
    hkv, skv = shape_of(k)[1], shape_of(k)[2]
    if shape_of(k)[3] != dq or shape_of(v)[1] != hkv or shape_of(v)[2] != skv or hq % hkv:
        raise ValueError(f"Q {describe(q)} does not fit K {describe(k)} and V {describe(v)}: Q's and K's head "
                         "sizes, K's and V's heads and keys must agree, and the query heads be a multiple of theirs")
    root = _scale_root(ctx, dq)
    k_rep, v_rep = _repeat_heads(ctx, k, hq // hkv), _repeat_heads(ctx, v, hq // hkv)
    scores = ctx.op("matmul", ctx.op("mul", q, root), ctx.transpose(ctx.op("mul", k_rep, root), [0, 1, 3, 2]))
    softcap = float(ctx.attr("softcap", 0.0))
    if softcap > 0:
        scores = ctx.op("mul", ctx.op("tanh", ctx.op("div", scores, _f32(softcap))), _f32(softcap))
    bias = _bias(ctx, b, sq, skv, past, ctx.input(6))
    with_bias = scores if bias is None else ctx.op("add", scores, bias)
    p = _guard_masked_rows(ctx, ctx.op("softmax", with_bias, axis=-1), bias)
    y = ctx.op("matmul", p, v_rep)
    if three_d:
        y = ctx.reshape(ctx.transpose(y, [0, 2, 1, 3]), [b, sq, hq * shape_of(v_rep)[3]])
    mode = int(ctx.attr("qk_matmul_output_mode", 0))
    if mode not in (0, 1, 2, 3):
        raise ValueError(f"qk_matmul_output_mode={mode} must be 0, 1, 2 or 3")
    outs = [y, k, v, {0: scores, 1: scores, 2: with_bias, 3: p}[mode]]
    return [ctx.op("cast", h, dtype=half) if half is not None else h for h in outs]
