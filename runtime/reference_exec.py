"""The reference backend wrapped as an Executable (numpy, one node at a time)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..backends.reference import REFERENCE_RULES
from ..ir.graph import Graph, Node
from ..ir.interpreter import Interpreter
from .executable import Executable, Inputs, NodeProfile, Profile


class ReferenceExecutable(Executable):
    """Runs a graph with the numpy reference rules."""

    def __init__(self, graph: Graph) -> None:
        t0 = time.perf_counter()
        self._interp = Interpreter(graph, REFERENCE_RULES)
        super().__init__(graph, "reference", time.perf_counter() - t0)

    def run(self, inputs: Inputs, *, cast: bool = False) -> dict[str, np.ndarray]:
        """Run once on the reference backend (inputs checked as `Executable.run` says)."""
        return self._interp.run(inputs, cast=cast)

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

        Interpreter(self.graph, {k: timed(r) for k, r in rules.items()}).run(inputs)
        return Profile(rows, self.median_seconds(inputs, repeats), repeats)
