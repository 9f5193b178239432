"""prune-heads: remove whole attention heads (their q/k/v rows and output-projection columns) as units."""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

import numpy as np

from ..ir.graph import Graph, Node, Value
from .base import Pass, PassContext, PassResult, register_pass
from .graph_edit import ConstantEdits, retype
from .prune import split_names

Q_PERM, K_PERM = (0, 2, 1, 3), (0, 2, 3, 1)
SCORE_CHAIN_OPS = ("mul", "div", "add", "sub", "softmax", "dropout", "identity")
"""Ops allowed between the q @ k^T product and softmax's output in the decomposed form."""


@dataclass
class HeadUnit:
    """One multi-head attention: its q, k, v and output projections, and the nodes that name the head count."""

    q: Node
    k: Node
    v: Node
    out: Node
    heads: int
    head_dim: int
    reshapes: list[tuple[Node, int]] = field(default_factory=list)  # reshape node, axis holding heads or heads*D
    attention: Node | None = None


def _only_reader(v: Value, readers: dict[int, list[Node]], graph: Graph) -> Node | None:
    rs = readers.get(id(v), [])
    if len(rs) != 1 or any(o is v for o in graph.outputs):
        return None
    return rs[0]


def _projection(v: Value, readers: dict[int, list[Node]], graph: Graph) -> Node | None:
    """The linear with constant weight and bias that produces `v`, read only where attention reads it."""
    p = v.producer
    if p is None or p.op != "linear" or p.inputs[1].data is None or len(p.inputs) < 3 or p.inputs[2].data is None:
        return None
    return p if _only_reader(v, readers, graph) is not None else None


def _split(t: Value, perm: tuple[int, ...], readers: dict[int, list[Node]], graph: Graph) -> tuple[Node, Node] | None:
    """transpose(reshape(linear(.)) to [B, S, h, D]) -> (reshape, linear), or None."""
    tr = t.producer
    if tr is None or tr.op != "transpose" or tuple(tr.attrs["perm"]) != perm:
        return None
    rs = tr.inputs[0].producer
    if rs is None or rs.op != "reshape" or rs.output.type.rank != 4 or _only_reader(rs.output, readers, graph) is None:
        return None
    lin = _projection(rs.inputs[0], readers, graph)
    return (rs, lin) if lin is not None and _only_reader(t, readers, graph) is not None else None


def _decomposed_unit(o: Node, readers: dict[int, list[Node]], graph: Graph) -> HeadUnit | str | None:
    """The decomposed attention feeding output projection `o` (BERT's spelling), a reason it can't shrink, or None."""
    merge = o.inputs[0].producer
    if merge is None or merge.op != "reshape" or merge.inputs[0].type.rank != 4:
        return None
    ct = merge.inputs[0].producer
    if ct is None or ct.op != "transpose" or tuple(ct.attrs["perm"]) != Q_PERM:
        return None
    ctx = ct.inputs[0].producer
    if ctx is None or ctx.op != "matmul":
        return None
    v = _split(ctx.inputs[1], Q_PERM, readers, graph)
    cur = ctx.inputs[0].producer
    while cur is not None and cur.op in SCORE_CHAIN_OPS:
        full = cur.output.type.shape
        for other in cur.inputs[1:]:
            if other.type.rank == 4 and other.type.shape[1] != 1:
                return f"{o.name} ({cur.op} %{cur.name} adds a per-head operand %{other.name})"
        cur = next((x.producer for x in cur.inputs if x.type.shape == full and x.producer is not None), None)
    if cur is None or cur.op != "matmul" or v is None:
        return None
    q, k = _split(cur.inputs[0], Q_PERM, readers, graph), _split(cur.inputs[1], K_PERM, readers, graph)
    if q is None or k is None:
        return None
    heads, hd = q[0].output.type.shape[2], q[0].output.type.shape[3]
    unit = HeadUnit(q[1], k[1], v[1], o, heads, hd)
    unit.reshapes = [(q[0], 2), (k[0], 2), (v[0], 2), (merge, 2)]
    return unit


def _op_unit(att: Node, readers: dict[int, list[Node]], graph: Graph) -> HeadUnit | str | None:
    """The `attention` op between linear projections, a reason it can't shrink, or None."""
    projs = [_projection(x, readers, graph) for x in att.inputs[:3]]
    o = _only_reader(att.output, readers, graph)
    if o is not None and o.op == "fused":
        return f"{att.name} (its output projection is inside fused region %{o.name}: run prune-heads before fuse)"
    if any(p is None for p in projs) or o is None or o.op != "linear" or o.inputs[1].data is None:
        return f"{att.name} (q, k, v are not single-use linear projections, or the output is not one linear)"
    if len(att.inputs) > 3 and att.inputs[3].type.rank == 4 and att.inputs[3].type.shape[1] != 1:
        return f"{att.name} (the mask %{att.inputs[3].name} differs per head)"
    heads = int(att.attrs["heads"])
    q, k, v = projs
    assert q is not None and k is not None and v is not None
    return HeadUnit(q, k, v, o, heads, att.inputs[0].type.shape[2] // heads, attention=att)


def find_head_units(graph: Graph) -> tuple[list[HeadUnit], list[str]]:
    """Every attention whose heads can be removed as units, and why others cannot."""
    readers = graph.users()
    units: list[HeadUnit] = []
    skipped: list[str] = []
    for n in graph.nodes:
        found = _op_unit(n, readers, graph) if n.op == "attention" else (
            _decomposed_unit(n, readers, graph) if n.op == "linear" else None)
        if isinstance(found, str):
            skipped.append(found)
        elif found is not None:
            units.append(found)
    return units, skipped


def head_scores(unit: HeadUnit, criterion: str) -> np.ndarray:
    """Importance of each head: the L2 (or L1) norm of its columns of the output projection's weight."""
    w = unit.out.inputs[1].data.astype(np.float64).reshape(-1, unit.heads, unit.head_dim)
    return np.abs(w).sum(axis=(0, 2)) if criterion == "l1" else np.sqrt(np.square(w).sum(axis=(0, 2)))


@register_pass
class PruneHeads(Pass):
    """Removes the least important attention heads of each attention layer; the layer gets narrower.

    Finds multi-head attention in two spellings: the `attention` op between linear q/k/v
    projections and one linear output projection, and the decomposed form BERT graphs use
    (linear -> reshape [B, S, heads, D] -> transpose, q @ k^T, scale / mask / softmax, @ v,
    transpose, reshape [B, S, heads*D] -> linear). A head's importance is the norm (`criterion`
    l2 or l1) of its D columns of the output projection's weight: what the head can contribute to
    the layer's output. In each layer the fraction `sparsity` of heads (rounded half up, at least
    one kept) with the smallest importance goes: their rows of the q, k, v weights and biases,
    their columns of the output projection, and the head count in the reshapes or the `heads`
    attribute (the head size, and so the default scale, is unchanged). `skip` names output
    projections (globs, joined by `+`) to leave whole.

    The result equals the masked model (the original with the removed heads' output-projection
    columns zeroed) up to float reassociation in the output projection's sum.
    """

    name = "prune-heads"
    exact = False
    tolerance = (0.0, float(np.finfo(np.float32).max))  # no input-independent elementwise bound

    sparsity: float = 0.25
    criterion: Literal["l1", "l2"] = "l2"
    skip: str = ""

    def __post_init__(self) -> None:
        """Check the options; errors name the option at fault."""
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"prune-heads: sparsity={self.sparsity} must be in [0, 1)")
        if self.criterion not in ("l1", "l2"):
            raise ValueError(f"prune-heads: criterion={self.criterion!r} must be l1 or l2")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        """Find the attention units, drop their weakest heads, rewrite shapes."""
        units, skipped = find_head_units(graph)
        skip = split_names(self.skip)
        edits = ConstantEdits()
        done: list[str] = []
        for u in units:
            if any(fnmatchcase(u.out.name, p) for p in skip):
                skipped.append(f"{u.out.name} (named in skip)")
                continue
            k = min(u.heads - 1, int(np.floor(self.sparsity * u.heads + 0.5)))
            if k == 0:
                skipped.append(f"{u.out.name} ({u.heads} heads: none to remove at sparsity {self.sparsity})")
                continue
            scores = head_scores(u, self.criterion)
            drop = np.sort(np.argsort(scores, kind="stable")[:k])
            kept = np.setdiff1d(np.arange(u.heads), drop)
            cols = (kept[:, None] * u.head_dim + np.arange(u.head_dim)[None, :]).reshape(-1)
            for p in (u.q, u.k, u.v):
                for i in (1, 2):
                    edits.set(p, i, np.take(p.inputs[i].data, cols, axis=0))
            edits.set(u.out, 1, np.take(u.out.inputs[1].data, cols, axis=1))
            for rs, axis in u.reshapes:
                shape = list(rs.output.type.shape)
                shape[axis] = kept.size if rs.output.type.rank == 4 else kept.size * u.head_dim
                rs.attrs["shape"] = tuple(shape)
            if u.attention is not None:
                u.attention.attrs["heads"] = int(kept.size)
            u.out.meta["prune-heads"] = {"removed": [int(h) for h in drop], "heads": u.heads,
                                         "head_dim": u.head_dim}
            done.append(f"{u.out.name} {u.heads} -> {kept.size} heads (removed {', '.join(map(str, drop))})")
        before = graph.num_parameters()
        if done:
            edits.apply(graph)
            retype(graph)
        parts = [f"pruned heads in {len(done)} layer(s): " + "; ".join(done) if done else "nothing pruned"]
        if done:
            parts.append(f"parameters {before} -> {graph.num_parameters()}")
        if skipped:
            parts.append("kept whole: " + "; ".join(skipped))
        return PassResult(graph, bool(done), "; ".join(parts))
