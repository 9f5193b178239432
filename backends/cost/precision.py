"""How a target sees a tensor: its precision, its stored bits, and what its sparsity buys."""

from __future__ import annotations

from dataclasses import dataclass

from ...ir.graph import Node
from ...ir.types import TensorType
from .sparse_kernels import BSR, choose_sparse_kernel, kernel_precision, sparse_blocker, with_copies
from .target import SparsitySupport, Target

_DTYPE_PRECISION = {"f32": "fp32", "f16": "fp16", "bf16": "bf16", "i8": "int8", "u8": "int8", "i4": "int4",
                    "i32": "int32", "i64": "int64", "bool": "int8"}
_FLOAT_RANK = {"fp32": 3, "tf32": 2, "bf16": 1, "fp16": 1, "fp8": 0}


def tensor_precision(t: TensorType, target: Target | None = None) -> str:
    """The arithmetic precision of `t`: its dtype's, or on arbitrary-width targets (FPGAs) the
    quantization bit width (4-bit values held in i8 count as int4 there)."""
    p = _DTYPE_PRECISION.get(t.dtype.name, "fp32")
    if target is not None and target.arbitrary_bits and t.quant is not None and t.quant.bits <= 4:
        return "int4"
    return p


def storage_bits(t: TensorType, target: Target | None = None) -> int:
    """Bits one element occupies in memory: the dtype's, or the quantized width on arbitrary-width targets."""
    if target is not None and target.arbitrary_bits and t.quant is not None:
        return min(t.dtype.bits, t.quant.bits)
    return t.dtype.bits


def matrix_precision(types: list[TensorType], target: Target | None = None) -> str:
    """The precision a matrix op over `types` computes in: the widest float, else int8 or int4."""
    precs = [tensor_precision(t, target) for t in types]
    floats = [p for p in precs if p in _FLOAT_RANK]
    if floats:
        return max(floats, key=lambda p: _FLOAT_RANK[p])
    if any(p in ("int32", "int64") for p in precs):
        return "int64" if "int64" in precs else "int32"
    return "int4" if all(p == "int4" for p in precs) else "int8"


@dataclass(frozen=True)
class SparseEffect:
    """What a weight's sparsity does on a target: multipliers on compute time, MACs and weight bytes."""

    compute: float = 1.0
    macs: float = 1.0
    bytes: float = 1.0
    support: SparsitySupport | None = None
    note: str = ""


def _speed(sup: SparsitySupport, kept: float) -> float:
    """Compute-time multiplier when `kept` of the work remains, capped by the hardware's speed-up."""
    ideal = min(sup.speedup, 1.0 / max(kept, 1e-9))
    return 1.0 / (1.0 + (ideal - 1.0) * sup.efficiency)


def block_density(t: TensorType, block: tuple[int, int]) -> float:
    """Fraction of `block`-shaped tiles of `t` that hold a nonzero, from its declared sparsity.

    Source blocks that tile the target block exactly combine as independent draws; unstructured
    zeros are independent per element; N:M rows are never all-zero over a tile of m or more.
    """
    s = t.sparsity
    if s is None or s.pattern == "dense":
        return 1.0
    d = s.density
    bh, bw = block
    if s.pattern == "block" and s.block is not None:
        sh, sw = s.block
        if sh % bh == 0 and sw % bw == 0:  # the tensor's blocks are unions of target blocks
            return d
        if bh % sh == 0 and bw % sw == 0:
            return 1.0 - (1.0 - d) ** ((bh // sh) * (bw // sw))
        return 1.0 - (1.0 - d) ** max(1.0, bh * bw / (sh * sw))
    if s.pattern == "unstructured":
        return 1.0 - (1.0 - d) ** (bh * bw)
    return 1.0  # nm, channel handled elsewhere


def sparse_effect(t: TensorType, target: Target, precision: str) -> SparseEffect:
    """The best gain `target` gets from the declared sparsity of weight `t` at `precision`."""
    s = t.sparsity
    if s is None or s.pattern == "dense" or s.density >= 1.0:
        return SparseEffect()
    if s.pattern == "channel":
        return SparseEffect(s.density, s.density, s.density, note=f"channel pruning: {s.density:.0%} of channels kept")
    bits = max(1, t.dtype.bits)
    best = SparseEffect(note=f"{_describe(t)} sparsity is not accelerated by {target.name}: computed dense")
    for sup in target.sparsity:
        if not sup.applies_to(precision):
            continue
        if sup.pattern == "nm" and s.pattern == "nm" and s.m == sup.m and (s.n or 0) <= (sup.n or 0):
            kept = sup.n / sup.m
            eff = SparseEffect(_speed(sup, kept), kept, kept * (1 + sup.metadata_bits / bits), sup,
                               f"{sup.describe()} on {target.name}")
        elif sup.pattern == "block" and sup.block is not None:
            kept = block_density(t, sup.block)
            if kept >= 0.999:
                continue
            meta = kept * sup.metadata_bits / (bits * sup.block[0] * sup.block[1])
            eff = SparseEffect(_speed(sup, kept), kept, kept + meta, sup,
                               f"{sup.describe()} skipping on {target.name}: {kept:.0%} of tiles kept")
        elif sup.pattern == "unstructured":
            kept = s.density if s.pattern != "nm" else (s.n or 1) / (s.m or 1)
            eff = SparseEffect(_speed(sup, kept), kept, kept * (1 + sup.metadata_bits / bits), sup,
                               f"zero skipping on {target.name}: {kept:.0%} of weights kept")
        else:
            continue
        if eff.compute < best.compute:
            best = eff
    return best


BSR_INDEX_BITS = 32
"""Index bits the BSR kernel stores per kept block column; the N:M kernel one int32 per kept value."""


def kernel_sparse_effect(node: Node, weight: TensorType, precision: str) -> SparseEffect:
    """What the CPU kernel the lowering picks for `node`'s weight (sparse_kernels.choose_sparse_kernel) gains.

    The block density is estimated from the annotation (`block_density`), as the lowering measures it
    on the data; the compute time scales by 1 / the predicted speed-up of the chosen kernel.
    """
    s = weight.sparsity
    if s is None or s.pattern == "dense" or s.density >= 1.0:
        return SparseEffect()
    kprec = kernel_precision(node)
    blocked = sparse_blocker(node) or (None if precision == kprec else f"the sparse kernels of {node.op} are "
                                                                      f"{kprec}, not {precision}")
    choice = with_copies(node, choose_sparse_kernel(s, lambda b: block_density(weight, b), blocked,
                                                         precision=kprec))
    if choice.kernel == "dense":
        return SparseEffect(note=choice.reason)
    kept = choice.density
    if choice.kernel == BSR and choice.block is not None:
        meta = kept * BSR_INDEX_BITS / (max(1, weight.dtype.bits) * choice.block[0] * choice.block[1])
    else:
        meta = kept * 32 / max(1, weight.dtype.bits)
    return SparseEffect(1.0 / choice.speedup, kept, kept + meta, None, choice.reason)


def _describe(t: TensorType) -> str:
    s = t.sparsity
    assert s is not None
    if s.pattern == "nm":
        return f"{s.n}:{s.m}"
    if s.pattern == "block" and s.block:
        return f"block {s.block[0]}x{s.block[1]} (density {s.density:.2f})"
    return f"{s.pattern} (density {s.density:.2f})"
