"""Edits that change shapes: new arrays for constant inputs, then every node's type inferred again."""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node, Value
from ..ir.ops import OPS, infer_types
from ..ir.types import TensorType


class ConstantEdits:
    """New arrays for constant inputs of nodes, applied at once (shared constants keep one name when equal)."""

    def __init__(self) -> None:
        self._arrays: dict[tuple[int, int], tuple[Node, int, np.ndarray]] = {}

    def get(self, node: Node, index: int) -> np.ndarray | None:
        """The pending array of input `index` of `node`, else its current constant (None when absent)."""
        hit = self._arrays.get((id(node), index))
        if hit is not None:
            return hit[2]
        return node.inputs[index].data if index < len(node.inputs) else None

    def set(self, node: Node, index: int, array: np.ndarray) -> None:
        """Give input `index` of `node` a new array (index == len(inputs) appends an optional input)."""
        self._arrays[(id(node), index)] = (node, index, array)

    def apply(self, graph: Graph) -> int:
        """Replace the edited inputs by new constants; returns how many were written."""
        readers: dict[int, int] = {}
        for n in graph.nodes:
            for v in n.inputs:
                readers[id(v)] = readers.get(id(v), 0) + 1
        edited: dict[int, int] = {}
        for node, index, _ in self._arrays.values():
            if index < len(node.inputs):
                edited[id(node.inputs[index])] = edited.get(id(node.inputs[index]), 0) + 1
        made: dict[int, list[Value]] = {}
        for node, index, arr in self._arrays.values():
            old = node.inputs[index] if index < len(node.inputs) else None
            dtype = old.type.dtype if old is not None else node.inputs[0].type.dtype
            arr = np.ascontiguousarray(arr, dtype=dtype.np_dtype)
            same = next((v for v in made.get(id(old), []) if np.array_equal(v.data, arr)), None)
            if same is None:
                fresh = old is None or readers.get(id(old), 0) > edited[id(old)] or id(old) in made
                name = graph.fresh_name(f"{node.name}.bias" if old is None else old.name) if fresh else old.name
                same = Value(name, TensorType(arr.shape, dtype), arr)
                made.setdefault(id(old), []).append(same)
            if old is None:
                node.inputs.append(same)
            else:
                node.inputs[index] = same
        return len(self._arrays)


def retype(graph: Graph) -> None:
    """Infer every node's output types again, in order (after inputs changed shape)."""
    for node in graph.nodes:
        attrs = OPS[node.op].normalize_attrs(node.attrs)
        for v, t in zip(node.outputs, infer_types(node.op, [v.type for v in node.inputs], attrs)):
            if v.type.shape != t.shape:
                v.type = t
