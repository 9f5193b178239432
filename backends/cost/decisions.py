"""Hardware-aware choices for the prune and quantize passes, each with the reason a person can read."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...ir.dtypes import DType, bf16, f16, f32, i4, i8, i32
from ...ir.graph import Node, Value
from ...ir.types import QuantInfo, SparsityInfo, TensorType
from .loader import load_target
from .model import node_cost
from .precision import matrix_precision
from .rules import CostError
from .target import SparsitySupport, Target

WEIGHT_OPS = ("linear", "conv2d", "matmul")

PRECISION_DTYPES: dict[str, DType] = {"fp32": f32, "fp16": f16, "bf16": bf16, "int8": i8, "int4": i4}
"""Precisions the IR can store, and their dtypes (fp8 and tf32 have no IR dtype)."""

DEFAULT_PRECISIONS = ("int8", "fp16", "bf16", "fp32")
"""What choose_precision considers unless told otherwise: int4 needs weight-only schemes and an
accuracy check, so a pass opts into it explicitly."""

_PREFERENCE = {"fp32": 0, "bf16": 1, "fp16": 1, "int8": 2, "int4": 3}


@dataclass(frozen=True)
class Decision:
    """A choice for one node: `choice` None means skipped; `reason` says why either way."""

    node: str
    op: str
    choice: str | None
    reason: str
    params: Mapping[str, Any] = field(default_factory=dict)
    speedup: float | None = None  # predicted latency before / after on the target

    @property
    def applied(self) -> bool:
        """True when the pass should change the node."""
        return self.choice is not None

    def __str__(self) -> str:
        return self.reason


def _gemm_dims(node: Node) -> tuple[int, int] | None:
    """(N, K) of the weight as a matrix: output features and reduction length."""
    w = node.inputs[1]
    if node.op == "linear":
        return w.type.shape[0], w.type.shape[1]
    if node.op == "conv2d":
        s = w.type.shape
        return s[0], s[1] * s[2] * s[3]
    if node.op == "matmul" and w.is_constant and w.type.rank >= 2:
        return w.type.shape[-1], w.type.shape[-2]
    return None


def _retyped(node: Node, types: dict[int, TensorType], out_type: TensorType | None = None) -> Node:
    """A detached copy of `node` whose inputs `types` (by index) and output have other types."""
    ins = [Value(v.name, types[i], v.data) if i in types else v for i, v in enumerate(node.inputs)]
    out = node.outputs[0]
    return Node(node.op, ins, dict(node.attrs), [Value(out.name, out_type or out.type)])


def _latency(node: Node, target: Target) -> float:
    return node_cost(node, target).latency_s


def _eligible(sup: SparsitySupport, name: str, n: int, k: int) -> str | None:
    """None when a weight of N x K can take `sup`, else the reason it cannot."""
    if sup.pattern == "nm":
        if k % sup.m:
            return f"{sup.describe()} not applied to {name}: K={k} is not a multiple of {sup.m}"
    elif sup.pattern == "block" and sup.block is not None:
        bh, bw = sup.block
        if n % bh:
            return f"{sup.describe()} not applied to {name}: N={n} is not a multiple of {bh}"
        if k % bw:
            return f"{sup.describe()} not applied to {name}: K={k} is not a multiple of {bw}"
    return None


def choose_sparsity(target: str | os.PathLike | Target, node: Node, sparsity: float | None = None) -> Decision:
    """The sparsity pattern `target` accelerates for `node`'s weight (first eligible in the target file).

    `sparsity` is the fraction of zeros the pass aims at (block and unstructured patterns; N:M fixes
    it); it only feeds the predicted speed-up (0.5 when not given).
    """
    t = load_target(target)
    name = node.name
    if node.op not in WEIGHT_OPS:
        return Decision(name, node.op, None, f"{name} ({node.op}) has no weight matrix to prune")
    dims = _gemm_dims(node)
    if dims is None:
        return Decision(name, node.op, None, f"{name} ({node.op}) multiplies two activations: no constant weight")
    n, k = dims
    if not t.sparsity:
        return Decision(name, node.op, None, f"{t.name} accelerates no sparsity pattern: {name} left dense")
    prec = matrix_precision([v.type for v in node.inputs[:2]], t)
    run_prec = t.compute_precision(prec) or prec
    skipped = []
    for sup in t.sparsity:
        why = _eligible(sup, name, n, k)
        if why:
            skipped.append(why)
            continue
        zeros = 1 - sup.n / sup.m if sup.pattern == "nm" else (0.5 if sparsity is None else sparsity)
        info = SparsityInfo("nm", 1 - zeros, n=sup.n, m=sup.m) if sup.pattern == "nm" else (
            SparsityInfo("block", 1 - zeros, block=sup.block) if sup.pattern == "block"
            else SparsityInfo(sup.pattern, 1 - zeros))
        # price it at a precision the pattern is accelerated at when the node's own is not one
        at = run_prec if (sup.applies_to(run_prec) and t.supports(run_prec)) else _sparse_precision(t, sup)
        base = node if at == run_prec else _with_precision(node, at)
        w = base.inputs[1]
        try:
            speed = _latency(base, t) / _latency(_retyped(base, {1: w.type.replace(sparsity=info)}), t)
        except CostError:
            speed = None
        params: dict[str, Any] = {"pattern": sup.pattern}
        if sup.pattern == "nm":
            params.update(n=sup.n, m=sup.m)
        elif sup.pattern == "block":
            params.update(block=sup.block, sparsity=zeros)
        else:
            params.update(sparsity=zeros)
        why_here = sup.note or f"{sup.describe()} is accelerated by {t.name}"
        where = "" if at == run_prec else (
            f"; {name} computes in {run_prec}, where {t.name} does not accelerate it: the gain needs {at}")
        gain = f"; predicted {speed:.2f}x faster on {t.name}" + (f" at {at}" if at != run_prec else "") if speed else ""
        skip_note = f" ({'; '.join(skipped)})" if skipped else ""
        return Decision(name, node.op, sup.pattern, f"{sup.describe()} for {name}: {why_here}{where}{gain}{skip_note}",
                        params, speed)
    return Decision(name, node.op, None, "; ".join(skipped))


def _sparse_precision(t: Target, sup: SparsitySupport) -> str:
    """The widest IR-storable precision at which `t` runs `sup` natively."""
    for p in ("fp32", "bf16", "fp16", "int8", "int4"):
        if t.supports(p) and sup.applies_to(p):
            return p
    return next(iter(t.peak))


def _with_precision(node: Node, prec: str) -> Node:
    dt = PRECISION_DTYPES[prec]
    quant = QuantInfo((1.0,), (0,), dt.bits) if not dt.is_float else None
    types = {i: TensorType(v.type.shape, dt, quant=quant, sparsity=v.type.sparsity)
             for i, v in enumerate(node.inputs[:2])}
    if len(node.inputs) > 2:  # bias stays wide: int32 accumulators or the float type
        b = node.inputs[2]
        types[2] = TensorType(b.type.shape, dt if dt.is_float else f32)
    out = node.outputs[0].type
    return _retyped(node, types, TensorType(out.shape, dt if dt.is_float else i32))  # ints accumulate in i32


def choose_precision(target: str | os.PathLike | Target, node: Node, candidates: Sequence[str] | None = None,
                     min_gain: float = 1.05) -> Decision:
    """The fastest precision `target` supports for `node` among `candidates` (default DEFAULT_PRECISIONS).

    A lower precision is chosen only when it is predicted at least `min_gain` times faster than the
    node's current precision; otherwise the node is kept and the reason says by how little it lost.
    """
    t = load_target(target)
    name = node.name
    if node.op not in WEIGHT_OPS:
        return Decision(name, node.op, None, f"{name} ({node.op}) kept: only matrix ops (linear, conv2d, matmul) "
                                             "are quantized")
    cands = list(candidates or DEFAULT_PRECISIONS)
    bad = [c for c in cands if c not in PRECISION_DTYPES]
    if bad:
        raise ValueError(f"choose_precision: {bad} cannot be stored in the IR; use {list(PRECISION_DTYPES)}")
    current = matrix_precision([v.type for v in node.inputs[:2]], t)
    native = [c for c in cands if t.supports(c)]
    missing = [c for c in cands if c not in native]
    if not native:
        return Decision(name, node.op, None, f"{name} kept at {current}: {t.name} supports none of {cands}")
    try:
        base = _latency(node, t)
    except CostError as e:
        return Decision(name, node.op, None, f"{name} cannot be priced on {t.name}: {e}")
    lat = {c: _latency(_with_precision(node, c), t) for c in native}
    best = min(native, key=lambda c: (lat[c] * (1 + 0.02 * _PREFERENCE[c]), -_PREFERENCE[c]))
    speed = base / lat[best] if lat[best] > 0 else 1.0
    unsupported = f" ({t.name} has no {'/'.join(missing)} matrix path)" if missing else ""
    if best == current or speed < min_gain:
        return Decision(name, node.op, None, f"{name} kept at {current}: {best} would be {speed:.2f}x "
                                             f"(below the {min_gain:.2f}x threshold){unsupported}", {}, speed)
    order = ", ".join(f"{c} {base / lat[c]:.2f}x" for c in sorted(native, key=lat.get))
    return Decision(name, node.op, best, f"{name}: {best} is the fastest precision on {t.name} "
                                         f"({order} vs {current}){unsupported}", {"precision": best}, speed)
