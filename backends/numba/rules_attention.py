"""Lowering of `attention` to a tiled kernel (no score matrix in memory): on the fp32 GEMM micro-kernel
(k_attention_packed.py), or with BLAS per tile (k_attention.py) on hosts without the micro-kernel (no FMA)."""

from __future__ import annotations

import numpy as np

from ...ir.graph import Node
from ...ir.ops.attention import attended_scores, attention_scale
from . import k_microkernel
from .jit import EMPTY_F32, cdiv
from .k_attention import attention_tiles, scratch_per_chunk
from .k_attention_packed import attention_packed, packed_scratch
from .plan import Lit, LowerCtx
from .registry import lowers
from .rules_dense import FLOPS_PER_UNIT

QUERY_TILE = 128
"""Queries per work item (rows of the score tile). Larger tiles make larger sgemm calls: one thread,
12 heads of 64, sequence 512 / 1024, ms against the unfused ops' 20.3 / 68.0: 64 rows 17.3 / 61.5,
128 rows 14.8 / 56.2, 256 rows 14.5 / 54.4 (256 leaves fewer items to spread over threads)."""
KEY_TILE = 256
"""Keys per score tile: a 128 x 256 float tile (128 KiB) and the 128 x D accumulator stay in L2."""
PACKED_QUERY_TILE = 4 * k_microkernel.NR
"""Queries per block on the micro-kernel path: four NR-column panels of the transposed score tile (128 on AVX-512)."""
PACKED_KEY_TILE = 20 * k_microkernel.MR
"""Keys per score tile on the micro-kernel path, a multiple of MR (240 on AVX-512): a 240 x 128 tile, 120 KiB."""
EXP_UNITS = 4
"""Work units per score (scale, mask, max, exp, sum) in the estimate that picks the parallel twin."""


def packed_path(head_dim: int) -> bool:
    """Whether attention runs on the GEMM micro-kernel (else BLAS per tile): wherever the host has it."""
    return k_microkernel.AVAILABLE and head_dim > 0


def attention_tiles_for(sq: int, skv: int, head_dim: int = 1) -> tuple[int, int]:
    """(query tile, key tile) for `sq` queries and `skv` keys (never larger than the sequences)."""
    if packed_path(head_dim):
        return max(1, min(PACKED_QUERY_TILE, sq)), max(1, min(PACKED_KEY_TILE, skv))
    return max(1, min(QUERY_TILE, sq)), max(1, min(KEY_TILE, skv))


def mask_strides(shape: tuple[int, ...]) -> np.ndarray:
    """Element strides of a contiguous mask of `shape` seen as [B, heads, Sq, Skv] (0 where it broadcasts)."""
    full = (1,) * (4 - len(shape)) + tuple(shape)
    strides, acc = [], 1
    for dim in reversed(full):
        strides.append(acc if dim != 1 else 0)
        acc *= dim
    return np.array(strides[::-1], np.int64)


@lowers("attention")
def _attention(ctx: LowerCtx, node: Node) -> None:
    q, k, v = node.inputs[:3]
    y = node.outputs[0]
    nb, sq, e = q.type.shape
    skv, heads = k.type.shape[1], node.attrs["heads"]
    d = e // heads
    out = ctx.out(y)
    if y.type.numel == 0:
        return
    if skv == 0:
        raise ctx.fail("attention over zero keys has no softmax")
    tq, tk = attention_tiles_for(sq, skv, d)
    packed = packed_path(d)
    scores = nb * heads * attended_scores(sq, skv, node.attrs["causal"])
    work = 4 * scores * d // FLOPS_PER_UNIT + EXP_UNITS * scores
    par = ctx.parallel(work, needs_blas=not packed)
    items = nb * heads * cdiv(sq, tq)
    chunks = min(items, ctx.threads) if par else 1
    splits = 1
    if packed:  # items are (batch, head, share of the query blocks): enough of them for the threads
        splits = min(cdiv(sq, tq), max(1, cdiv(2 * ctx.threads, nb * heads))) if par else 1
        items = nb * heads * splits
        chunks = min(items, ctx.threads) if par else 1
    f32 = np.dtype(np.float32)
    if packed:
        sizes = packed_scratch(tq, tk, d, skv)
        scratch = [ctx.buffer((chunks * size,), f32, f"{y.name}.{part}") for part, size in sizes._asdict().items()]
    else:
        scratch = [ctx.buffer((chunks * scratch_per_chunk(tq, tk, d),), f32, f"{y.name}.tiles")]
    if len(node.inputs) == 4:
        mask = ctx.flat_of(ctx.arg(node.inputs[3]))
        strides = ctx.const(mask_strides(node.inputs[3].type.shape), "mask_strides")
    else:
        mask = ctx.const(EMPTY_F32.reshape(-1), "no_mask")
        strides = ctx.const(np.zeros(4, np.int64), "mask_strides")
    dims = ctx.const(np.array([nb, heads, sq, skv, d, e, tq, tk, splits], np.int64), "dims")
    scale = np.float32(attention_scale(node.attrs["scale"], e, heads))
    flat = [ctx.flat_of(ctx.arg(x)) for x in (q, k, v)]
    kernel = attention_packed if packed else attention_tiles
    ctx.emit(kernel.name, kernel, *flat, ctx.flat_of(out), mask, strides, Lit(len(node.inputs) == 4),
             Lit(bool(node.attrs["causal"])), Lit(scale), dims, *scratch, Lit(chunks), writes=(out, *scratch),
             work=work, needs_blas=not packed)
