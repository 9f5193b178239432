"""Compile-time fusion for the Numba lowering: a matrix product or convolution plus its epilogue.

`find_groups` walks forward from each linear / matmul / conv2d node through single-user
elementwise nodes it can apply while the output tile is in cache: bias or per-channel
add/sub/mul/div by a constant, residual add (a tensor of the output's shape), relu, gelu, and
for convolutions an inference batchnorm with constant parameters. A batched matmul may also
absorb a final transpose, writing its result straight into the transposed layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...ir.graph import Graph, Node, Value

HEADS = ("linear", "matmul", "conv2d")


@dataclass
class Stage:
    """One epilogue step: kind is add_vec/mul_vec/div_vec (with `vec`), residual (with `value`), or an activation."""

    kind: str
    vec: np.ndarray | None = None
    value: Value | None = None


@dataclass
class FusedGroup:
    """Nodes lowered as one kernel: the anchor product, its epilogue nodes, an optional output transpose."""

    anchor: Node
    nodes: list[Node]
    stages: list[Stage] = field(default_factory=list)
    out_perm: tuple[int, ...] | None = None

    @property
    def tail(self) -> Node:
        """The last node of the group (the kernel is emitted at its position)."""
        return self.nodes[-1]

    @property
    def output(self) -> Value:
        """The value the fused kernel produces."""
        return self.tail.outputs[0]

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the fused nodes, in order."""
        return tuple(n.name for n in self.nodes)


def is_gemm_like(node: Node) -> bool:
    """True when a linear/matmul lowers to one 2-D GEMM (its weight/B operand is 2-D)."""
    return node.op == "linear" or (node.op == "matmul" and node.inputs[1].type.rank == 2
                                   and node.inputs[0].type.rank >= 2)


def per_channel(arr: np.ndarray, out_shape: tuple[int, ...], axis: int) -> np.ndarray | None:
    """`arr` as a float32 vector over the channel axis if it broadcasts only along that axis."""
    c = out_shape[axis]
    if arr.ndim > len(out_shape):
        return None
    if arr.size == 1:
        return np.full(c, arr.reshape(-1)[0], np.float32)
    shape = (1,) * (len(out_shape) - arr.ndim) + arr.shape
    if any(d != 1 for i, d in enumerate(shape) if i != axis) or shape[axis] != c:
        return None
    return np.ascontiguousarray(arr.reshape(c), dtype=np.float32)


def _other(node: Node, cur: Value) -> tuple[Value, bool]:
    a, b = node.inputs
    return (b, True) if a is cur else (a, False)


def _stages_for(u: Node, cur: Value, head: Node, axis: int, out_shape: tuple[int, ...],
                has_residual: bool) -> list[Stage] | None:
    """The epilogue stages that replace node `u` reading `cur`, or None when it cannot fuse."""
    if u.op == "relu":
        return [Stage("relu")]
    if u.op == "gelu":
        return [Stage("gelu_tanh" if u.attrs.get("approximate") == "tanh" else "gelu")]
    if u.op in ("add", "sub", "mul", "div"):
        other, cur_first = _other(u, cur)
        if other.is_constant:
            vec = per_channel(np.asarray(other.data), out_shape, axis)
            if vec is None:
                return None
            if u.op == "add":
                return [Stage("add_vec", vec)]
            if u.op == "mul":
                return [Stage("mul_vec", vec)]
            if u.op == "sub":
                return [Stage("add_vec", -vec)] if cur_first else [Stage("mul_vec", np.full_like(vec, -1.0)),
                                                                  Stage("add_vec", vec)]
            return [Stage("div_vec", vec)] if cur_first else None
        if (u.op == "add" and not has_residual and other.type.shape == out_shape
                and (head.op == "conv2d" or is_gemm_like(head))):
            return [Stage("residual", value=other)]
        return None
    if u.op == "batchnorm" and head.op == "conv2d" and u.inputs[0] is cur and all(v.is_constant for v in u.inputs[1:]):
        scale, bias, mean, var = (np.asarray(v.data, np.float64) for v in u.inputs[1:])
        s = scale / np.sqrt(var + u.attrs["epsilon"])
        return [Stage("mul_vec", s.astype(np.float32)), Stage("add_vec", (bias - mean * s).astype(np.float32))]
    return None


def _grow(graph: Graph, head: Node, users: dict[int, list[Node]], outputs: set[int],
          taken: dict[int, FusedGroup]) -> FusedGroup | None:
    out = head.outputs[0]
    if out.type.dtype.name != "f32" or any(v.type.dtype.name != "f32" for v in head.inputs):
        return None
    axis = 1 if head.op == "conv2d" else out.type.rank - 1
    if out.type.rank == 0 or axis < 0:
        return None
    group = FusedGroup(head, [head])
    cur = out
    while id(cur) not in outputs:
        us = users.get(id(cur), [])
        if len(us) != 1 or sum(1 for v in us[0].inputs if v is cur) != 1:
            break
        u = us[0]
        if id(u) in taken or u.outputs[0].type.dtype.name != "f32":
            break
        if (u.op == "transpose" and head.op == "matmul" and not is_gemm_like(head)
                and u.attrs["perm"][-1] == out.type.rank - 1):
            group.out_perm = tuple(u.attrs["perm"])
            group.nodes.append(u)
            break
        if u.outputs[0].type.shape != out.type.shape:
            break
        stages = _stages_for(u, cur, head, axis, out.type.shape, any(s.kind == "residual" for s in group.stages))
        if stages is None:
            break
        group.stages += stages
        group.nodes.append(u)
        cur = u.outputs[0]
    return group if len(group.nodes) > 1 else None


def find_groups(graph: Graph) -> dict[int, FusedGroup]:
    """Map id(node) -> its FusedGroup for every node that belongs to one."""
    users = graph.users()
    outputs = {id(v) for v in graph.outputs}
    groups: dict[int, FusedGroup] = {}
    for n in graph.nodes:
        if n.op in HEADS and id(n) not in groups:
            g = _grow(graph, n, users, outputs, groups)
            if g is not None:
                for m in g.nodes:
                    groups[id(m)] = g
    return groups


def describe(group: FusedGroup) -> str:
    """A short kernel label such as 'gemm+add+gelu'."""
    parts: list[Any] = [s.kind.replace("_vec", "") for s in group.stages]
    if group.out_perm is not None:
        parts.append("transpose")
    return "+".join(parts)
