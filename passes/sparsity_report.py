"""sparsity-report: density per weight, layer and total, the pattern of the zeros, bytes a compressed format saves."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.graph import Graph
from ..ir.sparsity import describe, gemm_view
from ..ir.sparsity_detect import compressed_bytes, detect_sparsity
from .base import Pass, PassContext, PassResult, register_pass

MATRIX_OPS = ("linear", "conv2d", "matmul")


@dataclass(frozen=True)
class TensorSparsity:
    """One constant weight: where it is read, its density, its pattern (annotated and found) and its sizes."""

    name: str
    layer: str
    op: str
    shape: tuple[int, ...]
    density: float  # fraction of nonzero elements
    annotated: str  # the SparsityInfo on its type, or "-"
    found: str  # the pattern detected in the array
    found_density: float  # density in the found pattern's units
    format: str
    dense_bytes: int
    compressed_bytes: int


@dataclass(frozen=True)
class SparsityReport:
    """The analysis of every matrix-op weight of a graph (see `analyze_sparsity`)."""

    tensors: list[TensorSparsity]

    @property
    def total_density(self) -> float:
        """Nonzero elements over all elements of every weight."""
        numel = sum(int(np.prod(t.shape)) for t in self.tensors)
        return sum(t.density * int(np.prod(t.shape)) for t in self.tensors) / numel if numel else 1.0

    @property
    def dense_bytes(self) -> int:
        """Bytes of every weight stored densely."""
        return sum(t.dense_bytes for t in self.tensors)

    @property
    def compressed_bytes(self) -> int:
        """Bytes of every weight in its pattern's compressed format."""
        return sum(t.compressed_bytes for t in self.tensors)

    def layers(self) -> dict[str, float]:
        """Density per layer (node reading the weights), in graph order."""
        out: dict[str, list[tuple[float, int]]] = {}
        for t in self.tensors:
            out.setdefault(t.layer, []).append((t.density, int(np.prod(t.shape))))
        return {k: sum(d * n for d, n in v) / sum(n for _, n in v) for k, v in out.items()}

    def table(self) -> str:
        """A plain-text table: one line per weight, then the total."""
        head = f"{'weight':<28} {'layer':<20} {'shape':<16} {'density':>8}  {'annotated':<14} {'found':<22} " \
               f"{'format':<6} {'bytes':>10} {'saved':>10}"
        lines = [head]
        for t in self.tensors:
            found = f"{t.found} ({t.found_density:.2f})" if t.found != "dense" else "dense"
            lines.append(f"{t.name:<28} {t.layer:<20} {str(list(t.shape)):<16} {t.density:>8.3f}  {t.annotated:<14} "
                         f"{found:<22} {t.format:<6} {t.compressed_bytes:>10} {t.dense_bytes - t.compressed_bytes:>10}")
        lines.append(f"total: density {self.total_density:.3f} over {len(self.tensors)} weight(s); "
                     f"{self.dense_bytes} bytes dense -> {self.compressed_bytes} compressed "
                     f"({self.dense_bytes - self.compressed_bytes} saved)")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: total, then per weight its density and the pattern found."""
        per = "; ".join(f"{t.name} {t.density:.3f} {t.found}" + (f" ({t.format})" if t.format != "dense" else "")
                        for t in self.tensors)
        return (f"density {self.total_density:.3f} over {len(self.tensors)} weight(s), {self.dense_bytes} -> "
                f"{self.compressed_bytes} bytes compressed" + (f": {per}" if per else ""))


def analyze_sparsity(graph: Graph) -> SparsityReport:
    """Density, pattern (annotated and detected from the zeros) and compressed size of every matrix-op weight."""
    tensors = []
    seen: set[int] = set()
    for node in graph.nodes:
        if node.op not in MATRIX_OPS or len(node.inputs) < 2:
            continue
        w = node.inputs[1]
        if w.data is None or id(w) in seen or not w.type.dtype.is_float:
            continue
        seen.add(id(w))
        view = gemm_view(w.data, node.op)
        info = detect_sparsity(view)
        size = compressed_bytes(view, info, w.type.dtype.bits)
        found_density = info.density
        tensors.append(TensorSparsity(
            w.name, node.name, node.op, w.type.shape, float(np.count_nonzero(view)) / max(view.size, 1),
            describe(w.type.sparsity) if w.type.sparsity is not None else "-",
            describe(info), found_density, size.format, size.dense_bytes, size.bytes))
    return SparsityReport(tensors)


@register_pass
class SparsityReportPass(Pass):
    """Changes nothing: reports density per weight and in total, the pattern of its zeros, and bytes saved."""

    name = "sparsity-report"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        """Analyze `graph` (see `analyze_sparsity`)."""
        return PassResult(graph, False, analyze_sparsity(graph).summary())
