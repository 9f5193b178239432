"""`verify(graph)`: structural and type checks whose errors name the node and its neighbours."""

from __future__ import annotations

import networkx as nx
import numpy as np

from .exits import exit_fault
from .graph import Graph, Node, Value
from .ops import OPS, TypeInferenceError
from .text import format_node, format_ref, format_type

ERROR_KINDS = (
    "shape-mismatch",
    "dtype-mismatch",
    "use-before-def",
    "dangling",
    "unused",
    "unknown-op",
    "attribute",
    "cycle",
    "duplicate-name",
    "arity",
    "constant-type",
    "output-count",
    "exit",
)


class VerificationError(ValueError):
    """A malformed graph: `kind` is one of ERROR_KINDS, `node` the node at fault (if any)."""

    def __init__(self, kind: str, message: str, node: Node | None = None) -> None:
        super().__init__(f"[{kind}] {message}")
        self.kind = kind
        self.node = node


def _context(g: Graph, node: Node) -> str:
    """The node's line with its producers above and its users below."""
    producers = [v.producer for v in node.inputs if v.producer is not None and v.producer in g.nodes]
    users = [n for n in g.nodes if any(v in n.inputs for v in node.outputs)]
    lines = ["  producers:"] + [f"    {format_node(p)}" for p in dict.fromkeys(producers)]
    lines += [f"  > {format_node(node)}", "  users:"]
    lines += [f"    {format_node(u)}" for u in users[:8]]
    if len(users) > 8:
        lines.append(f"    ... and {len(users) - 8} more")
    return "\n".join(lines)


def _fail(g: Graph, kind: str, node: Node, detail: str) -> VerificationError:
    return VerificationError(
        kind, f"graph {g.name}, node {format_ref(node.outputs[0]) if node.outputs else node.op}"
        f" ({node.op}): {detail}\n{_context(g, node)}", node
    )


def _check_names(g: Graph) -> None:
    seen: dict[str, str] = {}
    for where, vals in (("input", g.inputs), ("constant", g.constants),
                        ("node output", [v for n in g.nodes for v in n.outputs])):
        for v in vals:
            if v.name in seen:
                node = v.producer if where == "node output" else None
                msg = f"graph {g.name}: name {v.name!r} is used by a {seen[v.name]} and a {where}"
                if node is not None:
                    raise _fail(g, "duplicate-name", node, msg)
                raise VerificationError("duplicate-name", msg)
            seen[v.name] = where


def _check_constants(g: Graph) -> None:
    for v in g.inputs:
        if v.is_constant:
            raise VerificationError("constant-type", f"graph {g.name}: input %{v.name} carries data")
    for c in g.constants:
        assert c.data is not None
        if c.data.shape != c.type.shape or c.data.dtype != c.type.dtype.np_dtype:
            raise VerificationError(
                "constant-type",
                f"graph {g.name}: constant @{c.name} is declared {format_type(c.type)} but its array "
                f"is {c.data.dtype}{list(c.data.shape)}",
            )
        _check_sparsity(g, c)


def _check_sparsity(g: Graph, c: Value) -> None:
    """A constant's array must honour its declared sparsity (read as the weight of each matmul using it)."""
    s, q = c.type.sparsity, c.type.quant
    if s is None or (q is not None and any(q.zero_point)):  # stored zeros are real zeros only when zp = 0
        return
    ops = {"matmul" if n.op == "matmul" else None for n in g.nodes if len(n.inputs) > 1 and n.inputs[1] is c}
    for op in sorted(ops or {None}, key=str):
        why = s.check(c.data, op)  # type: ignore[arg-type]
        if why:
            raise VerificationError("constant-type", f"graph {g.name}: constant @{c.name} is declared "
                                                     f"{format_type(c.type)} but its array breaks it: {why}")


def _check_cycles(g: Graph) -> None:
    dag = nx.DiGraph()
    producer: dict[int, Node] = {id(v): n for n in g.nodes for v in n.outputs}
    for n in g.nodes:
        dag.add_node(id(n))
        for v in n.inputs:
            if id(v) in producer:
                dag.add_edge(id(producer[id(v)]), id(n))
    try:
        cycle = nx.find_cycle(dag)
    except nx.NetworkXNoCycle:
        return
    by_id = {id(n): n for n in g.nodes}
    names = " -> ".join(format_ref(by_id[a].outputs[0]) for a, _ in cycle)
    raise _fail(g, "cycle", by_id[cycle[0][0]], f"the graph has a cycle: {names} -> ...")


def _check_types(g: Graph, node: Node, attrs: dict) -> None:
    try:
        inferred = OPS[node.op].infer([v.type for v in node.inputs], attrs)
    except TypeInferenceError as e:
        raise _fail(g, e.kind, node, str(e)) from None
    if len(inferred) != len(node.outputs):
        raise _fail(g, "output-count", node,
                    f"{node.op} produces {len(inferred)} outputs, node declares {len(node.outputs)}")
    for v, t in zip(node.outputs, inferred):
        if v.type.shape != t.shape:
            raise _fail(g, "shape-mismatch", node,
                        f"%{v.name} is declared {format_type(v.type)} but {node.op} gives {format_type(t)}")
        if v.type.dtype != t.dtype:
            raise _fail(g, "dtype-mismatch", node,
                        f"%{v.name} is declared {format_type(v.type)} but {node.op} gives {format_type(t)}")
        if t.quant is not None and v.type.quant != t.quant:
            raise _fail(g, "dtype-mismatch", node,
                        f"%{v.name} is declared {format_type(v.type)} but {node.op} gives {format_type(t)}")


def _check_region(g: Graph, node: Node, key: str, body: Graph) -> None:
    """A region body is itself a valid graph, with no constants and every parameter distinct."""
    if body.constants:
        names = ", ".join(f"@{c.name}" for c in body.constants)
        raise _fail(g, "constant-type", node, f"{key} {body.name} holds constant(s) {names}: a body reads only "
                                              "its parameters (pass arrays as inputs of the fused node)")
    try:
        verify(body)
    except VerificationError as e:
        raise _fail(g, e.kind, node, f"in {key} {body.name}: {e}") from None


def verify(g: Graph, *, allow_dead: bool = True) -> Graph:
    """Check `g` and return it; raises VerificationError naming the node and the fault.

    Checks names are unique, constants match their types, there is no cycle, every op is
    known with valid arity and attributes, every value is defined before use, types agree
    with each op's type rule, early exits are well formed (ir/exits.py), and outputs are defined.
    A dead node (no output used or returned) is valid IR, left for `dce` to remove: `lint(g)`
    reports it as a warning, and `allow_dead=False` makes it an error of kind "unused".
    """
    _check_constants(g)  # first: an input carrying data would otherwise read as a duplicate name
    _check_names(g)
    _check_cycles(g)
    defined: set[int] = {id(v) for v in g.inputs}
    later: dict[int, Node] = {id(v): n for n in g.nodes for v in n.outputs}
    for node in g.nodes:
        if node.op not in OPS:
            raise _fail(g, "unknown-op", node,
                        f"unknown op {node.op!r}; registered ops: {', '.join(sorted(OPS))}")
        opdef = OPS[node.op]
        try:
            opdef.check_arity(len(node.inputs))
            attrs = opdef.normalize_attrs(node.attrs)
        except TypeInferenceError as e:
            raise _fail(g, e.kind, node, str(e)) from None
        for v in node.inputs:
            if v.is_constant or id(v) in defined:
                continue
            if id(v) in later:
                raise _fail(g, "use-before-def", node,
                            f"input %{v.name} is used before the node that defines it")
            raise _fail(g, "dangling", node,
                        f"input %{v.name} is not a graph input, a constant or any node's output")
        _check_types(g, node, attrs)
        for key, value in attrs.items():
            if isinstance(value, Graph):
                _check_region(g, node, key, value)
        defined.update(id(v) for v in node.outputs)
    for v in g.outputs:
        if not (v.is_constant or id(v) in defined):
            raise VerificationError("dangling", f"graph {g.name}: output %{v.name} is never defined")
    fault = exit_fault(g)
    if fault is not None:
        raise _fail(g, "exit", *fault)
    if not allow_dead:
        for node in dead_nodes(g)[:1]:
            raise _fail(g, "unused", node, "no output of this node is used or returned (run the 'dce' pass)")
    return g


def dead_nodes(g: Graph) -> list[Node]:
    """Nodes none of whose outputs is read by another node or returned (what `dce` removes first)."""
    used = {id(v) for n in g.nodes for v in n.inputs} | {id(v) for v in g.outputs}
    return [n for n in g.nodes if not any(id(v) in used for v in n.outputs)]


def lint(g: Graph) -> list[str]:
    """Warnings about a valid graph: one line per dead node (the 'dce' pass removes them)."""
    return [f"warning: graph {g.name}, node {format_ref(n.outputs[0]) if n.outputs else n.op} ({n.op}): dead, "
            "no output is used or returned (the 'dce' pass removes it)" for n in dead_nodes(g)]


def check_array(v: Value, arr: np.ndarray) -> str | None:
    """Why `arr` does not fit the type of `v`, or None when it does."""
    if arr.shape != v.type.shape:
        return f"shape {list(arr.shape)} != {list(v.type.shape)}"
    if arr.dtype != v.type.dtype.np_dtype:
        return f"dtype {arr.dtype} != {v.type.dtype.np_dtype}"
    return None
