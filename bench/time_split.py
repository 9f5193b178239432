"""Where a model's time goes, on the Numba backend and on ONNX Runtime: products with weights against the rest.

Each side is split by its own profiler: `profile()` of our executable (its kernel steps) and ONNX Runtime's
per-node kernel times (`peer_process.profile_onnx_in_subprocess`, the graph it optimized). Products with weights
are the steps of linear / conv2d / matmul (fused or integer forms included) on our side, where attention's two
products run inside the `attention` step (a matmul of two activations left outside one would count with them),
and Gemm, MatMul, Conv and their fused or integer forms that read a constant on ONNX Runtime's. Both divide the
same FLOPs, those of the unfused graph's products with weights, by their time, so the two rates compare directly.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from ..backends.cost import node_work
from ..ir import Graph
from ..ir.graph import Node
from .peer_process import PeerNode

OUR_PRODUCTS = frozenset({"linear", "conv2d", "matmul", "qlinear", "qconv2d", "qmatmul"})
"""Ops whose steps (the first op of a fused step) count as products with weights on our side."""
ORT_PRODUCTS = frozenset({"Gemm", "MatMul", "FusedMatMul", "FusedGemm", "Conv", "FusedConv", "MatMulInteger",
                          "ConvInteger", "QLinearMatMul", "QLinearConv", "MatMulIntegerToFloat",
                          "DynamicQuantizeMatMul", "QGemm", "NhwcFusedConv"})
"""ONNX Runtime's op types of products; those that read a constant count as products with weights."""


@dataclass
class TimeSplit:
    """Seconds per run in products with weights and in everything else, the latter per kind of op."""

    products_s: float = 0.0
    rest_s: float = 0.0
    rest_by_op: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def rate(self, flops: int) -> float:
        """GFLOP/s of the products with weights."""
        return flops / self.products_s / 1e9 if self.products_s > 0 else float("nan")


def _product_flops(n: Node) -> int:
    """2 x the cost model's multiply-adds of a linear, conv2d or matmul whose second operand is a constant, else 0."""
    if n.op not in ("linear", "conv2d", "matmul") or len(n.inputs) < 2 or not n.inputs[1].is_constant:
        return 0
    return 2 * node_work(n).macs


def weight_product_flops(graph: Graph) -> int:
    """FLOPs of the graph's products with weights (2 per multiply-add)."""
    return sum(_product_flops(n) for n in graph.nodes)


def our_split(steps: list[dict[str, object]]) -> TimeSplit:
    """The split of a `Profile.to_dicts()` of our executable."""
    split = TimeSplit()
    for s in steps:
        op, seconds = str(s["op"]), float(s["seconds"])  # type: ignore[arg-type]
        first = op.split("+")[0]
        if first in OUR_PRODUCTS:
            split.products_s += seconds
        else:
            split.rest_s += seconds
            split.rest_by_op[first] += seconds
    return split


def ort_split(nodes: list[PeerNode]) -> TimeSplit:
    """The split of ONNX Runtime's per-node times."""
    split = TimeSplit()
    for n in nodes:
        if n.op_type in ORT_PRODUCTS and n.constant_bytes > 0:
            split.products_s += n.median_s
        else:
            split.rest_s += n.median_s
            split.rest_by_op[n.op_type] += n.median_s
    return split


def describe(label: str, split: TimeSplit, flops: int, top: int = 4) -> str:
    """One line: total, products with weights (ms, GFLOP/s), the rest and its largest kinds of op."""
    rest = sorted(split.rest_by_op.items(), key=lambda kv: -kv[1])[:top]
    kinds = ", ".join(f"{op} {s * 1e3:.3g}" for op, s in rest)
    return (f"{label}: {(split.products_s + split.rest_s) * 1e3:.3g} ms; products with weights "
            f"{split.products_s * 1e3:.3g} ms ({split.rate(flops):.0f} GFLOP/s), the rest {split.rest_s * 1e3:.3g} ms"
            + (f" ({kinds})" if kinds else ""))
