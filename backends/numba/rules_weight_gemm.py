"""Lowering of weight-only quantized products onto the weight-only GEMM (int4_gemm.py).

A `linear` (or a `matmul` with a 2-D B) whose weight is `dequantize` of a constant i4 or i8 weight
(symmetric: per output channel, per tensor, or in groups along K read from a constant scale input)
and whose activation has at most `int4_gemm.max_rows(N, K)` rows runs on `gemm_w4g<G>` / `gemm_w8g<G>`
(`c` for per channel): the weights are packed now, at compile time, and the f32 copy of the weight is never
made. With more rows, or a weight small enough that the fp32 GEMM reads it from cache, the weight-only GEMM
does not pay: the weight is dequantized to f32 once, at compile time (rules_nn.py), and the fp32 GEMM runs;
the step's note and `exe.stats["kernels_by_layer"]` say so.
The fused epilogue (the layer's own constant bias first) runs per block of output columns.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np

from ...ir.graph import Node, Value
from .epilogue import Epilogue
from .int4_gemm import (
    PackedWeights,
    column_block,
    kernel_for,
    kernel_name,
    max_rows,
    pack_int4_weights,
    pack_int8_rows,
)
from .matrix_lowering import FLOPS_PER_UNIT, epilogue_args, kernel_label, own_bias, residual_arg
from .plan import Lit, LowerCtx
from .rules_elementwise import emit_binary

_BITS = {"i4": 4, "i8": 8}


@dataclass(frozen=True)
class StoredWeight:
    """The integer weight [N, K] behind a product's `dequantize`, with its scales and group length (0: per channel)."""

    bits: int
    stored: np.ndarray
    """The constant as stored: [N, K] for a linear, [K, N] for a matmul (`transposed`)."""
    transposed: bool
    scales: np.ndarray
    group_size: int
    name: str

    @property
    def w_nk(self) -> np.ndarray:
        """The integer weights [N, K] as int8."""
        w = np.asarray(self.stored).astype(np.int8)
        return np.ascontiguousarray(w.T) if self.transposed else w

    def describe(self) -> str:
        """'int4 weights in groups of 32 along K' / 'int8 weights per channel'."""
        return f"int{self.bits} weights " + (f"in groups of {self.group_size} along K" if self.group_size
                                              else "per channel")


def stored_weight(node: Node) -> StoredWeight | None:
    """The stored integer weight of a linear / 2-D matmul whose weight is a symmetric `dequantize` of a constant
    i4 or i8 (scales per output channel, per tensor, or grouped along K), else None."""
    if node.op not in ("linear", "matmul") or len(node.inputs) < 2:
        return None
    x, wv = node.inputs[0], node.inputs[1]
    dq = wv.producer
    if dq is None or dq.op != "dequantize" or dq.inputs[0].data is None or wv.type.rank != 2:
        return None
    q = dq.inputs[0]
    if q.type.dtype.name not in _BITS or x.type.dtype.name != "f32" or node.outputs[0].type.dtype.name != "f32":
        return None
    if node.op == "matmul" and x.type.rank < 2:
        return None
    k_axis = 1 if node.op == "linear" else 0
    k, n = (q.type.shape[1], q.type.shape[0]) if node.op == "linear" else q.type.shape
    bits, tr = _BITS[q.type.dtype.name], node.op == "matmul"
    a = dq.attrs
    if len(dq.inputs) > 1:
        if dq.inputs[1].data is None or a["axis"] % 2 != k_axis:
            return None
        s = np.asarray(dq.inputs[1].data, np.float32)
        s = s if node.op == "linear" else s.T
        g = a["group_size"]
        if g >= k:  # one group: per channel
            return StoredWeight(bits, q.data, tr, np.ascontiguousarray(s[:, 0]), 0, q.name)
        return StoredWeight(bits, q.data, tr, np.ascontiguousarray(s), g, q.name)
    if any(a["zero_point"]) or (a["axis"] is not None and a["axis"] % 2 == k_axis):
        return None  # asymmetric, or scales along K: the f32 path
    scales = np.broadcast_to(np.asarray(a["scale"], np.float32), (n,))
    return StoredWeight(bits, q.data, tr, np.ascontiguousarray(scales), 0, q.name)


_PACKED: dict[tuple[int, int, str, int, int], tuple[weakref.ref, PackedWeights]] = {}
"""Packed weights by the constant they were packed from (dropped when that array is freed)."""


def shared_packing(node: Node, sw: StoredWeight) -> PackedWeights:
    """`sw` packed for the weight-only GEMM, once per stored constant and layout: every plan that reads it (the
    row buckets of an early-exit segment) shares one packed copy."""
    dq = node.inputs[1].producer
    assert dq is not None
    owner = dq.inputs[0].data
    scales = id(dq.inputs[1].data) if len(dq.inputs) > 1 else hash(dq.attrs["scale"])
    key = (id(owner), scales, node.op, sw.bits, sw.group_size)
    hit = _PACKED.get(key)
    if hit is not None and hit[0]() is owner:
        return hit[1]
    packed = (pack_int4_weights if sw.bits == 4 else pack_int8_rows)(sw.w_nk, sw.scales, sw.group_size)
    try:
        _PACKED[key] = (weakref.ref(owner, lambda _ref, k=key: _PACKED.pop(k, None)), packed)  # type: ignore[arg-type]
    except TypeError:  # an array that takes no weak reference: packed per plan
        pass
    return packed


def _rows(node: Node) -> tuple[int, int, int]:
    """(M, N, K) of a linear / 2-D matmul."""
    x, wv = node.inputs[0], node.inputs[1]
    k, n = (wv.type.shape[1], wv.type.shape[0]) if node.op == "linear" else wv.type.shape
    m = x.type.numel // k if k else math.prod(x.type.shape[:-1])
    return m, n, k


def lower_weight_gemm(ctx: LowerCtx, node: Node, epi: Epilogue, out_value: Value) -> bool:
    """Emit `node` on the weight-only GEMM when its weight is stored int4 / int8 and M <= max_rows(N, K); False when
    it does not apply (the caller lowers it as fp32, see `note_f32_fallback`)."""
    sw = stored_weight(node)
    m, n, k = _rows(node)
    if sw is None or _f32_reason(sw, m, n, k) or k == 0:
        return False
    epi, bias_value = own_bias(node, epi)
    x = node.inputs[0]
    out = ctx.out(out_value)
    if m * n:
        packed = shared_packing(node, sw)
        label = kernel_name(packed, sw.group_size == 0)
        data = ctx.const(packed.data, f"{sw.name}.packed_{label}")
        scales = ctx.const(packed.scales, f"{sw.name}.group_scales")
        res = residual_arg(ctx, epi, (m, n))
        codes, vecs, params = epilogue_args(ctx, epi)
        work = 2 * m * n * k // FLOPS_PER_UNIT
        par = ctx.parallel(work)
        tn = column_block(n, ctx.threads, par)
        o2 = ctx.reshaped(out, (m, n))
        step = ctx.emit(kernel_label(label, epi), kernel_for(packed), ctx.reshaped(ctx.arg(x), (m, k)), data, scales,
                        o2, Lit(packed.group_size), Lit(tn), codes, vecs, params, res, writes=(o2,), work=work)
        step.note = f"weight-only GEMM on {sw.describe()} (M = {m} <= {max_rows(n, k)} for a {n}x{k} weight)"
        ctx.layer_kernels[node.name] = {"kernel": step.kernel, "reason": step.note}
    if bias_value is not None:
        emit_binary(ctx, "add", out, ctx.arg(bias_value), out)
    return True


def _f32_reason(sw: StoredWeight, m: int, n: int, k: int) -> str:
    """Why a stored weight runs as f32 (dequantized at compile time) instead of on the weight-only GEMM, or ''."""
    limit = max_rows(n, k)
    if not limit:
        return f"a {n}x{k} weight is read from cache in fp32: fp32 GEMM"
    if m > limit:
        return f"M = {m} > {limit} for a {n}x{k} weight: fp32 GEMM"
    if sw.bits == 4 and sw.group_size % 2:
        return "groups of odd length: two int4 weights per byte need even groups"
    return ""


def note_f32_fallback(ctx: LowerCtx, node: Node, first_step: int) -> None:
    """Note on the steps since `first_step`, and in the layer's kernel record, that a stored int4 / int8 weight
    was dequantized to f32 at compile time, and why (a cached weight, more rows than `max_rows`, odd int4 groups)."""
    sw = stored_weight(node)
    if sw is None:
        return
    reason = _f32_reason(sw, *_rows(node))
    if not reason:
        return
    why = f"{sw.describe()} dequantized to f32 at compile time ({reason})"
    kernels = [s for s in ctx.steps[first_step:] if not s.is_view]
    for s in kernels:
        s.note = why
    if kernels:
        ctx.layer_kernels[node.name] = {"kernel": kernels[0].kernel, "reason": why}
