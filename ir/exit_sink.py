"""Nodes after `exit_select` run inside the segments instead: `f(select(h_n, h_0, fire_0, ...))` equals
`select(f(h_n), f(h_0), fire_0, ...)` row by row when f keeps rows apart.

A runtime that stops rows early runs what follows `exit_select` (a classifier's softmax, typically) as one more
segment after assembling the selected rows. `sink_post` moves that work into every segment instead: segment k
computes f on its own head, and the runtime selects f's results directly, so that no segment runs after the
selection. Applied only where it is exact: the nodes after `exit_select` read nothing but its first output,
each other's outputs and constants, keep one batch row per leading entry, and end in the one graph output they
give. See docs/early-exit.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from .exit_plan import ExitPlan, Segment
from .graph import Node, Value


@dataclass(frozen=True)
class SunkPost:
    """Segments 0..n with the nodes after exit_select appended, and what the runtime selects from."""

    segments: list[Segment]
    """Segments 0..n (the segment after exit_select is gone), each ending with its copy of those nodes."""
    results: list[Value]
    """Per exit k (and, last, the end of the network): the value the rows leaving there give as `output`."""
    output: Value
    """The graph output the results stand for (the last node after exit_select)."""
    rows: dict[int, int]
    """m of every batch-carrying value (`ExitPlan.rows.rows`) with the copies added."""


def _sinkable(plan: ExitPlan, post: Segment) -> Value | None:
    """The one graph output of `post` when its nodes can run on each head instead of the selection, else None."""
    chosen = plan.select.outputs[0]
    made = {id(v) for n in post.nodes for v in n.outputs}
    for n in post.nodes:
        if n.name in plan.rows.reasons or any(plan.rows.rows.get(id(v)) != 1 for v in n.outputs):
            return None  # mixes rows, or does not keep one batch row per leading entry
        if any(not (v is chosen or id(v) in made or v.is_constant) for v in n.inputs):
            return None  # reads the exit index, or a value of the segments
    given = [v for v in plan.graph.outputs if id(v) in made or v is chosen]
    if len(given) != 1 or given[0] is chosen:
        return None
    return given[0]


def _copies(nodes: list[Node], source: Value, head: Value, suffix: str, rows: dict[int, int]) -> dict[int, Value]:
    """Copies of `nodes` reading `head` where they read `source`; returns original value id -> copy."""
    mapping: dict[int, Value] = {id(source): head}
    for n in nodes:
        outs = [Value(f"{v.name}{suffix}", v.type) for v in n.outputs]
        for old, new in zip(n.outputs, outs):
            rows[id(new)] = rows[id(old)]
            mapping[id(old)] = new
        Node(n.op, [mapping.get(id(v), v) for v in n.inputs], n.attrs, outs, n.meta)
    return mapping


def sink_post(plan: ExitPlan, segments: list[Segment]) -> SunkPost | None:
    """`segments` (from `plan_segments`) with the segment after exit_select sunk into the others, or None when
    there is none or sinking it would not be exact (see the module doc)."""
    n = len(plan.exits)
    if not segments or segments[-1].index != n + 1:
        return None
    post = segments[-1]
    output = _sinkable(plan, post)
    if output is None:
        return None
    chosen = plan.select.outputs[0]
    heads = [plan.select.inputs[1 + 2 * k] for k in range(n)] + [plan.select.inputs[0]]
    rows = dict(plan.rows.rows)
    out, results = [], []
    for seg, head in zip(segments[:-1], heads):
        mapping = _copies(post.nodes, chosen, head, f".exit{seg.index}", rows)
        copies = [mapping[id(node.outputs[0])].producer for node in post.nodes]
        result = mapping[id(output)]
        out.append(Segment(seg.index, seg.nodes + copies, seg.inputs, seg.outputs + [result]))  # type: ignore[operator]
        results.append(result)
    return SunkPost(out, results, output, rows)
