"""The reference backend wrapped as an Executable (numpy, one node at a time)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..backends.reference import REFERENCE_RULES
from ..backends.reference.early_exit import EarlyExitRunner
from ..ir.exit_plan import plan_exits
from ..ir.exits import has_exits
from ..ir.graph import Graph, Node
from ..ir.interpreter import Interpreter
from .executable import Executable, NodeProfile, Profile
from .exit_stats import ExitCounters


class ReferenceExecutable(Executable):
    """Runs a graph with the numpy reference rules; a graph with exits stops each row at its exit."""

    def __init__(self, graph: Graph) -> None:
        t0 = time.perf_counter()
        self._interp = Interpreter(graph, REFERENCE_RULES)
        self.exits = EarlyExitRunner(plan_exits(graph), REFERENCE_RULES) if has_exits(graph) else None
        """The runner that stops rows at their exit (None for a graph without exits)."""
        super().__init__(graph, "reference", time.perf_counter() - t0)
        self._counters = ExitCounters(self.stats, len(self.exits.plan.exits)) if self.exits else None

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run once on the reference backend."""
        if self.exits is None or self._counters is None:
            return self._interp.run(inputs)
        out, done = self.exits.run(inputs)
        self._counters.record(done.left, done.nodes_run)
        return out

    def profile(self, inputs: Mapping[str, Any], repeats: int = 5) -> Profile:
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

        Interpreter(self.graph, {k: timed(r) for k, r in rules.items()}).run(inputs)
        return Profile(rows, self.median_seconds(inputs, repeats), repeats)
