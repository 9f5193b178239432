"""Values, nodes and graphs: a graph is a topologically ordered list of typed equations."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import networkx as nx
import numpy as np

from .types import TensorType


class Value:
    """An SSA value: a graph input, a node output, or a constant carrying its array."""

    __slots__ = ("name", "type", "data", "producer", "__weakref__")

    def __init__(
        self,
        name: str,
        type: TensorType,
        data: np.ndarray | None = None,
        producer: Node | None = None,
    ) -> None:
        self.name = name
        self.type = type
        self.data = data
        self.producer = producer
        if data is not None:
            data.flags.writeable = False

    @property
    def is_constant(self) -> bool:
        """True for a constant (a value that carries its array)."""
        return self.data is not None

    def __repr__(self) -> str:
        sigil = "@" if self.is_constant else "%"
        return f"{sigil}{self.name}: {self.type}"


class Node:
    """One equation: `outputs = op(inputs) {attrs}`, with a free `meta` dict for analyses."""

    __slots__ = ("op", "inputs", "attrs", "outputs", "meta", "__weakref__")

    def __init__(
        self,
        op: str,
        inputs: list[Value],
        attrs: dict[str, Any] | None = None,
        outputs: list[Value] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.op = op
        self.inputs = list(inputs)
        self.attrs = dict(attrs or {})
        self.outputs = list(outputs or [])
        self.meta = dict(meta or {})
        for v in self.outputs:
            v.producer = self

    @property
    def output(self) -> Value:
        """The single output of a one-output node."""
        if len(self.outputs) != 1:
            raise ValueError(f"node {self.name} ({self.op}) has {len(self.outputs)} outputs")
        return self.outputs[0]

    @property
    def name(self) -> str:
        """The node's name: that of its first output."""
        return self.outputs[0].name if self.outputs else f"<{self.op}>"

    def __repr__(self) -> str:
        from .text import format_node

        return format_node(self)


GRAPH_FIELDS = ("name", "inputs", "outputs", "nodes")
"""The attributes every Graph has (its pickled state flattens them; any other attribute travels as it is)."""


class Graph:
    """A dataflow graph: named inputs, outputs, and nodes in topological order."""

    def __init__(
        self,
        name: str,
        inputs: list[Value],
        outputs: list[Value],
        nodes: list[Node],
    ) -> None:
        self.name = name
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.nodes = list(nodes)

    # ---- queries -------------------------------------------------------------------------
    @property
    def constants(self) -> list[Value]:
        """The constants the graph uses, in order of first use."""
        seen: dict[int, Value] = {}
        for n in self.nodes:
            for v in n.inputs:
                if v.is_constant and id(v) not in seen:
                    seen[id(v)] = v
        for v in self.outputs:
            if v.is_constant and id(v) not in seen:
                seen[id(v)] = v
        return list(seen.values())

    def values(self) -> Iterator[Value]:
        """Every value defined in the graph: inputs, constants, then node outputs."""
        yield from self.inputs
        yield from self.constants
        for n in self.nodes:
            yield from n.outputs

    def value(self, name: str) -> Value:
        """The value called `name`; KeyError lists near names when there is none."""
        for v in self.values():
            if v.name == name:
                return v
        raise KeyError(f"graph {self.name!r} has no value named {name!r}")

    def users(self) -> dict[int, list[Node]]:
        """Map id(value) -> nodes that read it (a node appears once per value)."""
        out: dict[int, list[Node]] = {}
        for n in self.nodes:
            for v in {id(v): v for v in n.inputs}.values():
                out.setdefault(id(v), []).append(n)
        return out

    def users_of(self, value: Value) -> list[Node]:
        """The nodes that read `value`, in graph order (each once)."""
        return [n for n in self.nodes if any(v is value for v in n.inputs)]

    def nodes_of(self, op: str) -> list[Node]:
        """All nodes whose op is `op`."""
        return [n for n in self.nodes if n.op == op]

    def num_parameters(self) -> int:
        """Number of elements held in constants."""
        return sum(v.type.numel for v in self.constants)

    def parameter_bytes(self) -> int:
        """Bytes held in constants, at their declared dtypes."""
        return sum(v.type.nbytes for v in self.constants)

    # ---- edits ---------------------------------------------------------------------------
    def replace_all_uses(self, old: Value, new: Value) -> int:
        """Make every reader of `old` (and the graph outputs) read `new`; returns the count."""
        count = 0
        for n in self.nodes:
            for i, v in enumerate(n.inputs):
                if v is old:
                    n.inputs[i] = new
                    count += 1
        for i, v in enumerate(self.outputs):
            if v is old:
                self.outputs[i] = _renamed_for_output(new, old, self)
                count += 1
        return count

    def replace_all(self, op: str, with_input: int = 0) -> int:
        """Remove every `op` node, rewiring its first output to its input `with_input`."""
        removed = 0
        for n in [n for n in self.nodes if n.op == op]:
            self.replace_all_uses(n.outputs[0], n.inputs[with_input])
            self.nodes.remove(n)
            removed += 1
        return removed

    def insert_before(self, anchor: Node, node: Node) -> Node:
        """Insert `node` just before `anchor` in the node order."""
        self.nodes.insert(self.nodes.index(anchor), node)
        return node

    def remove_dead_nodes(self) -> int:
        """Drop nodes none of whose outputs reaches a graph output; returns how many."""
        live: set[int] = {id(v) for v in self.outputs}
        keep: list[Node] = []
        for n in reversed(self.nodes):
            if any(id(v) in live for v in n.outputs):
                keep.append(n)
                live.update(id(v) for v in n.inputs)
        removed = len(self.nodes) - len(keep)
        self.nodes = keep[::-1]
        return removed

    def fresh_name(self, base: str) -> str:
        """A value name starting with `base` not yet used in the graph."""
        taken = {v.name for v in self.values()}
        if base not in taken:
            return base
        for k in itertools.count(1):
            cand = f"{base}_{k}"
            if cand not in taken:
                return cand
        raise AssertionError("unreachable")

    def copy(self) -> Graph:
        """A structural copy: new nodes and values; constant arrays and region bodies are shared (read-only)."""
        mapping: dict[int, Value] = {}

        def clone(v: Value) -> Value:
            if id(v) not in mapping:
                mapping[id(v)] = Value(v.name, v.type, v.data)
            return mapping[id(v)]

        inputs = [clone(v) for v in self.inputs]
        nodes = []
        for n in self.nodes:
            ins = [clone(v) for v in n.inputs]
            outs = [clone(v) for v in n.outputs]
            nodes.append(Node(n.op, ins, dict(n.attrs), outs, dict(n.meta)))
        outputs = [clone(v) for v in self.outputs]
        return Graph(self.name, inputs, outputs, nodes)

    # ---- views ---------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """A flat state: values by index, nodes as (op, input indices, attrs, output indices, meta). Pickle then
        follows no value -> producer -> input chain, so a graph of any depth pickles without deep recursion."""
        index: dict[int, int] = {}
        values: list[tuple[str, TensorType, np.ndarray | None]] = []

        def ref(v: Value) -> int:
            if id(v) not in index:
                index[id(v)] = len(values)
                values.append((v.name, v.type, v.data))
            return index[id(v)]

        inputs = [ref(v) for v in self.inputs]
        nodes = [(n.op, [ref(v) for v in n.inputs], n.attrs, [ref(v) for v in n.outputs], n.meta) for n in self.nodes]
        outputs = [ref(v) for v in self.outputs]
        rest = {k: v for k, v in self.__dict__.items() if k not in GRAPH_FIELDS}
        return {"name": self.name, "values": values, "inputs": inputs, "nodes": nodes, "outputs": outputs,
                "rest": rest}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild the graph `__getstate__` flattened: one Value per index, so sharing is kept."""
        values = [Value(name, t, data) for name, t, data in state["values"]]
        self.name = state["name"]
        self.inputs = [values[i] for i in state["inputs"]]
        self.nodes = [Node(op, [values[i] for i in ins], attrs, [values[i] for i in outs], meta)
                      for op, ins, attrs, outs, meta in state["nodes"]]
        self.outputs = [values[i] for i in state["outputs"]]
        self.__dict__.update(state["rest"])

    def to_networkx(self) -> nx.MultiDiGraph:
        """The dataflow as a networkx MultiDiGraph over nodes (edge attr `value`, `index`)."""
        g = nx.MultiDiGraph()
        producer: dict[int, Node] = {}
        for n in self.nodes:
            g.add_node(n, op=n.op)
            for v in n.outputs:
                producer[id(v)] = n
        for n in self.nodes:
            for i, v in enumerate(n.inputs):
                if id(v) in producer:
                    g.add_edge(producer[id(v)], n, value=v, index=i)
        return g

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __str__(self) -> str:
        from .text import print_graph

        return print_graph(self, constants="elide")

    def __repr__(self) -> str:
        return f"<Graph {self.name}: {len(self.inputs)} inputs, {len(self.nodes)} nodes>"

    def to_text(self, constants: str = "full") -> str:
        """The text form; `constants="full"` keeps every array so that `parse` rebuilds it."""
        from .text import print_graph

        return print_graph(self, constants=constants)


def _renamed_for_output(new: Value, old: Value, graph: Graph) -> Value:
    """Graph outputs keep their names: a node output that replaces a graph output takes the
    old name (the old value is gone, so the name is free); inputs and constants keep theirs."""
    if new.producer is not None and not any(v is new for v in graph.outputs):
        new.name = old.name
    return new
