"""Executable: what `runtime.compile` returns, with run, profile and statistics."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ir.graph import Graph


@dataclass
class NodeProfile:
    """Time and traffic of one node (or fused kernel) over the profiled runs."""

    name: str
    op: str
    kernel: str
    seconds: float
    bytes: int
    note: str = ""  # why the backend chose this kernel, when it records it


@dataclass
class Profile:
    """Per-node profile of one run plus the end-to-end median over `repeats` runs."""

    nodes: list[NodeProfile]
    total_seconds: float
    repeats: int

    def table(self) -> str:
        """A plain-text table of the nodes, slowest first."""
        rows = sorted(self.nodes, key=lambda p: -p.seconds)
        width = max([len(p.name) for p in rows] + [4])
        lines = [f"{'node':<{width}}  {'op':<14} {'kernel':<22} {'ms':>9} {'MB':>8}"]
        for p in rows:
            lines.append(f"{p.name:<{width}}  {p.op:<14} {p.kernel:<22} {p.seconds * 1e3:9.3f} "
                         f"{p.bytes / 1e6:8.2f}" + (f"  {p.note}" if p.note else ""))
        lines.append(f"total (median of {self.repeats} runs): {self.total_seconds * 1e3:.3f} ms")
        return "\n".join(lines)


@dataclass
class Executable:
    """A compiled graph: `run(inputs) -> outputs by name`; backends subclass it."""

    graph: Graph
    backend: str
    compile_seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run once on `inputs` (a dict of arrays by input name)."""
        raise NotImplementedError

    def profile(self, inputs: Mapping[str, Any], repeats: int = 5) -> Profile:
        """Per-node times (from one instrumented run) and the median end-to-end time."""
        raise NotImplementedError

    def median_seconds(self, inputs: Mapping[str, Any], repeats: int = 5, warmup: int = 1) -> float:
        """Median wall time of `run` over `repeats` runs after `warmup` runs."""
        for _ in range(warmup):
            self.run(inputs)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.run(inputs)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))
