"""The reference backend on early-exit graphs: rows that leave at an exit are dropped, later nodes run on the rest.

After exit k's fire mask, the fired rows are removed from every batch-carrying value still needed (numpy
fancy indexing), the nodes that follow run on the remaining rows only (their static shapes resized), and
`exit_select` puts each row's result back at its original position. When no row is left, no later node
that carries the batch runs.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...ir.exit_plan import ExitPlan
from ...ir.exit_rows import resize_node
from ...ir.graph import Node, Value
from ...ir.input_check import check_inputs
from ...ir.interpreter import Interpreter, Rule


@dataclass
class ExitRun:
    """What one run did: how many rows left at each exit (the last entry: ran to the end), nodes that ran."""

    left: list[int]
    nodes_run: int
    ran: list[str] = field(default_factory=list)


def keep_rows(a: np.ndarray, keep: np.ndarray, m: int) -> np.ndarray:
    """The rows of `a` where `keep` (one flag per batch row, m leading entries each) holds."""
    return a[np.repeat(keep, m) if m != 1 else keep]


def assemble(plan: ExitPlan, final: np.ndarray | None, left_rows: np.ndarray,
             taken_rows: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """exit_select on a stopped batch: rows of exit k's head where they left, `final` for `left_rows`."""
    t = plan.select.outputs[0].type
    out = np.empty(t.shape, t.dtype.np_dtype)
    taken = np.empty(plan.batch, np.int32)
    for k, (where, head) in enumerate(taken_rows):
        out[where] = head
        taken[where] = k
    if final is not None:
        out[left_rows] = final
    taken[left_rows] = len(plan.exits)
    return out, taken


class EarlyExitRunner:
    """Runs an ExitPlan with per-op rules (the reference rules), stopping rows at their exit."""

    def __init__(self, plan: ExitPlan, rules: Mapping[str, Rule]) -> None:
        self.plan = plan
        self._interp = Interpreter(plan.graph, rules)
        self._resized: dict[tuple[int, int], Node] = {}
        self._lock = threading.Lock()

    def _node_for(self, node: Node, rows: int) -> Node:
        if rows == self.plan.batch or id(node) not in self.plan.on_rows:
            return node
        key = (id(node), rows)
        got = self._resized.get(key)
        if got is None:
            got = resize_node(node, self.plan.rows.rows, rows, self.plan.batch)
            with self._lock:
                self._resized[key] = got
        return got

    def run(self, inputs: Any, trace: bool = False, cast: bool = False) -> tuple[dict[str, np.ndarray], ExitRun]:
        """Outputs by name and what ran; `trace` records the names of the nodes that ran."""
        plan = self.plan
        env: dict[int, np.ndarray] = check_inputs(plan.graph, inputs, cast)
        left = np.arange(plan.batch)
        taken_rows: list[tuple[np.ndarray, np.ndarray]] = []
        run = ExitRun([0] * (len(plan.exits) + 1), 0)
        for node in plan.order:
            if node is plan.select:
                final = env.get(id(node.inputs[0])) if len(left) else None
                out, taken = assemble(plan, final, left, taken_rows)
                env[id(node.outputs[0])], env[id(node.outputs[1])] = out, taken
                continue
            if not len(left) and id(node) in plan.on_rows:
                continue
            outs = self._interp.run_node(self._node_for(node, len(left)), [_fetch(env, v) for v in node.inputs])
            run.nodes_run += 1
            if trace:
                run.ran.append(node.name)
            for v, a in zip(node.outputs, outs):
                env[id(v)] = a
            if node.op == "exit":
                k, fire = node.attrs["index"], outs[0]
                taken_rows.append((left[fire], env[id(node.inputs[0])][fire]))
                run.left[k] = int(fire.sum())
                if run.left[k]:
                    keep = ~fire
                    for v in plan.compact_after[k]:
                        env[id(v)] = keep_rows(env[id(v)], keep, plan.rows_of(v))
                    left = left[keep]
        run.left[-1] = len(left)
        return {v.name: _fetch(env, v) for v in plan.graph.outputs}, run


def _fetch(env: dict[int, np.ndarray], v: Value) -> np.ndarray:
    return v.data if v.data is not None else env[id(v)]
