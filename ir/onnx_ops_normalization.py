"""ONNX GroupNormalization, InstanceNormalization and MeanVarianceNormalization imported as compositions of IR ops.

GroupNormalization normalizes each of `num_groups` groups of channels over the group's channels and spatial
positions: the input reshaped to [N, groups, C / groups * spatial], a `layernorm` over the last axis, then the
affine, per group (opset 18: scale and bias [groups]) or per channel (opset 21: [C]). Half-precision inputs with
stash_type 1 (the default) are normalized in float32 and cast back, as the operator's definition computes.
InstanceNormalization is the same with a group per channel and a per-channel affine.
MeanVarianceNormalization is (x - mean) / (sqrt(variance) + 1e-9) over `axes` (default [0, 2, 3]); the variance is
the mean of the squared deviations (the definition's E[x^2] - E[x]^2 equals it exactly, and in float32 can
cancel below zero where this cannot).
"""

from __future__ import annotations

import math

from .onnx_context import Handle, NodeContext, UnsupportedError, converter, describe, norm_axis, np_dtype, shape_of

HALF_PRECISION = {"float16": "f16", "bfloat16": "bf16"}
"""numpy dtype name -> the IR dtype a float32 result is cast back to."""
MVN_EPSILON = 1e-9
"""What MeanVarianceNormalization's definition adds to the standard deviation."""


def _grouped_norm(ctx: NodeContext, groups: int, per_channel: bool, epsilon: float, names: tuple[str, str, str],
                  stash: bool) -> Handle:
    """The input normalized over each of `groups` groups of channels and their spatial positions, then scaled and
    shifted per channel or per group; half precision normalized in float32 when `stash`."""
    x, scale, bias = (ctx.need(i, name) for i, name in enumerate(names))
    xs = shape_of(x)
    op = ctx.node.op_type
    if len(xs) < 3:
        raise ValueError(f"{op} needs [N, C, spatial...], got {describe(x)}")
    n, c = xs[0], xs[1]
    if groups <= 0 or c % groups:
        raise ValueError(f"{op}: num_groups {groups} must divide the {c} channels of {describe(x)}")
    affine = (c,) if per_channel else (groups,)
    for h, what in ((scale, names[1]), (bias, names[2])):
        if shape_of(h) != affine:
            raise ValueError(f"{op} (opset {ctx.opset}): {what} {describe(h)} must have shape {list(affine)}")
    if np_dtype(x).kind != "f":
        raise UnsupportedError(f"{op} of {describe(x)}: floating point only")
    back = HALF_PRECISION.get(np_dtype(x).name) if stash else None
    if back is not None:
        x, scale, bias = (ctx.op("cast", h, dtype="f32") for h in (x, scale, bias))
    grouped = ctx.reshape(x, (n, groups, c // groups * math.prod(xs[2:])))
    y = ctx.op("layernorm", grouped, axis=-1, epsilon=epsilon)
    if per_channel:
        per_c = (c,) + (1,) * (len(xs) - 2)
        y = ctx.op("add", ctx.op("mul", ctx.reshape(y, xs), ctx.reshape(scale, per_c)), ctx.reshape(bias, per_c))
    else:
        y = ctx.op("add", ctx.op("mul", y, ctx.reshape(scale, (groups, 1))), ctx.reshape(bias, (groups, 1)))
        y = ctx.reshape(y, xs)
    return ctx.op("cast", y, dtype=back) if back is not None else y


@converter("GroupNormalization")
def _group_norm(ctx: NodeContext) -> list[Handle | None]:
    return [_grouped_norm(ctx, int(ctx.attr("num_groups")), ctx.opset >= 21, float(ctx.attr("epsilon", 1e-5)),
                          ("X", "scale", "bias"), int(ctx.attr("stash_type", 1)) == 1)]


@converter("InstanceNormalization")
def _instance_norm(ctx: NodeContext) -> list[Handle | None]:
    """GroupNormalization with a group per channel."""
    return [_grouped_norm(ctx, shape_of(ctx.need(0, "input"))[1], True, float(ctx.attr("epsilon", 1e-5)),
                          ("input", "scale", "B"), False)]


@converter("MeanVarianceNormalization")
def _mean_variance_norm(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "X")
    if np_dtype(x).kind != "f":
        raise UnsupportedError(f"MeanVarianceNormalization of {describe(x)}: floating point only")
    rank = len(shape_of(x))
    axes = sorted({norm_axis(int(a), rank) for a in ctx.attr("axes", [0, 2, 3])})
    mean = ctx.op("reduce-mean", x, axes=axes, keepdims=True)
    d = ctx.op("sub", x, mean)
    std = ctx.op("sqrt", ctx.op("reduce-mean", ctx.op("mul", d, d), axes=axes, keepdims=True))
    return [ctx.op("div", d, ctx.op("add", std, ctx.scalar(MVN_EPSILON, x)))]
