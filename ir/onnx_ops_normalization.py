"""ONNX GroupNormalization and MeanVarianceNormalization imported as compositions of IR ops.

GroupNormalization normalizes each of `num_groups` groups of channels over the group's channels and spatial
positions: the input reshaped to [N, groups, C / groups * spatial], a `layernorm` over the last axis, then the
affine, per group (opset 18: scale and bias [groups]) or per channel (opset 21: [C]). Half-precision inputs with
stash_type 1 (the default) are normalized in float32 and cast back, as the operator's definition computes.
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


@converter("GroupNormalization")
def _group_norm(ctx: NodeContext) -> list[Handle | None]:
    x, scale, bias = ctx.need(0, "X"), ctx.need(1, "scale"), ctx.need(2, "bias")
    xs = shape_of(x)
    if len(xs) < 3:
        raise ValueError(f"GroupNormalization needs [N, C, spatial...], got {describe(x)}")
    groups = int(ctx.attr("num_groups"))
    n, c = xs[0], xs[1]
    if groups <= 0 or c % groups:
        raise ValueError(f"GroupNormalization: num_groups {groups} must divide the {c} channels of {describe(x)}")
    per_group = ctx.opset < 21
    affine = (groups,) if per_group else (c,)
    for h, what in ((scale, "scale"), (bias, "bias")):
        if shape_of(h) != affine:
            raise ValueError(f"GroupNormalization (opset {ctx.opset}): {what} {describe(h)} must have shape "
                             f"{list(affine)}")
    back = HALF_PRECISION.get(np_dtype(x).name) if int(ctx.attr("stash_type", 1)) == 1 else None
    if np_dtype(x).kind != "f":
        raise UnsupportedError(f"GroupNormalization of {describe(x)}: floating point only")
    if back is not None:
        x, scale, bias = (ctx.op("cast", h, dtype="f32") for h in (x, scale, bias))
    grouped = ctx.reshape(x, (n, groups, c // groups * math.prod(xs[2:])))
    y = ctx.op("layernorm", grouped, axis=-1, epsilon=float(ctx.attr("epsilon", 1e-5)))
    if per_group:
        y = ctx.op("add", ctx.op("mul", y, ctx.reshape(scale, (groups, 1))), ctx.reshape(bias, (groups, 1)))
        y = ctx.reshape(y, xs)
    else:
        per_c = (c,) + (1,) * (len(xs) - 2)
        y = ctx.op("add", ctx.op("mul", ctx.reshape(y, xs), ctx.reshape(scale, per_c)), ctx.reshape(bias, per_c))
    return [ctx.op("cast", y, dtype=back) if back is not None else y]


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
