"""One interpreter walks a graph node by node with a per-op rule table (execution, checks)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .graph import Graph, Node, Value
from .input_check import check_inputs
from .text import format_node

Rule = Callable[[Node, list[np.ndarray]], Any]
Hook = Callable[[Node, list[np.ndarray]], None]


class ExecutionError(RuntimeError):
    """A node failed while running; the message names the node and its input shapes."""


class Interpreter:
    """Runs `graph` with `rules[op](node, input_arrays) -> array | list[array]`."""

    def __init__(self, graph: Graph, rules: Mapping[str, Rule], check_types: bool = True) -> None:
        self.graph = graph
        self.rules = rules
        self.check_types = check_types
        missing = sorted({n.op for n in graph.nodes if n.op not in rules})
        if missing:
            raise NotImplementedError(f"no rule for op(s) {missing} in this backend")

    def run_node(self, node: Node, args: list[np.ndarray]) -> list[np.ndarray]:
        """Apply the rule for `node` to `args`, checking result types against the node's."""
        try:
            res = self.rules[node.op](node, args)
        except Exception as e:  # noqa: BLE001 - re-raised with the node named
            shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in args)
            raise ExecutionError(f"{format_node(node)}\n  failed on inputs ({shapes}): "
                                 f"{type(e).__name__}: {e}") from e
        outs = [np.asarray(r) for r in (res if isinstance(res, (list, tuple)) else [res])]
        if self.check_types:
            for v, a in zip(node.outputs, outs):
                if a.shape != v.type.shape or a.dtype != v.type.dtype.np_dtype:
                    raise ExecutionError(f"{format_node(node)}\n  rule returned {a.dtype}{list(a.shape)}")
        return outs

    def run(self, inputs: Mapping[str, Any] | Any, hook: Hook | None = None,
            keep: bool = False, cast: bool = False) -> dict[str, np.ndarray]:
        """Run the graph; returns outputs by name (every value's array too when `keep`).

        `inputs` are checked by `check_inputs` (a dict by name, or one array for a one-input graph;
        `cast=True` converts other dtypes when no value changes)."""
        env = check_inputs(self.graph, inputs, cast)
        last_use: dict[int, int] = {}
        for i, n in enumerate(self.graph.nodes):
            for v in n.inputs:
                last_use[id(v)] = i
        out_ids = {id(v) for v in self.graph.outputs}
        kept: dict[str, np.ndarray] = {}
        for i, n in enumerate(self.graph.nodes):
            args = [_fetch(env, v) for v in n.inputs]
            outs = self.run_node(n, args)
            if hook is not None:
                hook(n, outs)
            for v, a in zip(n.outputs, outs):
                env[id(v)] = a
                if keep:
                    kept[v.name] = a
            if not keep:
                for v in n.inputs:
                    if last_use.get(id(v)) == i and id(v) not in out_ids:
                        env.pop(id(v), None)
        result = {v.name: _fetch(env, v) for v in self.graph.outputs}
        return {**kept, **result} if keep else result


def _fetch(env: dict[int, np.ndarray], v: Value) -> np.ndarray:
    if v.data is not None:
        return v.data
    return env[id(v)]
