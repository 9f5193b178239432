"""Roofline data of a graph on a target, and an optional matplotlib plot (imported only when plotting)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from ...ir.graph import Graph
from .estimate import estimate
from .loader import load_target
from .table import CostTable
from .target import Target


@dataclass(frozen=True)
class RooflinePoint:
    """One node on the roofline: ops per DRAM byte and the ops/s the model predicts it reaches."""

    name: str
    op: str
    precision: str
    intensity: float  # ops per byte at the outermost memory level (inf when it moves none)
    achieved: float  # ops per second
    bound: str
    flops: int
    dram_bytes: int


@dataclass(frozen=True)
class Roofline:
    """Ceilings of a target (peak ops/s per precision, bandwidth per memory level) and the graph's nodes."""

    graph: str
    target: str
    peaks: dict[str, float]
    bandwidths: dict[str, float]
    points: list[RooflinePoint]

    def ridge(self, precision: str) -> float:
        """Ops per DRAM byte at which `precision`'s compute roof meets the DRAM roof."""
        return self.peaks[precision] / list(self.bandwidths.values())[-1]

    def attainable(self, intensity: float, precision: str) -> float:
        """The roof at `intensity`: min(peak, intensity x DRAM bandwidth)."""
        return min(self.peaks[precision], intensity * list(self.bandwidths.values())[-1])

    def to_dicts(self) -> list[dict[str, Any]]:
        """The points as dicts."""
        return [asdict(p) for p in self.points]


def roofline(graph: Graph, target: str | os.PathLike | Target, table: CostTable | None = None) -> Roofline:
    """Roofline data of `graph` on `target` (reuses `table` when given); views are left out."""
    t = load_target(target)
    table = table or estimate(graph, t)
    pts = []
    for r in table.rows:
        if r.kind == "view" or r.latency_s == 0:
            continue
        intensity = r.flops / r.dram_bytes if r.dram_bytes else float("inf")
        pts.append(RooflinePoint(r.name, r.op, r.precision, intensity, r.flops / r.latency_s, r.bound, r.flops,
                                 r.dram_bytes))
    return Roofline(graph.name, t.name, dict(t.peak), {m.name: m.bandwidth for m in t.memory}, pts)


def plot_roofline(data: Roofline, path: str | os.PathLike | None = None, ax: Any = None,
                  precisions: list[str] | None = None) -> Any:
    """Draw `data` with matplotlib (log-log); saves to `path` when given; returns the Axes.

    matplotlib is optional (`pip install tensorsmith[plot]`) and imported only here.
    """
    try:
        import matplotlib

        if ax is None and path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plot_roofline needs matplotlib: pip install 'tensorsmith[plot]'") from e
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    finite = [p.intensity for p in data.points if np.isfinite(p.intensity) and p.intensity > 0]
    lo = min(finite + [0.1]) / 4
    hi = max(finite + [max(data.ridge(p) for p in data.peaks)]) * 4
    x = np.logspace(np.log10(lo), np.log10(hi), 200)
    dram_bw = list(data.bandwidths.values())[-1]
    for prec in precisions or list(data.peaks):
        ax.plot(x, np.minimum(data.peaks[prec], x * dram_bw), label=f"{prec} roof", linewidth=1.2)
    markers = {"compute": "o", "memory": "s", "overhead": "^"}
    for bound, marker in markers.items():
        pts = [p for p in data.points if p.bound == bound]
        if pts:  # nodes that move no DRAM bytes sit at the right edge
            xs = [p.intensity if np.isfinite(p.intensity) else hi for p in pts]
            ax.scatter(xs, [p.achieved for p in pts], s=14, marker=marker, color="k", alpha=0.6,
                       label=f"{bound}-bound nodes")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (ops / DRAM byte)")
    ax.set_ylabel("ops / s (predicted)")
    ax.set_title(f"{data.graph} on {data.target} (emulated)")
    ax.legend(fontsize=7)
    if path is not None:
        ax.figure.savefig(os.fspath(path), dpi=120, bbox_inches="tight")
    return ax
