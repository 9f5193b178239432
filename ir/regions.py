"""Fused regions: build a `fused` node from a run of equations, read its body, and inline it back.

A region's body is a Graph whose inputs are bound in order to the fused node's inputs and whose
single output is the node's output. `make_region` is the one way passes create regions;
`inline_regions` undoes them (for ONNX export, or to compare fused and unfused forms).
"""

from __future__ import annotations

from collections.abc import Sequence

from .graph import Graph, Node, Value

INTEGER_MATRIX_OPS = ("qlinear", "qmatmul", "qconv2d")
"""Integer products (ir/ops/integer.py): they anchor a region when they dequantize to f32."""
MATRIX_OPS = ("linear", "matmul", "conv2d", *INTEGER_MATRIX_OPS)
"""Ops that anchor a matrix region (a product whose epilogue runs per output tile)."""
CONV_OPS = ("conv2d", "qconv2d")
"""Matrix ops whose channel axis is 1 (NCHW); the others' is the last axis."""


class RegionError(ValueError):
    """Nodes cannot form one region; the message names the node at fault."""


def region_body(node: Node) -> Graph:
    """The body graph of a `fused` node."""
    if node.op != "fused":
        raise ValueError(f"node %{node.name} is a {node.op}, not a fused region")
    return node.attrs["body"]


def region_anchor(body: Graph) -> Node | None:
    """The body's matrix product (its first equation) or None for an elementwise region."""
    return body.nodes[0] if body.nodes and body.nodes[0].op in MATRIX_OPS else None


def region_label(body: Graph) -> str:
    """The ops of a body joined by '+', e.g. 'linear+add+gelu'."""
    return "+".join(n.op for n in body.nodes)


def make_region(graph: Graph, nodes: Sequence[Node], name: str | None = None) -> Node:
    """Replace `nodes` (in graph order, the last one producing the result) by one `fused` node.

    Every value the nodes read from outside becomes a node input (constants included, once each);
    no value computed inside may be read outside the region except the last node's output, which
    the fused node takes over (same Value object, so its users stay wired). Returns the new node.
    """
    nodes = sorted(nodes, key=graph.nodes.index)
    tail = nodes[-1]
    if len(tail.outputs) != 1:
        raise RegionError(f"region ending at %{tail.name}: its last node must have one output")
    inside = {id(v) for n in nodes for v in n.outputs}
    members = {id(n) for n in nodes}
    _check_escapes(graph, nodes, members, tail)
    params: dict[int, Value] = {}
    outer_args: list[Value] = []
    mapping: dict[int, Value] = {}
    for n in nodes:
        for v in n.inputs:
            if id(v) not in inside and id(v) not in params:
                params[id(v)] = Value(v.name, v.type)
                outer_args.append(v)
    mapping.update(params)
    body_nodes = []
    for n in nodes:
        outs = [Value(v.name, v.type) for v in n.outputs]
        for old, new in zip(n.outputs, outs):
            mapping[id(old)] = new
        body_nodes.append(Node(n.op, [mapping[id(v)] for v in n.inputs], dict(n.attrs), outs, dict(n.meta)))
    body = Graph(name or "_".join(n.op for n in nodes), list(params.values()),
                 [mapping[id(tail.outputs[0])]], body_nodes)
    fused = Node("fused", outer_args, {"body": body}, [tail.outputs[0]], {})
    at = graph.nodes.index(tail)
    graph.nodes[at] = fused
    graph.nodes = [n for n in graph.nodes if id(n) not in members or n is fused]
    return fused


def single_node_region(node: Node) -> Node:
    """A `fused` node whose body is `node` alone, reading `node`'s inputs and writing its output (the graph is
    not changed): how a backend runs one elementwise node through its region kernels."""
    params: dict[int, Value] = {}
    for v in node.inputs:
        params.setdefault(id(v), Value(v.name, v.type))
    out = Value(node.outputs[0].name, node.outputs[0].type)
    inner = Node(node.op, [params[id(v)] for v in node.inputs], dict(node.attrs), [out], dict(node.meta))
    body = Graph(node.op, list(params.values()), [out], [inner])
    outer = list({id(v): v for v in node.inputs}.values())
    return Node("fused", outer, {"body": body}, [node.outputs[0]], {})


def _check_escapes(graph: Graph, nodes: list[Node], members: set[int], tail: Node) -> None:
    """Raise unless only the tail's output is read outside the region (or returned)."""
    outside_reads = {id(v) for n in graph.nodes if id(n) not in members for v in n.inputs}
    outside_reads |= {id(v) for v in graph.outputs}
    for n in nodes[:-1]:
        for v in n.outputs:
            if id(v) in outside_reads:
                raise RegionError(f"region ending at %{tail.name}: %{v.name} ({n.op}) is also read "
                                  "outside the region")


def inline_regions(graph: Graph) -> int:
    """Replace every `fused` node by its body's equations (fresh names where they clash); returns the count."""
    count = 0
    out: list[Node] = []
    taken = {v.name for v in graph.values()}
    for node in graph.nodes:
        if node.op != "fused":
            out.append(node)
            continue
        body = region_body(node)
        mapping: dict[int, Value] = {id(p): a for p, a in zip(body.inputs, node.inputs)}
        result = body.outputs[0]
        for bn in body.nodes:
            outs = []
            for v in bn.outputs:
                if v is result:
                    outs.append(node.outputs[0])
                    continue
                name = v.name
                k = 1
                while name in taken:
                    name, k = f"{v.name}_{k}", k + 1
                taken.add(name)
                outs.append(Value(name, v.type))
            for old, new in zip(bn.outputs, outs):
                mapping[id(old)] = new
            out.append(Node(bn.op, [mapping[id(v)] for v in bn.inputs], dict(bn.attrs), outs, dict(bn.meta)))
        count += 1
    graph.nodes = out
    return count


def body_key(body: Graph) -> str:
    """A text key equal for bodies that differ only in value names (what cse compares)."""
    canon = body.copy()
    canon.name = "body"
    for i, v in enumerate(canon.inputs):
        v.name = f"p{i}"
    for i, v in enumerate(v for n in canon.nodes for v in n.outputs):
        v.name = f"t{i}"
    return canon.to_text()
