"""cse: merge nodes that compute the same op on the same inputs, and identical constants."""

from __future__ import annotations

import hashlib
from typing import Any

from ..ir.graph import Graph, Value
from ..ir.regions import body_key
from .base import Pass, PassContext, PassResult, register_pass


def _freeze(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, float) and v != v:
        return ("nan",)
    if isinstance(v, Graph):  # a region body: equal up to value names
        return ("graph", body_key(v))
    return v


@register_pass
class CommonSubexpressionElimination(Pass):
    """Replaces a node by an earlier identical one (same op, inputs and attributes)."""

    name = "cse"
    dedupe_constants: bool = True

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        """Deduplicate constants, then nodes, in topological order."""
        merged_consts = 0
        if self.dedupe_constants:
            seen_c: dict[tuple, Value] = {}
            for c in graph.constants:
                assert c.data is not None
                key = (c.type, hashlib.sha1(c.data.tobytes()).hexdigest())
                if key in seen_c and seen_c[key] is not c:
                    graph.replace_all_uses(c, seen_c[key])
                    merged_consts += 1
                else:
                    seen_c.setdefault(key, c)
        seen: dict[tuple, list[Value]] = {}
        merged = 0
        for n in graph.nodes:
            key = (n.op, tuple(id(v) for v in n.inputs), _freeze(sorted(n.attrs.items())),
                   tuple(v.type for v in n.outputs))
            if key in seen:
                for old, new in zip(n.outputs, seen[key]):
                    graph.replace_all_uses(old, new)
                merged += 1
            else:
                seen[key] = n.outputs
        graph.remove_dead_nodes()
        changed = merged + merged_consts > 0
        return PassResult(graph, changed, f"merged {merged} node(s) and {merged_consts} constant(s)",
                          {"merged_nodes": merged, "merged_constants": merged_consts})
