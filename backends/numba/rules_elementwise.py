"""Lowering of elementwise ops: unary maps, broadcasting binary ops, casts, identities."""

from __future__ import annotations

import numpy as np

from ...ir.graph import Node
from ...ir.ops.elementwise import float_to_int_bounds, integer_clip_bounds
from .k_elementwise import (
    BINARY_CODES,
    FLOAT_UNARY_CODES,
    INT_UNARY_CODES,
    binary_rows,
    cast,
    cast_saturating,
    cast_to_bool,
    float_unary,
    int_unary,
)
from .k_half import bf16_to_f32, f32_to_bf16, f32_to_half, half_to_f32
from .plan import Lit, LowerCtx
from .registry import lowers

FLOAT_ONLY = frozenset(FLOAT_UNARY_CODES) - frozenset(INT_UNARY_CODES)
"""Unary maps with no integer kernel (gelu and its tanh form, sigmoid, tanh, erf, sqrt, exp, log)."""


def _numeric(ctx: LowerCtx, dtype: np.dtype) -> None:
    if dtype.kind not in "fiu":
        raise ctx.fail(f"dtype {dtype} is not supported by this kernel (numeric dtypes only)")


@lowers("identity", "dropout")
def _identity(ctx: LowerCtx, node: Node) -> None:
    ctx.value_slot[id(node.outputs[0])] = ctx.slot(node.inputs[0])


@lowers("relu", "gelu", "sigmoid", "tanh", "erf", "sqrt", "exp", "log", "neg", "abs", "clip")
def _unary(ctx: LowerCtx, node: Node) -> None:
    x, v = node.inputs[0], node.outputs[0]
    dt = v.type.dtype.np_dtype
    _numeric(ctx, dt)
    out = ctx.out(v)
    n = v.type.numel
    if n == 0:
        return
    fx, fo = ctx.flat_of(ctx.arg(x)), ctx.flat_of(out)
    name = "gelu_tanh" if node.op == "gelu" and node.attrs.get("approximate") == "tanh" else node.op
    if dt.kind == "f":
        lo = dt.type(node.attrs.get("min", -np.inf))
        hi = dt.type(node.attrs.get("max", np.inf))
        ctx.emit(f"unary_{name}", float_unary, Lit(FLOAT_UNARY_CODES[name]), fx, fo, Lit(lo), Lit(hi),
                 writes=(out,), work=n * (8 if name in FLOAT_ONLY else 1))
        return
    if name in FLOAT_ONLY:
        raise ctx.fail(f"{node.op} needs a floating-point input, got {dt}")
    lo, hi = integer_clip_bounds(node.attrs.get("min", -np.inf), node.attrs.get("max", np.inf), np.iinfo(dt))
    ctx.emit(f"unary_{name}", int_unary, Lit(INT_UNARY_CODES[name]), fx, fo, Lit(np.int64(lo)),
             Lit(np.int64(hi)), writes=(out,), work=n)


HALF = {"f16": (half_to_f32, f32_to_half), "bf16": (bf16_to_f32, f32_to_bf16)}


def emit_cast(ctx: LowerCtx, src: int, dst: int) -> None:
    """Emit dst = src converted to dst's dtype (f16/bf16 through float32)."""
    from ...ir.dtypes import dtype_from_numpy

    s_dt, d_dt = ctx.slots[src].dtype, ctx.slots[dst].dtype
    n = int(np.prod(ctx.slots[dst].shape, dtype=np.int64))
    s_name, d_name = dtype_from_numpy(s_dt).name, dtype_from_numpy(d_dt).name
    if s_name in HALF:
        mid = dst if d_name == "f32" else ctx.buffer(ctx.slots[dst].shape, np.dtype(np.float32), "cast.f32")
        out32 = ctx.flat_of(mid) if s_name == "f16" else ctx.view(ctx.flat_of(mid), _as_u32, "cast.u32")
        ctx.emit(f"cast_{s_name}_f32", HALF[s_name][0], ctx.bits(ctx.flat_of(ctx.arg(src))), out32,
                 writes=(mid,), work=n)
        if mid != dst:
            emit_cast(ctx, mid, dst)
        return
    if d_name in HALF:
        mid = src if s_name == "f32" else ctx.buffer(ctx.slots[src].shape, np.dtype(np.float32), "cast.f32")
        if mid != src:
            emit_cast(ctx, src, mid)
        in32 = ctx.flat_of(ctx.arg(mid))
        in32 = in32 if d_name == "f16" else ctx.view(in32, _as_u32, "cast.u32")
        ctx.emit(f"cast_f32_{d_name}", HALF[d_name][1], in32, ctx.bits(ctx.flat_of(dst)), writes=(dst,), work=n)
        return
    fx, fo = ctx.flat_of(ctx.arg(src)), ctx.flat_of(dst)
    if d_name == "bool":
        ctx.emit("cast_bool", cast_to_bool, fx, fo, writes=(dst,), work=n)
    elif s_name in ("f32", "f64") and d_name not in ("f32", "f64"):
        lo, hi_excl, lo_i, hi_i = float_to_int_bounds(np.iinfo(d_dt))
        ctx.emit(f"cast_{d_name}", cast_saturating, fx, fo, Lit(lo), Lit(hi_excl), Lit(lo_i), Lit(hi_i),
                 writes=(dst,), work=n)
    else:
        ctx.emit(f"cast_{d_name}", cast, fx, fo, writes=(dst,), work=n)


def _as_u32(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32)


@lowers("cast")
def _cast(ctx: LowerCtx, node: Node) -> None:
    x, v = node.inputs[0], node.outputs[0]
    if x.type.dtype == v.type.dtype:
        ctx.value_slot[id(v)] = ctx.slot(x)
        return
    out = ctx.out(v)
    if v.type.numel:
        emit_cast(ctx, ctx.slot(x), out)


def broadcast_rows(a_shape: tuple[int, ...], b_shape: tuple[int, ...],
                   out_shape: tuple[int, ...]) -> tuple[int, int, np.ndarray, int, np.ndarray, int]:
    """(R, L, a_off, a_step, b_off, b_step): the output as [R, L] rows, operands as row offsets.

    Output axes of size 1 are dropped and neighbouring axes where each operand is either full
    or broadcast alike are merged; the last merged axis becomes the row.
    """
    r = len(out_shape)
    a = (1,) * (r - len(a_shape)) + tuple(a_shape)
    b = (1,) * (r - len(b_shape)) + tuple(b_shape)
    dims: list[list[int]] = []  # [extent, a_full, b_full]
    for i in range(r):
        if out_shape[i] == 1:
            continue
        af, bf = int(a[i] != 1), int(b[i] != 1)
        if dims and dims[-1][1] == af and dims[-1][2] == bf:
            dims[-1][0] *= out_shape[i]
        else:
            dims.append([out_shape[i], af, bf])
    if not dims:
        dims = [[1, 1, 1]]
    length, a_step, b_step = dims[-1]
    lead = dims[:-1]
    rows = int(np.prod([d[0] for d in lead], dtype=np.int64)) if lead else 1

    def offsets(k: int, step: int) -> np.ndarray:
        ext = [d[0] if d[k] else 1 for d in dims]
        strides = np.ones(len(dims), np.int64)
        for i in range(len(dims) - 2, -1, -1):
            strides[i] = strides[i + 1] * ext[i + 1]
        if not lead:
            return np.zeros(1, np.int64)
        idx = np.indices([d[0] for d in lead]).reshape(len(lead), -1)
        eff = np.array([strides[i] if lead[i][k] else 0 for i in range(len(lead))], np.int64)
        return (eff[:, None] * idx).sum(axis=0).astype(np.int64)

    return rows, int(length), offsets(1, a_step), int(a_step), offsets(2, b_step), int(b_step)


def emit_binary(ctx: LowerCtx, op: str, a: int, b: int, out: int) -> None:
    """Emit out = a (op) b with numpy broadcasting, on slots."""
    sa, sb, so = ctx.slots[a], ctx.slots[b], ctx.slots[out]
    _numeric(ctx, so.dtype)
    n = int(np.prod(so.shape, dtype=np.int64))
    if n == 0:
        return
    rows, length, a_off, a_step, b_off, b_step = broadcast_rows(sa.shape, sb.shape, so.shape)
    fa = ctx.flat_of(ctx.arg(a))
    fb = ctx.flat_of(ctx.arg(b))
    o2 = ctx.reshaped(out, (rows, length))
    ctx.emit(f"binary_{op}", binary_rows, Lit(BINARY_CODES[op]), fa, ctx.const(a_off, "a_off"), Lit(a_step),
             fb, ctx.const(b_off, "b_off"), Lit(b_step), o2, writes=(out,), work=n)


@lowers("add", "sub", "mul", "div", "pow", "maximum", "minimum")
def _binary(ctx: LowerCtx, node: Node) -> None:
    a, b = node.inputs

    def operand(v):  # type: ignore[no-untyped-def]
        return ctx.writable_const(v) if v.is_constant else ctx.arg(v)

    sa, sb = operand(a), operand(b)
    emit_binary(ctx, node.op, sa, sb, ctx.out(node.outputs[0]))
