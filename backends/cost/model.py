"""The per-node cost model: latency, bound, energy and bytes per memory level of one node on a target."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ...ir.graph import Node, Value
from ...ir.regions import region_anchor, region_body
from .precision import (
    SparseEffect,
    kernel_sparse_effect,
    matrix_precision,
    sparse_effect,
    storage_bits,
    tensor_precision,
)
from .rules import CostError, Work, node_work
from .sparse_kernels import QUANTIZED_PRODUCTS, product_weight
from .systolic import systolic_cycles
from .target import Target

ACC_BYTES = 4  # accumulators (fp32 / int32) held on chip while a tile is computed


@dataclass
class NodeCost:
    """The predicted cost of one node on one target (every figure is emulated, not measured)."""

    name: str
    op: str
    kind: str
    precision: str
    macs: int  # multiply-accumulates performed (after sparsity)
    dense_macs: int
    ops: int  # vector ops, conversions included
    bytes: dict[str, int]  # bytes read or written at each memory level, innermost first
    compute_s: float
    memory_s: float
    overhead_s: float
    latency_s: float
    bound: str  # "compute" | "memory" | "overhead" | "none"
    energy_j: float
    utilization: float = 0.0  # achieved ops/s over the peak at the precision used
    padding_waste: float = 0.0  # fraction of matrix-unit work spent on padding to the tile shape
    spilled: bool = False
    cycles: int = 0  # systolic targets: array cycles of the matrix work (no memory stalls)
    where: str = "accelerator"
    notes: list[str] = field(default_factory=list)

    @property
    def flops(self) -> int:
        """Arithmetic ops performed: 2 per multiply-accumulate plus vector ops."""
        return 2 * self.macs + self.ops

    @property
    def dram_bytes(self) -> int:
        """Bytes moved at the outermost memory level."""
        return list(self.bytes.values())[-1] if self.bytes else 0


@dataclass(frozen=True)
class Tiling:
    """How a GEMM is cut for a tiled matrix unit: output tile tm x tn, k step tk, split-K factor."""

    tm: int
    tn: int
    tk: int
    split: int = 1


def resident_level(target: Target, nbytes: float) -> int:
    """Innermost persistent level holding `nbytes` at most half full (else the outermost)."""
    for i, m in enumerate(target.memory[:-1]):
        if m.persistent and nbytes <= m.total_capacity(target.units) / 2:
            return i
    return len(target.memory) - 1


def weight_level(target: Target, param_bytes: float) -> int:
    """Where a graph's weights live between runs: on chip when the target keeps them there and they fit."""
    return resident_level(target, param_bytes) if target.weights_resident else len(target.memory) - 1


class _Traffic:
    """Bytes per memory level of one node: each tensor streams from the level it lives in inwards."""

    def __init__(self, work: Work, target: Target, eff: SparseEffect, wlevel: int | None, out_bytes: float):
        self.work, self.target, self.out_bytes = work, target, out_bytes
        self.sizes = []
        for o in work.operands:
            t = o.value.type
            b = o.elements * storage_bits(t, target) / 8 * (eff.bytes if o.value is work.weight else 1.0)
            self.sizes.append(b + (len(t.quant.scale) * 5 if t.quant is not None else 0))  # scales + zero points
        consts = sum(s for o, s in zip(work.operands, self.sizes) if o.value.is_constant)
        wl = weight_level(target, consts) if wlevel is None else wlevel
        self.res = [wl if o.value.is_constant else resident_level(target, s) for o, s in zip(work.operands, self.sizes)]
        self.r_out = resident_level(target, out_bytes)

    def levels(self, tiling: Tiling | None) -> tuple[list[float], bool, list[str]]:
        """Bytes at each level, whether a GEMM working set spilled to DRAM, and notes."""
        t, work = self.target, self.work
        out, spilled, notes = [], False, []
        gemm = work.gemm if (work.kind == "matrix" and len(work.operands) >= 2) else None
        for i, lvl in enumerate(t.memory):
            reuse = [1] * len(self.sizes)
            extra = 0.0
            if gemm is not None:
                _, m, n, k = gemm
                if i == 0:
                    reuse[0], reuse[1] = _unit_reuse(t, m, n, tiling)
                    if tiling is not None and tiling.split > 1:  # partial sums written and re-read
                        extra = 2 * (tiling.split - 1) * work.out_elements * ACC_BYTES
                else:
                    ea = self.sizes[0] / max(1, work.operands[0].elements)
                    eb = self.sizes[1] / max(1, work.operands[1].elements)
                    inner = t.memory[i - 1]
                    ra, rb, fits = _block_reuse(m, n, k, inner.capacity_bytes, ea, eb)
                    reuse[0], reuse[1] = ra, rb
                    if not fits and i == len(t.memory) - 1 and max(ra, rb) > 1 and max(self.res[:2]) == i:
                        spilled = True
                        notes.append(f"working set exceeds {inner.name}: A read {ra}x, B read {rb}x from {lvl.name}")
            total = sum(s * r for s, r, where in zip(self.sizes, reuse, self.res) if where >= i)
            if self.r_out >= i:
                total += self.out_bytes + (extra if i == self.r_out else 0.0)
            out.append(total)
        return out, spilled, notes


def _unit_reuse(target: Target, m: int, n: int, tiling: Tiling | None) -> tuple[int, int]:
    """Re-reads of A (M x K) and B (K x N) from the innermost level into the matrix unit."""
    mu = target.matrix
    if mu.kind == "systolic":
        if mu.dataflow == "ws":  # weights pinned: read once; inputs stream once per column fold
            return math.ceil(n / mu.cols), 1
        if mu.dataflow == "is":  # inputs pinned: weights stream once per column fold of M
            return 1, math.ceil(m / mu.cols)
        return math.ceil(n / mu.cols), math.ceil(m / mu.rows)
    tm, tn = (tiling.tm, tiling.tn) if tiling else mu.tile[:2]
    return math.ceil(n / min(n, tn)), math.ceil(m / min(m, tm))


def _block_reuse(m: int, n: int, k: int, cap: int, ea: float, eb: float) -> tuple[int, int, bool]:
    """(re-reads of A, re-reads of B, whether it all fits) for a GEMM blocked in square tiles in `cap` bytes."""
    if (m * k * ea + k * n * eb + m * n * ACC_BYTES) <= cap:
        return 1, 1, True
    t = max(1, int(math.sqrt(cap / (ea + eb + ACC_BYTES))))
    return math.ceil(n / min(n, t)), math.ceil(m / min(m, t)), False


def _tilings(target: Target, m: int, n: int, k: int) -> list[Tiling]:
    """Tilings a library would pick from: the native tile, halves down to 1/8, split-K up to 32."""
    tm0, tn0, tk = target.matrix.tile
    sizes_m = sorted({max(1, tm0 >> s) for s in range(4)})
    sizes_n = sorted({max(1, tn0 >> s) for s in range(4)})
    splits = [s for s in (1, 2, 4, 8, 16, 32) if s == 1 or k >= s * 2 * tk]
    return [Tiling(a, b, tk, s) for a in sizes_m for b in sizes_n for s in splits]


def _tiled_compute(target: Target, batch: int, m: int, n: int, k: int, peak: float,
                   tiling: Tiling) -> tuple[float, float, float]:
    """(seconds, padding waste, wave efficiency) of a GEMM with `tiling` on a tiled engine."""
    tm, tn, tk, sp = tiling.tm, tiling.tn, tiling.tk, tiling.split
    kk = math.ceil(k / sp)
    padded = batch * (math.ceil(m / tm) * tm) * (math.ceil(n / tn) * tn) * (math.ceil(kk / tk) * tk) * sp
    tiles = batch * math.ceil(m / tm) * math.ceil(n / tn) * sp
    units = target.matrix.count
    wave_eff = tiles / (math.ceil(tiles / units) * units)
    return 2 * padded / peak / wave_eff, 1 - batch * m * n * k / padded, wave_eff


def _fallback_cost(node: Node, work: Work, target: Target, reason: str, in_bytes: float,
                   out_bytes: float) -> NodeCost:
    fb = target.fallback
    assert fb is not None
    compute = (2 * work.macs + work.ops) / fb.peak
    moved = in_bytes + out_bytes
    memory = moved / fb.bandwidth + moved / fb.link_bandwidth
    overhead = target.launch_overhead_s
    lat = max(compute, memory) + overhead
    bound = "overhead" if overhead > max(compute, memory) else ("compute" if compute >= memory else "memory")
    energy = ((2 * work.macs + work.ops) * fb.energy_pj_per_op + 2 * moved * target.dram.energy_pj_per_byte) * 1e-12
    energy += target.static_w * lat
    levels = {m.name: 0 for m in target.memory}
    levels[target.dram.name] = int(moved)
    return NodeCost(node.name, node.op, work.kind, "fp32", work.macs, work.macs, work.ops, levels, compute,
                    memory, overhead, lat, bound, energy, where=fb.name, notes=[f"runs on {fb.name}: {reason}"])


def _compute_precision(work: Work, target: Target, out_t) -> tuple[str, str | None]:  # type: ignore[no-untyped-def]
    """(precision wanted, precision the accelerator runs it at or None)."""
    if work.kind == "matrix":
        want = matrix_precision([o.value.type for o in work.operands[:2]], target)
        return want, target.compute_precision(want)
    types = [out_t] + ([work.operands[0].value.type] if work.kind == "convert" and work.operands else [])
    precs = [tensor_precision(t, target) for t in types]
    want = next((p for p in precs if p.startswith(("fp", "bf", "tf"))), precs[0])
    return want, (want if (target.fallback is None or want in target.vector) else None)


def weight_layer(node: Node) -> Node | None:
    """The linear / matmul / conv2d whose weight a sparse kernel may skip: `node` itself, or a fused region's anchor
    reading the region's inputs (a detached copy); None for other nodes."""
    if node.op in ("linear", "matmul", "conv2d"):
        return node if len(node.inputs) > 1 else None
    if node.op in QUANTIZED_PRODUCTS:
        return node
    if node.op != "fused":
        return None
    body = region_body(node)
    anchor = region_anchor(body)
    if anchor is None or len(anchor.inputs) < (4 if anchor.op in QUANTIZED_PRODUCTS else 2):
        return None
    outer = {id(p): a for p, a in zip(body.inputs, node.inputs)}
    out = anchor.outputs[0]
    ins = [outer.get(id(v), v) for v in anchor.inputs]
    return Node(anchor.op, ins, dict(anchor.attrs), [Value(out.name, out.type)])


def node_cost(node: Node, target: Target, *, wlevel: int | None = None,
              rules: dict[str, Callable[[Node], Work]] | None = None) -> NodeCost:
    """Predict latency, bound, energy and bytes per level of `node` on `target`.

    `wlevel` is the memory level the graph's weights live in (estimate() passes it from
    `weight_level`); None places this node's weights by their own size.
    """
    work = node_work(node, rules)
    out_t = node.outputs[0].type
    out_bytes = sum(v.type.numel * storage_bits(v.type, target) / 8 for v in node.outputs)
    if work.kind == "view":
        return NodeCost(node.name, node.op, "view", tensor_precision(out_t, target), 0, 0, 0,
                        {m.name: 0 for m in target.memory}, 0.0, 0.0, 0.0, 0.0, "none", 0.0,
                        notes=["view: no data moved"])
    in_bytes = sum(o.elements * storage_bits(o.value.type, target) / 8 for o in work.operands)
    want, prec = _compute_precision(work, target, out_t)
    if prec is None:
        if target.fallback is None:
            raise CostError(f"node %{node.name} ({node.op}): {target.name} cannot compute {want} "
                            f"(it supports {', '.join(target.peak)}) and has no fallback processor")
        return _fallback_cost(node, work, target, f"{want} is not supported by {target.name}", in_bytes, out_bytes)
    notes: list[str] = []
    if work.weight is None:
        eff = SparseEffect()
    elif target.sparse_kernels == "measured" and (layer := weight_layer(node)) is not None:
        eff = kernel_sparse_effect(layer, product_weight(layer).type, prec)
    else:
        eff = sparse_effect(work.weight.type, target, prec)
    if eff.note:
        notes.append(eff.note)
    ops = int(round(work.ops * target.op_weight(node.op)))
    if work.kind == "matrix":  # precision boundary: operands stored in another format are converted
        for o in work.operands[:2]:
            p = tensor_precision(o.value.type, target)
            if p != prec:
                ops += o.elements * (2 if p == "int4" else 1)
                notes.append(f"%{o.value.name} converted {p} -> {prec}"
                             + ("" if target.supports(p) else f" ({target.name} has no {p} matrix path)"))
    vec_prec = prec if work.kind != "matrix" else ("fp32" if prec.startswith(("fp", "tf", "bf")) else "int8")
    vec_rate = target.vector_ops(vec_prec) * target.eff("vector")
    traffic = _Traffic(work, target, eff, wlevel, out_bytes)
    mem_bw = [m.bandwidth * target.eff("memory") for m in target.memory]
    padding, cycles = 0.0, 0
    if work.kind == "matrix":
        batch, m, n, k = work.gemm or (1, 1, 1, 1)
        mu = target.matrix
        if mu.kind == "systolic":
            r = systolic_cycles(m, n, k, mu.rows, mu.cols, mu.dataflow, mu.count, batch)
            scale = target.peak_ops(prec) / (mu.rows * mu.cols * 2 * target.clock_hz * mu.count)
            cycles = r.cycles
            mat_s = r.cycles / target.clock_hz / scale / target.eff("matrix") * eff.compute
            a, b = {"ws": (k, n), "os": (m, n), "is": (k, m)}[mu.dataflow]
            padding = 1 - a * b / (math.ceil(a / mu.rows) * mu.rows * math.ceil(b / mu.cols) * mu.cols)
            per_level, spilled, spill_notes = traffic.levels(None)
        else:
            peak = target.peak_ops(prec) * target.eff("matrix")
            best = None
            for tl in _tilings(target, m, n, k):
                secs, waste, _ = _tiled_compute(target, batch, m, n, k, peak, tl)
                lv = traffic.levels(tl)
                reduce_s = (tl.split - 1) * work.out_elements / vec_rate  # split-K partial sums added
                lat = max(secs * eff.compute + reduce_s, max(b / bw for b, bw in zip(lv[0], mem_bw)))
                if best is None or lat < best[0] * 0.999:
                    best = (lat, secs * eff.compute, waste, lv, tl)
            assert best is not None
            _, mat_s, padding, (per_level, spilled, spill_notes), tl = best
            if tl.split > 1:
                ops += (tl.split - 1) * work.out_elements
        compute = mat_s + ops / vec_rate
    else:
        compute = ops / vec_rate
        per_level, spilled, spill_notes = traffic.levels(None)
    notes += spill_notes
    memory = max(b / bw for b, bw in zip(per_level, mem_bw))
    overhead = target.launch_overhead_s
    lat = max(compute, memory) + overhead
    bound = "overhead" if overhead > max(compute, memory) else ("compute" if compute >= memory else "memory")
    macs_done = int(round(work.macs * eff.macs))
    energy_pj = macs_done * target.mac_energy_pj(prec) + ops * target.op_energy_pj(vec_prec)
    energy_pj += sum(b * m.energy_pj_per_byte for m, b in zip(target.memory, per_level))
    energy = energy_pj * 1e-12 + target.static_w * lat
    util = 2 * work.macs / lat / target.peak_ops(prec) if work.kind == "matrix" and lat > 0 else 0.0
    return NodeCost(node.name, node.op, work.kind, prec, macs_done, work.macs, ops,
                    {m.name: int(round(b)) for m, b in zip(target.memory, per_level)}, compute, memory,
                    overhead, lat, bound, energy, util, padding, spilled, cycles, notes=notes)
