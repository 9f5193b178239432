"""Lowering of normalization, pooling, reduction and quantization ops."""

from __future__ import annotations

import math

import numpy as np

from ...ir.graph import Node, Value
from ...ir.ops.nn import is_plain_2x2_pool
from . import image_split as cut
from .channels_last import result_channels_last
from .geometry import window_geometry
from .k_conv_blocked import global_avgpool_blocked
from .k_data import dequantize, quantize
from .k_elementwise import cast
from .k_norm import batchnorm, layernorm, lrn, softmax_mid, softmax_rows
from .k_phase_planes import avgpool_planes, maxpool_planes, plane_scratch, pool_divisors
from .k_pool import avgpool, maxpool, maxpool2x2, maxpool_nhwc, mean_rows
from .k_reduce import MAX, SUM, reduce_mid, reduce_rows
from .plan import Lit, LowerCtx
from .reference_steps import lower_with_reference
from .registry import lowers
from .rules_shape import Transpose


def _float(ctx: LowerCtx, v: Value) -> None:
    if v.type.dtype.name != "f32":
        raise ctx.fail(f"{v.type.dtype.name} is not supported here (f32 only)")


def _param(ctx: LowerCtx, v: Value) -> int:
    """A flat slot for a small parameter vector (a writable copy of a constant)."""
    return ctx.flat_of(ctx.writable_const(v) if v.is_constant else ctx.arg(v))


@lowers("softmax")
def _softmax(ctx: LowerCtx, node: Node) -> None:
    x, v = node.inputs[0], node.outputs[0]
    _float(ctx, v)
    shape = v.type.shape
    axis = node.attrs["axis"] % len(shape)
    lead, n, tail = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])
    out = ctx.out(v)
    if v.type.numel == 0:
        return
    src = ctx.arg(x)
    if tail == 1:
        ctx.emit("softmax_rows", softmax_rows, ctx.reshaped(src, (lead, n)), ctx.reshaped(out, (lead, n)),
                 writes=(out,), work=v.type.numel * 4)
    else:
        acc = ctx.buffer((lead, 2, tail), np.dtype(np.float32), f"{v.name}.acc")
        ctx.emit("softmax_mid", softmax_mid, ctx.reshaped(src, (lead, n, tail)), ctx.reshaped(out, (lead, n, tail)),
                 acc, writes=(out, acc), work=v.type.numel * 4)


@lowers("layernorm")
def _layernorm(ctx: LowerCtx, node: Node) -> None:
    x, v = node.inputs[0], node.outputs[0]
    _float(ctx, v)
    shape = v.type.shape
    axis = node.attrs["axis"] % len(shape)
    rows, length = math.prod(shape[:axis]), math.prod(shape[axis:])
    out = ctx.out(v)
    if v.type.numel == 0:
        return
    dummy = ctx.const(np.zeros(1, np.float32), "none")
    scale = _param(ctx, node.inputs[1]) if len(node.inputs) > 1 else dummy
    bias = _param(ctx, node.inputs[2]) if len(node.inputs) > 2 else dummy
    ctx.emit("layernorm", layernorm, ctx.reshaped(ctx.arg(x), (rows, length)), scale, bias,
             Lit(len(node.inputs) > 1), Lit(len(node.inputs) > 2), Lit(np.float32(node.attrs["epsilon"])),
             ctx.reshaped(out, (rows, length)), writes=(out,), work=v.type.numel * 3)


def _ncs(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return shape[0], shape[1], math.prod(shape[2:])


@lowers("batchnorm")
def _batchnorm(ctx: LowerCtx, node: Node) -> None:
    x, v = node.inputs[0], node.outputs[0]
    _float(ctx, v)
    out = ctx.out(v)
    if v.type.numel == 0:
        return
    ncs = _ncs(v.type.shape)
    params = [_param(ctx, p) for p in node.inputs[1:]]
    ctx.emit("batchnorm", batchnorm, ctx.reshaped(ctx.arg(x), ncs), *params, Lit(float(node.attrs["epsilon"])),
             ctx.reshaped(out, ncs), writes=(out,), work=v.type.numel)


@lowers("lrn")
def _lrn(ctx: LowerCtx, node: Node) -> None:
    x, v = node.inputs[0], node.outputs[0]
    _float(ctx, v)
    out = ctx.out(v)
    if v.type.numel == 0:
        return
    a = node.attrs
    ncs = _ncs(v.type.shape)
    ctx.emit("lrn", lrn, ctx.reshaped(ctx.arg(x), ncs), Lit(int(a["size"])), Lit(np.float32(a["alpha"])),
             Lit(np.float32(a["beta"])), Lit(np.float32(a["bias"])), ctx.reshaped(out, ncs), writes=(out,),
             work=v.type.numel * a["size"])


def _is_plain_2x2(node: Node, hw_in: tuple[int, ...], hw_out: tuple[int, int]) -> bool:
    """2x2 windows at stride 2, no padding, no dilation, every window inside the input."""
    return is_plain_2x2_pool(node) and 2 * hw_out[0] <= hw_in[0] and 2 * hw_out[1] <= hw_in[1]


MIN_PLANE_OUTPUTS = 8
"""Fewest output pixels per channel for which pooling runs on phase planes (each tap is one run over them)."""


@lowers("maxpool2d", "avgpool2d")
def _pool(ctx: LowerCtx, node: Node) -> None:
    x, v = node.inputs[0], node.outputs[0]
    dt = v.type.dtype.np_dtype
    if dt.kind not in "fiu":
        raise ctx.fail(f"{node.op} of dtype {dt} is not supported")
    n, c, ho, wo = v.type.shape
    nhwc = ctx.channels_last.get(id(x)) if node.op == "maxpool2d" and dt == np.float32 else None
    if nhwc is not None and v.type.numel and result_channels_last(ctx, v):  # stays channels last (channels_last.py)
        pooled = ctx.buffer((n, ho, wo, c), dt, f"{v.name}.nhwc")
        ctx.emit("maxpool_nhwc", maxpool_nhwc, nhwc, Lit(window_geometry(node, wo)), pooled, writes=(pooled,),
                 work=v.type.numel * node.attrs["kernel"][0] * node.attrs["kernel"][1])
        ctx.view(pooled, Transpose((0, 3, 1, 2)), v.name, v)
        ctx.channels_last[id(v)] = pooled
        return
    out = ctx.out(v)
    if v.type.numel == 0:
        return
    geo = Lit(window_geometry(node, wo))
    src = ctx.arg(x)
    kh, kw = node.attrs["kernel"]
    work = v.type.numel * kh * kw
    # f32 windows over outputs of a few rows run on phase planes (k_phase_planes); other dtypes, and windows
    # with a handful of outputs (a global average written as a window), on row loops
    planes = dt == np.float32 and ho * wo >= MIN_PLANE_OUTPUTS
    if node.op == "maxpool2d" and _is_plain_2x2(node, x.type.shape[2:], (ho, wo)):
        ctx.emit("maxpool2x2", maxpool2x2, src, out, writes=(out,), work=v.type.numel * 4)
    elif planes:
        per_channel = plane_scratch(geo.value, ho)
        scratch = ctx.buffer((n * c, per_channel), np.dtype(np.float32), f"{node.name}.phases")
        work = n * c * per_channel * (1 + kh * kw)
        if node.op == "maxpool2d":
            ctx.emit("maxpool_planes", maxpool_planes, src, ctx.reshaped(out, (n, c, ho * wo)), geo, scratch,
                     writes=(out, scratch), work=work)
        else:
            pads = node.attrs["pads"]
            div = pool_divisors(geo.value, x.type.shape[2:], (ho, wo), (pads[2], pads[3]),
                                bool(node.attrs["count_include_pad"]))
            ctx.emit("avgpool_planes", avgpool_planes, src, ctx.reshaped(out, (n, c, ho * wo)), geo, scratch,
                     ctx.const(div, f"{node.name}.divisors"), writes=(out, scratch), work=work)
    elif node.op == "maxpool2d":
        init = dt.type(-np.inf) if dt.kind == "f" else dt.type(np.iinfo(dt).min)
        ctx.emit("maxpool", maxpool, src, ctx.reshaped(out, (n, c, ho * wo)), geo, Lit(init), writes=(out,), work=work)
    else:
        pads = node.attrs["pads"]
        ctx.emit("avgpool", avgpool, src, ctx.reshaped(out, (n, c, ho * wo)), geo,
                 Lit(bool(node.attrs["count_include_pad"])), Lit(np.array([pads[2], pads[3]], np.int64)),
                 writes=(out,), work=work)


MEAN_VALUES_PER_UNIT = 5
"""Values a global mean reads per unit of work (one load and one add each; an elementwise op's unit is about
one value with two loads and a store). Measured on 2 cores, serial / parallel twin through `run`: [4, 64, 8, 8]
4.9 / 7.1 us, [4, 16, 32, 32] 8.4 / 9.0, [1, 512, 7, 7] 6.2 / 7.6, [1, 2048, 7, 7] 13.2 / 12.0: the parallel twin
pays from about 80,000 values."""


@lowers("global-avgpool")
def _global_avgpool(ctx: LowerCtx, node: Node) -> None:
    x, v = node.inputs[0], node.outputs[0]
    _float(ctx, v)
    n, c, s = _ncs(x.type.shape)
    out = ctx.out(v)
    if n * c == 0:
        return
    held = ctx.blocked.get(id(x))
    if held is not None:  # a convolution's result in the blocked-channel layout
        ctx.emit("global_avgpool_blocked", global_avgpool_blocked, held.view, Lit(held.halo),
                 ctx.reshaped(out, (n, c)), writes=(out,), work=n * c * s // MEAN_VALUES_PER_UNIT, images=n,
                 cuts=(cut.LEADING, cut.SHARED, cut.LEADING))
        return
    ctx.emit("global_avgpool", mean_rows, ctx.reshaped(ctx.arg(x), (n * c, s)), ctx.flat_of(out), writes=(out,),
             work=n * c * s // MEAN_VALUES_PER_UNIT)


def _runs(axes: list[int]) -> list[tuple[int, int]]:
    """Maximal runs [lo, hi) of consecutive sorted axes."""
    runs: list[tuple[int, int]] = []
    for ax in sorted(axes):
        if runs and runs[-1][1] == ax:
            runs[-1] = (runs[-1][0], ax + 1)
        else:
            runs.append((ax, ax + 1))
    return runs


@lowers("reduce-sum", "reduce-mean", "reduce-max")
def _reduce(ctx: LowerCtx, node: Node) -> None:
    x, v = node.inputs[0], node.outputs[0]
    dt = x.type.dtype.np_dtype
    if dt.kind not in "fiu":  # booleans: the reference rule (any / all)
        lower_with_reference(ctx, node)
        return
    shape = list(x.type.shape)
    axes = [a % len(shape) for a in node.attrs["axes"]] if node.attrs["axes"] else list(range(len(shape)))
    op = MAX if node.op == "reduce-max" else SUM
    if op == MAX and any(shape[a] == 0 for a in axes):
        raise ctx.fail(f"reduce-max over an empty axis of shape {shape}")
    count = math.prod(shape[a] for a in axes)
    out = ctx.out(v)
    if v.type.numel == 0:
        return
    cur = ctx.arg(x)
    runs = _runs(axes)
    if not runs:  # rank 0: nothing to reduce
        ctx.emit("copy", cast, ctx.flat_of(cur), ctx.flat_of(out), writes=(out,), work=v.type.numel)
        return
    acc_dt = np.dtype(np.float64 if dt.kind == "f" else np.int64) if op == SUM else dt
    for k, (lo, hi) in enumerate(reversed(runs)):
        last = k == len(runs) - 1
        a_, r_, b_ = math.prod(shape[:lo]), math.prod(shape[lo:hi]), math.prod(shape[hi:])
        new_shape = shape[:lo] + [1] * (hi - lo) + shape[hi:]
        dst = out if last else ctx.buffer(tuple(new_shape), dt, f"{v.name}.part{k}")
        div = float(count) if (last and node.op == "reduce-mean") else 1.0
        if b_ == 1:
            ctx.emit("reduce_rows", reduce_rows, ctx.reshaped(cur, (a_, r_)), ctx.flat_of(dst), Lit(op), Lit(div),
                     writes=(dst,), work=a_ * r_)
        else:
            acc = ctx.buffer((a_, b_), acc_dt, f"{v.name}.acc{k}")
            ctx.emit("reduce_mid", reduce_mid, ctx.reshaped(cur, (a_, r_, b_)), ctx.reshaped(dst, (a_, b_)), acc,
                     Lit(op), Lit(div),
                     writes=(dst, acc), work=a_ * r_ * b_)
        cur, shape = dst, new_shape


def _qview(ctx: LowerCtx, node: Node, x: Value) -> tuple[tuple[int, int, int], int, int]:
    """The [A, C, B] view shape and flat scale / zero-point slots of a (de)quantize node."""
    a = node.attrs
    shape = x.type.shape
    if a["axis"] is None:
        acb = (1, 1, math.prod(shape))
    else:
        ax = a["axis"] % len(shape)
        acb = (math.prod(shape[:ax]), shape[ax], math.prod(shape[ax + 1:]))
    scale = ctx.const(np.asarray(a["scale"], np.float32), f"{node.name}.scale")
    zp = ctx.const(np.asarray(a["zero_point"], np.int32), f"{node.name}.zero_point")
    return acb, scale, zp


@lowers("quantize")
def _quantize(ctx: LowerCtx, node: Node) -> None:
    x, v = node.inputs[0], node.outputs[0]
    _float(ctx, x)
    out = ctx.out(v)
    if v.type.numel == 0:
        return
    acb, scale, zp = _qview(ctx, node, x)
    info = np.iinfo(v.type.dtype.np_dtype)
    ctx.emit("quantize", quantize, ctx.reshaped(ctx.arg(x), acb), scale, zp, Lit(float(info.min)),
             Lit(float(info.max)), ctx.reshaped(out, acb), writes=(out,), work=v.type.numel)


def _dequantized_constant(node: Node, q: np.ndarray) -> np.ndarray:
    """float32(int32(q) - zero_point) * scale along the node's axis, computed like the dequantize kernel
    (grouped: float32(q) times the scale input repeated group_size times along the axis)."""
    a = node.attrs
    shape = q.shape
    if len(node.inputs) > 1:
        ax = a["axis"] % len(shape)
        scale = np.repeat(np.asarray(node.inputs[1].data, np.float32), a["group_size"], axis=ax)
        return q.astype(np.int32).astype(np.float32) * np.take(scale, np.arange(shape[ax]), axis=ax)
    ax = None if a["axis"] is None else a["axis"] % len(shape)
    bshape = (1,) * len(shape) if ax is None else tuple(shape[ax] if i == ax else 1 for i in range(len(shape)))
    zp = np.asarray(a["zero_point"], np.int32).reshape(bshape)
    scale = np.asarray(a["scale"], np.float32).reshape(bshape)
    return (q.astype(np.int32) - zp).astype(np.float32) * scale


@lowers("dequantize")
def _dequantize(ctx: LowerCtx, node: Node) -> None:
    x, v = node.inputs[0], node.outputs[0]
    name = x.type.dtype.name
    if name == "i4" and x.data is None:
        raise ctx.fail("dequantize of i4 is supported for constant weights only (the kernels hold no i4 activations)")
    if name not in ("i8", "u8", "i32", "i4"):
        raise ctx.fail(f"dequantize of {name} is not supported (i8, u8, i32, constant i4)")
    grouped = len(node.inputs) > 1
    if grouped and (x.data is None or node.inputs[1].data is None):
        raise ctx.fail("grouped dequantize (a scale input) is supported for a constant weight and constant scales "
                       "only (dequantized at compile time or read packed by the weight-only GEMM)")
    if x.data is not None and (id(v) not in ctx.out_ids or grouped):
        # a constant weight: dequantized once, at compile time, as the kernel would, when a kernel reads it as
        # f32; a linear on the weight-only GEMM (rules_weight_gemm.py) reads the stored integers instead
        make = lambda: ctx.const(_dequantized_constant(node, x.data), v.name)  # type: ignore[arg-type] # noqa: E731
        if id(v) in ctx.out_ids:  # a graph output gets its own array each run: copied from the constant
            ctx.copy_view(make(), ctx.out(v))
        else:
            ctx.defer(v, make)
        return
    out = ctx.out(v)
    if v.type.numel == 0:
        return
    acb, scale, zp = _qview(ctx, node, x)
    # int4 weights are widened to int8 storage once, at compile time: every i4 value fits in i8
    src = ctx.const(x.data.astype(np.int8), f"{x.name}.i8") if name == "i4" else ctx.arg(x)  # type: ignore[union-attr]
    ctx.emit("dequantize", dequantize, ctx.reshaped(src, acb), scale, zp, ctx.reshaped(out, acb),
             writes=(out,), work=v.type.numel)
