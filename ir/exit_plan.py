"""How a runtime stops rows early: the node order, which nodes run on the rows left, what is compacted at each exit.

`plan_exits(graph)` is computed once at compile time and refuses (RowError, naming node and reason) a graph
that could not stop part of its batch without changing a result. See docs/early-exit.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from .exit_rows import BatchRows, RowError, batch_rows, subgraph
from .exits import exit_fault, exit_nodes, exit_segments, select_node
from .graph import Graph, Node, Value


@dataclass
class ExitPlan:
    """What a runtime needs to run an early-exit graph (see `plan_exits`)."""

    graph: Graph
    batch: int
    """B: rows of the final output, of every head and of the graph inputs that carry the batch."""
    order: list[Node]
    """Nodes in run order: by segment (a valid topological order), then exit_select, then what reads its outputs."""
    exits: list[Node]
    select: Node
    rows: BatchRows
    """m (entries of the leading axis per batch row) of every batch-carrying value, by id."""
    on_rows: set[int]
    """ids of the nodes that run on the rows left (batch-carrying, after exit 0, before exit_select)."""
    compact_after: list[list[Value]]
    """Per exit k: the batch-carrying values still needed after it, whose fired rows it drops."""
    segment: dict[int, int] = field(default_factory=dict)
    """Segment of every node, by id."""

    def rows_of(self, v: Value) -> int:
        """m of batch-carrying value `v`."""
        return self.rows.rows[id(v)]


def _post_select(graph: Graph, select: Node) -> set[int]:
    dag = graph.to_networkx()
    return {id(n) for n in nx.descendants(dag, select)}


def plan_exits(graph: Graph) -> ExitPlan:
    """The ExitPlan of a graph with exits; RowError names the node that cannot run on part of the batch."""
    fault = exit_fault(graph)
    if fault is not None:
        raise RowError(f"graph {graph.name}: node %{fault[0].name} ({fault[0].op}): {fault[1]}")
    select, exits = select_node(graph), exit_nodes(graph)
    if select is None:
        raise RowError(f"graph {graph.name} has no exits")
    batch = select.inputs[0].type.shape[0]
    rows = batch_rows(graph, batch)
    if not any(id(v) in rows.rows for v in graph.inputs):
        raise RowError(f"graph {graph.name}: no input has the batch size {batch} of the exits' heads as its leading "
                       "axis, so no value carries the batch")
    seg = {id(n): s for n, s in zip(graph.nodes, exit_segments(graph, write=False).values())}
    post = _post_select(graph, select)
    main = sorted((n for n in graph.nodes if id(n) not in post and n is not select), key=lambda n: seg[id(n)])
    order = main + [select] + [n for n in graph.nodes if id(n) in post]
    for n in exits:
        if id(n.inputs[0]) not in rows.rows:
            raise RowError(f"graph {graph.name}: head %{n.inputs[0].name} of exit %{n.name} does not carry the batch")
    on_rows = {id(n) for n in main if seg[id(n)] > 0 and any(rows.carries(v) for v in n.outputs)}
    for n in main:
        if id(n) in on_rows and n.name in rows.reasons:
            raise RowError(f"graph {graph.name}: node %{n.name} ({n.op}) runs after exit 0 on the rows left but "
                           f"cannot run on part of the batch: {rows.reasons[n.name]}")
    _check_after_select(graph, select, post, rows)
    return ExitPlan(graph, batch, order, exits, select, rows, on_rows,
                    _compactions(graph, order, exits, select, rows), seg)


def _check_after_select(graph: Graph, select: Node, post: set[int], rows: BatchRows) -> None:
    """Nodes after exit_select and graph outputs see whole batches: only exit_select's outputs and what follows."""
    whole = {id(v) for v in select.outputs} | {id(v) for n in graph.nodes if id(n) in post for v in n.outputs}
    for n in graph.nodes:
        if id(n) in post:
            for v in n.inputs:
                if rows.carries(v) and id(v) not in whole:
                    raise RowError(f"graph {graph.name}: node %{n.name} ({n.op}) after exit_select reads %{v.name}, "
                                   "which holds only the rows that did not leave early")
    for v in graph.outputs:
        if rows.carries(v) and id(v) not in whole:
            raise RowError(f"graph {graph.name}: output %{v.name} carries the batch but holds only the rows that did "
                           "not leave early; return it through exit_select")


def _compactions(graph: Graph, order: list[Node], exits: list[Node], select: Node,
                 rows: BatchRows) -> list[list[Value]]:
    pos = {id(n): i for i, n in enumerate(order)}
    defined: dict[int, int] = {id(v): -1 for v in graph.inputs}
    values: dict[int, Value] = {id(v): v for v in graph.inputs}
    last: dict[int, int] = {}
    for n in order:
        for v in n.outputs:
            defined[id(v)], values[id(v)] = pos[id(n)], v
        reads = n.inputs[:1] if n is select else n.inputs  # heads and fires reach exit_select when their exit runs
        for v in reads:
            last[id(v)] = pos[id(n)]
    out = []
    for ex in exits:
        p = pos[id(ex)]
        live = [values[i] for i, d in defined.items() if d <= p < last.get(i, -1) and rows.carries(values[i])]
        for v in live:
            if id(v) in rows.mixed:
                raise RowError(f"graph {graph.name}: %{v.name} is needed after exit %{ex.name} but its leading axis "
                               "does not hold one block per batch row, so the rows that left cannot be dropped")
        out.append(live)
    return out


@dataclass
class Segment:
    """A run of consecutive nodes of the plan's order, with the values it reads from and gives to the others."""

    index: int
    """k for segment k (closed by exit k; n: the rest up to exit_select), n + 1 for the nodes after exit_select."""
    nodes: list[Node]
    inputs: list[Value]
    outputs: list[Value]


def plan_segments(plan: ExitPlan) -> list[Segment]:
    """The segments of `plan` in run order (exit_select itself is in none: the runtime assembles it)."""
    after = len(plan.exits) + 1
    at = plan.order.index(plan.select)
    group = {id(node): (after if i > at else plan.segment[id(node)]) for i, node in enumerate(plan.order)}
    group[id(plan.select)] = after  # it reads its inputs where the nodes after it do
    owner = {id(v): group[id(node)] for node in plan.order if node is not plan.select for v in node.outputs}
    wanted: set[int] = {id(v) for v in plan.graph.outputs if id(v) in owner}
    for node in plan.order:
        wanted.update(id(v) for v in node.inputs if id(v) in owner and owner[id(v)] != group[id(node)])
    out = []
    for k in sorted({group[id(n)] for n in plan.order if n is not plan.select}):
        nodes = [n for n in plan.order if group[id(n)] == k and n is not plan.select]
        inside = {id(v) for node in nodes for v in node.outputs}
        ins = {id(v): v for node in nodes for v in node.inputs if not v.is_constant and id(v) not in inside}
        outs = [v for node in nodes for v in node.outputs if id(v) in wanted]
        out.append(Segment(k, nodes, list(ins.values()), outs))
    return out


def segment_graph(plan: ExitPlan, seg: Segment, rows: int, ms: dict[int, int] | None = None) -> Graph:
    """Segment `seg` as a graph of its own, for `rows` batch rows (its batch-carrying values resized; `ms`: m of
    every batch-carrying value when the segment holds values the plan has not, else the plan's)."""
    name = f"{plan.graph.name}.segment{seg.index}" + (f".rows{rows}" if rows != plan.batch else "")
    return subgraph(name, seg.inputs, seg.nodes, seg.outputs, plan.rows.rows if ms is None else ms, rows, plan.batch)
