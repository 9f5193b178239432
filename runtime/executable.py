"""Executable: what `runtime.compile` returns, with run, profile and statistics."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..ir.graph import Graph

Inputs = Mapping[str, Any] | np.ndarray | Any
"""What `run` takes: arrays by input name, or one array (or list) for a graph with one input."""


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

    def __str__(self) -> str:
        return self.table()

    def to_dicts(self) -> list[dict[str, Any]]:
        """One dict per node (name, op, kernel, seconds, bytes, note), in run order: ready for pandas or JSON."""
        return [asdict(p) for p in self.nodes]

    def to_dict(self) -> dict[str, Any]:
        """The whole profile as plain data: total seconds, repeats and the nodes."""
        return {"total_seconds": self.total_seconds, "repeats": self.repeats, "nodes": self.to_dicts()}


@dataclass
class Executable:
    """A compiled graph: `run(inputs) -> outputs by name`; backends subclass it."""

    graph: Graph
    backend: str
    compile_seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    def run(self, inputs: Inputs, *, cast: bool = False) -> dict[str, np.ndarray]:
        """Run once on `inputs`: a dict of arrays by input name, or the array itself when the graph has one input.

        Inputs are checked on every backend alike (`tensorsmith.ir.input_check`): a dtype other than the
        input's is an InputError unless `cast=True` (which still refuses a cast that changes a value), lists
        are converted only when their values fit the input's dtype, non-contiguous arrays are copied.
        Returns the outputs by name.
        """
        raise NotImplementedError

    def __call__(self, inputs: Inputs, *, cast: bool = False) -> dict[str, np.ndarray]:
        """`exe(x)` is `exe.run(x)`."""
        return self.run(inputs, cast=cast)

    def profile(self, inputs: Inputs, repeats: int = 5) -> Profile:
        """Per-node times (from one instrumented run) and the median end-to-end time; prints as a table."""
        raise NotImplementedError

    def median_seconds(self, inputs: Inputs, repeats: int = 5, warmup: int = 1) -> float:
        """Median wall time of `run` over `repeats` runs after `warmup` runs."""
        for _ in range(warmup):
            self.run(inputs)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.run(inputs)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))
