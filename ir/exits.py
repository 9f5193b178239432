"""Early-exit structure of a graph: its exits in order, the segments they close, and the checks `verify` runs.

Exit k closes segment k: segment k holds the nodes exit k needs (its head included) that no earlier exit
needs; the nodes no exit needs (the rest of the network, `exit_select`, anything after it) form segment n.
A row that leaves at exit k runs segments 0..k only.
"""

from __future__ import annotations

import networkx as nx

from .graph import Graph, Node

EXIT_OP = "exit"
SELECT_OP = "exit_select"
SEGMENT_KEY = "exit_segment"
"""node.meta key holding the node's segment (what the cost model reads)."""
MULTI_HEAD_CRITERIA = ("patience", "cosine")
"""Criteria that read the heads of earlier exits."""


def exit_nodes(graph: Graph) -> list[Node]:
    """The `exit` nodes of `graph`, in graph order."""
    return [n for n in graph.nodes if n.op == EXIT_OP]


def select_node(graph: Graph) -> Node | None:
    """The graph's `exit_select` node (the first one, when a malformed graph has several), or None."""
    return next((n for n in graph.nodes if n.op == SELECT_OP), None)


def has_exits(graph: Graph) -> bool:
    """True when `graph` has an `exit` or `exit_select` node."""
    return any(n.op in (EXIT_OP, SELECT_OP) for n in graph.nodes)


def exit_segments(graph: Graph, write: bool = True) -> dict[str, int]:
    """Segment of every node by name (see the module doc); written into `node.meta["exit_segment"]` if `write`."""
    exits = exit_nodes(graph)
    dag = graph.to_networkx()
    seg: dict[int, int] = {}
    for k, ex in enumerate(exits):
        for n in (*nx.ancestors(dag, ex), ex):
            seg.setdefault(id(n), k)
    out: dict[str, int] = {}
    for n in graph.nodes:
        s = seg.get(id(n), len(exits))
        out[n.name] = s
        if write:
            n.meta[SEGMENT_KEY] = s
    return out


def exit_fault(graph: Graph) -> tuple[Node, str] | None:
    """The first early-exit rule `graph` breaks, as (node at fault, what is wrong), or None.

    Exits are numbered 0..n-1 in graph order; their fires are read only by the one `exit_select`, whose
    pairs are (head_k, fire_k) in exit order; the earlier heads of a patience / cosine exit are heads of
    earlier exits, oldest first; segments recorded in node.meta are well nested (a node never reads one of a
    later segment, except `exit_select`).
    """
    exits = exit_nodes(graph)
    selects = [n for n in graph.nodes if n.op == SELECT_OP]
    if not exits and not selects:
        return None
    for k, ex in enumerate(exits):
        if ex.attrs.get("index") != k:
            return ex, f"exit has index {ex.attrs.get('index')} but is exit number {k} in graph order"
    if len(selects) != 1:
        where = selects[1] if selects else exits[0]
        return where, f"a graph with exits needs exactly one exit_select, it has {len(selects)}"
    sel = selects[0]
    pairs = len(sel.inputs) // 2
    if pairs != len(exits):
        return sel, f"exit_select takes {pairs} (head, fire) pair(s) but the graph has {len(exits)} exit(s)"
    head_index = {id(ex.inputs[0]): k for k, ex in enumerate(exits)}
    for k, ex in enumerate(exits):
        head, fire = sel.inputs[1 + 2 * k], sel.inputs[2 + 2 * k]
        if fire is not ex.outputs[0]:
            return sel, f"pair {k}: fire %{fire.name} is not the output of exit {k} (%{ex.name})"
        if head is not ex.inputs[0]:
            return sel, f"pair {k}: head %{head.name} is not the head exit {k} reads (%{ex.inputs[0].name})"
        earlier = [head_index.get(id(v)) for v in ex.inputs[1:]]
        if any(e is None or e >= k for e in earlier) or earlier != sorted(set(earlier)):  # type: ignore[type-var]
            names = ", ".join(f"%{v.name}" for v in ex.inputs[1:])
            return ex, f"earlier heads ({names}) must be heads of exits before {k}, oldest first"
    fires = {id(ex.outputs[0]) for ex in exits}
    for n in graph.nodes:
        if n is not sel and any(id(v) in fires for v in n.inputs):
            return n, "reads an exit's fire; only exit_select may"
    if any(id(v) in fires for v in graph.outputs):
        return exits[0], "an exit's fire is a graph output; only exit_select may read it"
    return _nesting_fault(graph)


def _nesting_fault(graph: Graph) -> tuple[Node, str] | None:
    """A node reading a value of a later segment, by the segments recorded in node.meta."""
    for n in graph.nodes:
        mine = n.meta.get(SEGMENT_KEY)
        if mine is None or n.op == SELECT_OP:
            continue
        for v in n.inputs:
            p = v.producer
            theirs = p.meta.get(SEGMENT_KEY) if p is not None else None
            if theirs is not None and theirs > mine:
                return n, (f"segment {mine} reads %{v.name} of segment {theirs}: segments must be well nested "
                           f"(only exit_select reads a later segment)")
    return None
