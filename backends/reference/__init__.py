"""The numpy reference backend: the golden semantics of every op."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ...ir.graph import Graph, Node
from ...ir.interpreter import Interpreter, Rule
from .elementwise import ELEMENTWISE_RULES
from .exits import EXIT_RULES
from .integer import INTEGER_RULES
from .logic import LOGIC_RULES
from .nn import NN_RULES

REFERENCE_RULES: dict[str, Rule] = {**ELEMENTWISE_RULES, **NN_RULES, **INTEGER_RULES, **EXIT_RULES, **LOGIC_RULES}
"""Per-op numpy rules: `rule(node, input_arrays) -> array`."""


def _fused(node: Node, args: list[np.ndarray]) -> np.ndarray:
    """A fused region runs its body's equations with these same rules: equal to the unfused graph bit for bit."""
    body = node.attrs["body"]
    return Interpreter(body, REFERENCE_RULES).run({p.name: a for p, a in zip(body.inputs, args)})[
        body.outputs[0].name]


REFERENCE_RULES["fused"] = _fused


def run(graph: Graph, inputs: Mapping[str, Any] | Any, keep: bool = False, cast: bool = False) -> dict[str, np.ndarray]:
    """Run `graph` on the reference backend; returns outputs by name (all values if `keep`)."""
    return Interpreter(graph, REFERENCE_RULES).run(inputs, keep=keep, cast=cast)


def evaluate_node(node: Node, args: list[np.ndarray]) -> list[np.ndarray]:
    """Apply the reference rule of `node.op` to `args` (used for constant folding)."""
    res = REFERENCE_RULES[node.op](node, args)
    return [np.asarray(r) for r in (res if isinstance(res, (list, tuple)) else [res])]


__all__ = ["REFERENCE_RULES", "evaluate_node", "run"]
