"""dce: remove nodes whose results reach no graph output."""

from __future__ import annotations

from ..ir.graph import Graph
from .base import Pass, PassContext, PassResult, register_pass


@register_pass
class DeadCodeElimination(Pass):
    """Drops every node none of whose outputs is used by a live node or returned."""

    name = "dce"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        """Remove dead nodes."""
        before = {n.op for n in graph.nodes}
        removed = graph.remove_dead_nodes()
        gone = sorted(before - {n.op for n in graph.nodes})
        extra = f" (no {', '.join(gone)} left)" if gone else ""
        return PassResult(graph, removed > 0, f"removed {removed} dead node(s){extra}", {"removed": removed})
