"""ONNX's NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss as compositions of IR ops.

input [N, C, d1...], target [N, d1...] (integers), an optional weight [C], ignore_index and reduction (none, sum
or mean) as ONNX defines them: loss[n, d...] = -input[n, target[n, d...], d...] * weight[target[n, d...]], zero
where target is ignore_index; `mean` divides the sum by the sum of the weights that took part (by the count of
the elements when there is neither a weight nor an ignore_index). SoftmaxCrossEntropyLoss first takes the log of
the softmax over C (as log(softmax), ONNX's definition) and can return it as a second output. The class is read
with `gather-elements` at the target clamped into [0, C) (an ignored target may lie outside). Half precision is
computed in float32 and cast back.
"""

from __future__ import annotations

import numpy as np

from .onnx_context import Handle, NodeContext, UnsupportedError, converter, describe, np_dtype, shape_of

_HALF = {"float16": "f16", "bfloat16": "bf16"}


def _scores(ctx: NodeContext) -> tuple[Handle, Handle, str | None]:
    """(input as f32 / f64, target as i64, the IR dtype to cast results back to or None), checked."""
    x, t = ctx.need(0, "input"), ctx.need(1, "target")
    back = _HALF.get(np_dtype(x).name)
    if back is not None:
        x = ctx.op("cast", x, dtype="f32")
    elif np_dtype(x) not in (np.float32, np.float64):
        raise UnsupportedError(f"{ctx.node.op_type} of {describe(x)}: floating point only")
    xs, ts = shape_of(x), shape_of(t)
    if len(xs) < 2 or ts != xs[:1] + xs[2:] or np_dtype(t).kind not in "iu":
        raise ValueError(f"{ctx.node.op_type} needs input [N, C, d...] and integer target [N, d...], got "
                         f"{describe(x)}, {describe(t)}")
    return x, ctx.op("cast", t, dtype="i64"), back


def _nll(ctx: NodeContext, logp: Handle, target: Handle, weight_input: int) -> Handle:
    """The loss of log-probabilities logp [N, C, d...] at target [N, d...], weighted, ignored and reduced."""
    xs = shape_of(logp)
    c = xs[1]
    dtype = np_dtype(logp)
    ignore = ctx.attr("ignore_index", None)
    reduction = ctx.attr("reduction", "mean")
    reduction = reduction.decode() if isinstance(reduction, bytes) else str(reduction)
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"reduction {reduction!r} (none, sum or mean)")
    index = ctx.op("clip", target, min=0.0, max=float(c - 1))
    picked = ctx.op("gather-elements", logp, ctx.reshape(index, [xs[0], 1, *xs[2:]]), axis=1)
    loss = ctx.op("neg", ctx.reshape(picked, [xs[0], *xs[2:]]))
    valid = None if ignore is None else ctx.op("logical-not", ctx.op("equal", target, np.asarray(int(ignore),
                                                                                                    np.int64)))
    zero = np.asarray(0.0, dtype)
    weights: Handle | None = None
    w = ctx.input(weight_input)
    if w is not None:
        if shape_of(w) != (c,):
            raise ValueError(f"weight {describe(w)} must be [{c}]")
        if np_dtype(w) != dtype:
            w = ctx.op("cast", w, dtype="f32" if dtype == np.float32 else "f64")
        weights = ctx.op("gather", w, index, axis=0)
        if valid is not None:
            weights = ctx.op("where", valid, weights, zero)
    elif valid is not None:
        weights = ctx.op("where", valid, np.asarray(1.0, dtype), zero)
    if valid is not None:
        loss = ctx.op("where", valid, loss, zero)
    if weights is not None:
        loss = ctx.op("mul", loss, weights)
    axes = list(range(len(shape_of(loss))))
    if reduction == "none":
        return loss
    total = ctx.op("reduce-sum", loss, axes=axes, keepdims=False)
    if reduction == "sum":
        return total
    if weights is None:
        return ctx.op("reduce-mean", loss, axes=axes, keepdims=False)
    return ctx.op("div", total, ctx.op("reduce-sum", weights, axes=axes, keepdims=False))


def _back(ctx: NodeContext, outs: list[Handle | None], back: str | None) -> list[Handle | None]:
    return [h if h is None or back is None else ctx.op("cast", h, dtype=back) for h in outs]


@converter("NegativeLogLikelihoodLoss")
def _negative_log_likelihood_loss(ctx: NodeContext) -> list[Handle | None]:
    x, target, back = _scores(ctx)
    return _back(ctx, [_nll(ctx, x, target, 2)], back)


@converter("SoftmaxCrossEntropyLoss")
def _softmax_cross_entropy_loss(ctx: NodeContext) -> list[Handle | None]:
    x, target, back = _scores(ctx)
    log_prob = ctx.op("log", ctx.op("softmax", x, axis=1))
    return _back(ctx, [_nll(ctx, log_prob, target, 2), log_prob], back)
