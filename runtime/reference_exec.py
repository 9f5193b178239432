"""The reference backend wrapped as an Executable (numpy, one node at a time).

numpy's BLAS is held at one thread around a run (threadpoolctl, restored after) when the graph's
largest product is below BLAS_PARALLEL_MACS or fewer than two CPUs are free: a small product split
over threads gains microseconds and, when a worker waits behind another process, loses a scheduler
tick (milliseconds). Large products on a free machine keep numpy's own setting.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

from ..backends.blas_threads import NUMPY_BLAS
from ..backends.cost import CostError, node_work
from ..backends.reference import REFERENCE_RULES
from ..backends.reference.early_exit import EarlyExitRunner
from ..ir.exit_plan import plan_exits
from ..ir.exits import has_exits
from ..ir.graph import Graph, Node
from ..ir.interpreter import Interpreter
from ..ir.regions import region_body
from .cpu_load import free_cpus
from .executable import Executable, Inputs, NodeProfile, Profile
from .exit_stats import ExitCounters

BLAS_PARALLEL_MACS = 1 << 24
"""A product of fewer multiply-accumulates (about a third of a millisecond on one core) runs on one BLAS thread."""


def largest_product_macs(graph: Graph) -> int:
    """The multiply-accumulates of the graph's largest node (fused regions looked into)."""
    best = 0
    for n in graph.nodes:
        if n.op == "fused":
            best = max(best, largest_product_macs(region_body(n)))
            continue
        try:
            best = max(best, node_work(n).macs)
        except CostError:
            continue
    return best


class ReferenceExecutable(Executable):
    """Runs a graph with the numpy reference rules; a graph with exits stops each row at its exit."""

    def __init__(self, graph: Graph) -> None:
        t0 = time.perf_counter()
        self._interp = Interpreter(graph, REFERENCE_RULES)
        self.exits = EarlyExitRunner(plan_exits(graph), REFERENCE_RULES) if has_exits(graph) else None
        """The runner that stops rows at their exit (None for a graph without exits)."""
        self._small = largest_product_macs(graph) < BLAS_PARALLEL_MACS
        super().__init__(graph, "reference", time.perf_counter() - t0)
        self._counters = ExitCounters(self.stats, len(self.exits.plan.exits)) if self.exits else None

    def blas_hold(self) -> contextlib.AbstractContextManager[None]:
        """numpy's BLAS held at one thread for small graphs or a busy machine, else left as it is."""
        if self._small or free_cpus() < 2:
            return NUMPY_BLAS.single_threaded()
        return contextlib.nullcontext()

    def run(self, inputs: Inputs, *, cast: bool = False) -> dict[str, np.ndarray]:
        """Run once on the reference backend (inputs checked as `Executable.run` says)."""
        with self.blas_hold():
            if self.exits is None or self._counters is None:
                return self._interp.run(inputs, cast=cast)
            out, done = self.exits.run(inputs, cast=cast)
        self._counters.record(list(done.left), done.nodes_run)
        return out

    def profile(self, inputs: Inputs, repeats: int = 5) -> Profile:
        """Time each node in one run, and the whole graph over `repeats` runs."""
        rows: list[NodeProfile] = []
        rules = dict(REFERENCE_RULES)

        def timed(rule):  # type: ignore[no-untyped-def]
            def run(node: Node, args: list[np.ndarray]) -> Any:
                t0 = time.perf_counter()
                out = rule(node, args)
                dt = time.perf_counter() - t0
                nbytes = sum(a.nbytes for a in args) + sum(v.type.nbytes for v in node.outputs)
                rows.append(NodeProfile(node.name, node.op, f"numpy.{node.op}", dt, nbytes))
                return out

            return run

        with self.blas_hold():
            Interpreter(self.graph, {k: timed(r) for k, r in rules.items()}).run(inputs)
        return Profile(rows, self.median_seconds(inputs, repeats), repeats)
