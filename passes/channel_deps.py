"""Which tensors carry which output channels: the dependency analysis behind `prune-channels`.

A *producer* is a linear or conv2d with a constant float weight; its output channels (the
linear's last axis, the conv's axis 1) may be removed. The analysis follows each producer's
channels forward through the graph as a `Layout` on every value that carries them: the axis, the
pieces of that axis that belong to each producer (a concat along the axis joins several; a
flatten or reshape of the channel axis with the trailing axes makes each channel a contiguous
block of `inner` elements) and, per element of the axis, the constant a channel would hold if its
producer's weight rows and bias were zero (`dead`; None where it would not be constant).

Per op, `LAYOUT_RULES` says how a layout passes through (elementwise ops, batchnorm, pooling,
transpose, flatten, reshape, concat, layernorm and softmax over other axes), which constants along
the channel axis must be sliced (biases, affine constants, batchnorm parameters) and which
consumers absorb it (a linear's input columns, a conv's input channels). A residual add, or a
concat along another axis, ties the producers of both operands: they must lose the same channels.
Anything else that reads a channel-carrying value (a graph output, a matmul of activations, a
fused region, a layernorm or softmax over the channel axis, a reshape that splits the channels)
blocks every producer it carries, with the reason. Ties are connected components of a networkx
graph over producers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from ..backends.reference import evaluate_node
from ..ir.graph import Graph, Node

PRODUCER_OPS = ("linear", "conv2d")
UNARY_OPS = ("relu", "gelu", "sigmoid", "tanh", "erf", "sqrt", "exp", "log", "neg", "abs", "identity", "dropout",
             "clip", "cast")
BINARY_OPS = ("add", "sub", "mul", "div", "pow", "maximum", "minimum")


class Blocked(Exception):
    """A node reads a channel-carrying value in a way the channels cannot shrink through; the message says why."""


@dataclass(frozen=True)
class Piece:
    """A run of the channel axis: `count` channels of producer `group` (None: not prunable), `inner` elements each."""

    group: int | None
    offset: int
    count: int
    inner: int


@dataclass
class Layout:
    """Where producers' channels lie along one axis of a value, and their constants when zeroed."""

    axis: int
    pieces: tuple[Piece, ...]
    dead: np.ndarray | None  # float64 along the axis; NaN where unknown; None when not constant

    def shape_key(self) -> tuple:
        """The structure two operands of a residual add must share."""
        return (self.axis, tuple((p.offset, p.count, p.inner, p.group is None) for p in self.pieces))

    def groups(self) -> set[int]:
        """Producers whose channels this layout carries."""
        return {p.group for p in self.pieces if p.group is not None}

    def scaled(self, axis: int, factor: int) -> Layout:
        """The layout after the trailing `factor` elements of each index are merged into `axis`."""
        pieces = tuple(Piece(p.group, p.offset * factor, p.count, p.inner * factor) for p in self.pieces)
        dead = None if self.dead is None else np.repeat(self.dead, factor)
        return Layout(axis, pieces, dead)

    def kept_indices(self, keep: dict[int, np.ndarray]) -> np.ndarray:
        """Indices along the axis that remain when group g keeps channels `keep[g]` (all where absent)."""
        parts = []
        for p in self.pieces:
            chans = keep.get(p.group, np.arange(p.count)) if p.group is not None else np.arange(p.count)
            parts.append((p.offset + chans[:, None] * p.inner + np.arange(p.inner)[None, :]).reshape(-1))
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


@dataclass
class SliceEdit:
    """Constant input `index` of `node` runs along the layout's axis at its own axis `axis`: slice it."""

    node: Node
    index: int
    axis: int
    layout: Layout


@dataclass
class ConsumerEdit:
    """A linear or conv2d whose input channels (weight axis 1) shrink with `layout`."""

    node: Node
    layout: Layout


@dataclass
class ChannelAnalysis:
    """The result of `analyze_channels`: producers, ties, blocks, and the edits removing channels implies."""

    producers: list[Node]
    ties: nx.Graph
    blocked: dict[int, list[str]] = field(default_factory=dict)
    slices: list[SliceEdit] = field(default_factory=list)
    consumers: list[ConsumerEdit] = field(default_factory=list)
    reshapes: list[tuple[Node, int]] = field(default_factory=list)  # reshape node, channel axis of its output
    layouts: dict[int, Layout] = field(default_factory=dict)

    def tied_groups(self) -> list[list[int]]:
        """Producers that must lose the same channels, one list per group, in graph order."""
        return sorted((sorted(c) for c in nx.connected_components(self.ties)), key=lambda c: c[0])

    def group_block_reasons(self, group: list[int]) -> list[str]:
        """Why a tied group cannot shrink (empty when it can)."""
        return [r for g in group for r in self.blocked.get(g, [])]


def _block(an: ChannelAnalysis, layouts: list[Layout | None], reason: str) -> None:
    for lay in layouts:
        if lay is not None:
            for g in lay.groups():
                an.blocked.setdefault(g, []).append(reason)


def _probe(lay: Layout, rank: int) -> np.ndarray:
    shape = [1] * rank
    shape[lay.axis] = len(lay.dead)  # type: ignore[arg-type]
    return lay.dead.astype(np.float32).reshape(shape)  # type: ignore[union-attr]


def _eval_dead(node: Node, lays: list[Layout | None], out: Layout) -> np.ndarray | None:
    """The zeroed channels' constants after `node`, by running its reference rule on a probe."""
    args = []
    for v, lay in zip(node.inputs, lays):
        if lay is not None:
            if lay.dead is None:
                return None
            args.append(_probe(lay, v.type.rank))
        elif v.data is not None:
            args.append(v.data)
        else:
            return None
    with np.errstate(all="ignore"):
        res = evaluate_node(node, args)[0]
    if any(d != 1 for i, d in enumerate(res.shape) if i != out.axis) or res.ndim != node.output.type.rank:
        return None
    return res.reshape(-1).astype(np.float64)


Rule = Callable[[ChannelAnalysis, Node, list["Layout | None"]], "Layout | None"]


def _first(lays: list[Layout | None]) -> tuple[int, Layout]:
    return next((i, lay) for i, lay in enumerate(lays) if lay is not None)


def _unary(an: ChannelAnalysis, node: Node, lays: list[Layout | None]) -> Layout:
    lay = lays[0]
    assert lay is not None
    out = Layout(lay.axis, lay.pieces, None)
    out.dead = _eval_dead(node, lays, out)
    return out


def _const_along(an: ChannelAnalysis, node: Node, idx: int, lay: Layout, out_rank: int) -> None:
    """Record the slicing of constant input `idx` where it runs along the channel axis."""
    c = node.inputs[idx]
    own = lay.axis - (out_rank - c.type.rank)
    if own >= 0 and c.type.shape[own] != 1:
        an.slices.append(SliceEdit(node, idx, own, lay))


def _binary(an: ChannelAnalysis, node: Node, lays: list[Layout | None]) -> Layout:
    i, lay = _first(lays)
    out_shape = node.output.type.shape
    if node.inputs[i].type.shape != out_shape:
        raise Blocked(f"{node.op} %{node.name} broadcasts the channel-carrying %{node.inputs[i].name} "
                      f"{list(node.inputs[i].type.shape)} to {list(out_shape)}")
    other = node.inputs[1 - i]
    if lays[1 - i] is not None:
        lo = lays[1 - i]
        assert lo is not None
        if lo.shape_key() != lay.shape_key() or other.type.shape != out_shape:
            raise Blocked(f"{node.op} %{node.name} joins %{node.inputs[0].name} and %{node.inputs[1].name}, "
                          f"whose channels do not line up")
        for a, b in zip(lay.pieces, lo.pieces):
            if a.group is not None and b.group is not None:
                an.ties.add_edge(a.group, b.group)
    elif other.data is not None:
        _const_along(an, node, 1 - i, lay, len(out_shape))
    else:
        raise Blocked(f"{node.op} %{node.name} joins the channels with %{other.name}, which no prunable "
                      f"layer produces (a residual from the input, say): the channels are tied to it")
    out = Layout(lay.axis, lay.pieces, None)
    out.dead = _eval_dead(node, lays, out)
    return out


def _batchnorm(an: ChannelAnalysis, node: Node, lays: list[Layout | None]) -> Layout:
    lay = lays[0]
    if lay is None or lays[1:] != [None] * 4 or any(v.data is None for v in node.inputs[1:]):
        raise Blocked(f"batchnorm %{node.name} has computed parameters")
    if lay.axis != 1:
        raise Blocked(f"batchnorm %{node.name} normalizes axis 1, but the channels run along axis {lay.axis}")
    for k in range(1, 5):
        an.slices.append(SliceEdit(node, k, 0, lay))
    return _unary(an, node, lays)


def _norm_axes(node: Node, rank: int) -> set[int]:
    if node.op == "softmax":
        return {node.attrs.get("axis", -1) % rank}
    return set(range(node.attrs.get("axis", -1) % rank, rank))


def _normalize(an: ChannelAnalysis, node: Node, lays: list[Layout | None]) -> Layout:
    lay = lays[0]
    if lay is None or any(x is not None for x in lays[1:]):
        raise Blocked(f"{node.op} %{node.name} has computed parameters")
    if lay.axis in _norm_axes(node, node.output.type.rank):
        raise Blocked(f"{node.op} %{node.name} normalizes over the channel axis {lay.axis}: removing channels "
                      f"would change every kept channel's value")
    return Layout(lay.axis, lay.pieces, None)


def _pool(an: ChannelAnalysis, node: Node, lays: list[Layout | None]) -> Layout:
    lay = lays[0]
    assert lay is not None
    if lay.axis != 1:
        raise Blocked(f"{node.op} %{node.name} pools axis 1, but the channels run along axis {lay.axis}")
    padded_mean = node.op == "avgpool2d" and node.attrs.get("count_include_pad") and any(node.attrs.get("pads", ()))
    return Layout(lay.axis, lay.pieces, None if padded_mean else lay.dead)


def _reduce(an: ChannelAnalysis, node: Node, lays: list[Layout | None]) -> Layout:
    lay = lays[0]
    assert lay is not None
    rank = node.inputs[0].type.rank
    axes = {a % rank for a in node.attrs.get("axes", ())} or set(range(rank))
    if lay.axis in axes or not node.attrs.get("keepdims", True):
        raise Blocked(f"{node.op} %{node.name} reduces the channel axis or drops axes")
    out = Layout(lay.axis, lay.pieces, None)
    out.dead = _eval_dead(node, lays, out)
    return out


def _transpose(an: ChannelAnalysis, node: Node, lays: list[Layout | None]) -> Layout:
    lay = lays[0]
    assert lay is not None
    return Layout(list(node.attrs["perm"]).index(lay.axis), lay.pieces, lay.dead)


def _merge_trailing(node: Node, lay: Layout, start: int) -> Layout:
    """The layout when axes start.. of the input become one output axis `start` (the channel axis inside)."""
    src = node.inputs[0].type.shape
    if math.prod(src[start:lay.axis]) != 1:
        raise Blocked(f"{node.op} %{node.name} merges axes before the channel axis {lay.axis} into it")
    return lay.scaled(start, math.prod(src[lay.axis + 1:]))


def _flatten(an: ChannelAnalysis, node: Node, lays: list[Layout | None]) -> Layout:
    lay = lays[0]
    assert lay is not None
    rank = node.inputs[0].type.rank
    f = node.attrs.get("axis", 1)
    f = f + rank if f < 0 else f
    if f > lay.axis:
        raise Blocked(f"flatten %{node.name} (axis {f}) folds the channel axis {lay.axis} into the rows")
    if f == 0:
        raise Blocked(f"flatten %{node.name} (axis 0) folds the batch into the channel axis")
    return _merge_trailing(node, lay, f)


def _reshape(an: ChannelAnalysis, node: Node, lays: list[Layout | None]) -> Layout:
    lay = lays[0]
    assert lay is not None
    src, dst = node.inputs[0].type.shape, node.output.type.shape
    a = lay.axis
    if dst[:a + 1] == src[:a + 1]:
        out = Layout(a, lay.pieces, lay.dead)
    elif dst[:a] == src[:a] and len(dst) == a + 1:
        out = _merge_trailing(node, lay, a)
    else:
        raise Blocked(f"reshape %{node.name} {list(src)} -> {list(dst)} splits or moves the channel axis {a}")
    an.reshapes.append((node, out.axis))
    return out


def _concat(an: ChannelAnalysis, node: Node, lays: list[Layout | None]) -> Layout:
    rank = node.output.type.rank
    axis = node.attrs["axis"] % rank
    _, lay = _first(lays)
    if lay.axis != axis:
        keys = {x.shape_key() if x is not None else None for x in lays}
        if len(keys) != 1:
            raise Blocked(f"concat %{node.name} along axis {axis} joins inputs whose channels (axis {lay.axis}) "
                          f"do not line up")
        for x in lays[1:]:
            assert x is not None
            for a, b in zip(lay.pieces, x.pieces):
                if a.group is not None and b.group is not None:
                    an.ties.add_edge(a.group, b.group)
        deads = [x.dead for x in lays if x is not None]
        same = all(d is not None and np.array_equal(d, deads[0], equal_nan=True) for d in deads)
        return Layout(lay.axis, lay.pieces, deads[0] if same else None)
    pieces, deads, base = [], [], 0
    for v, x in zip(node.inputs, lays):
        size = v.type.shape[axis]
        if x is None:
            pieces.append(Piece(None, base, size, 1))
            deads.append(np.full(size, np.nan))
        else:
            pieces += [Piece(p.group, p.offset + base, p.count, p.inner) for p in x.pieces]
            deads.append(x.dead if x.dead is not None else np.full(size, np.nan))
        base += size
    return Layout(axis, tuple(pieces), np.concatenate(deads))


def _slice(an: ChannelAnalysis, node: Node, lays: list[Layout | None]) -> Layout:
    lay = lays[0]
    assert lay is not None
    rank = node.inputs[0].type.rank
    if lay.axis in {a % rank for a in node.attrs["axes"]}:
        raise Blocked(f"slice %{node.name} cuts along the channel axis {lay.axis}")
    return Layout(lay.axis, lay.pieces, lay.dead)


def _matrix_consumer(an: ChannelAnalysis, node: Node, lays: list[Layout | None]) -> Layout | None:
    lay = lays[0]
    if lay is None or any(x is not None for x in lays[1:]):
        raise Blocked(f"{node.op} %{node.name} reads the channels as its weight or bias")
    if node.inputs[1].data is None:
        raise Blocked(f"{node.op} %{node.name} has a computed weight")
    if node.op == "linear":
        if lay.axis != node.inputs[0].type.rank - 1:
            raise Blocked(f"linear %{node.name} reduces the last axis, but the channels run along axis {lay.axis}")
    elif lay.axis != 1 or any(p.inner != 1 for p in lay.pieces) or node.attrs.get("groups", 1) != 1:
        raise Blocked(f"conv2d %{node.name} (groups={node.attrs.get('groups', 1)}) cannot drop input channels "
                      f"along axis {lay.axis}")
    an.consumers.append(ConsumerEdit(node, lay))
    return None


LAYOUT_RULES: dict[str, Rule] = {
    **{op: _unary for op in UNARY_OPS},
    **{op: _binary for op in BINARY_OPS},
    "batchnorm": _batchnorm,
    "layernorm": _normalize,
    "softmax": _normalize,
    "maxpool2d": _pool,
    "avgpool2d": _pool,
    "global-avgpool": _pool,
    "reduce-sum": _reduce,
    "reduce-mean": _reduce,
    "reduce-max": _reduce,
    "transpose": _transpose,
    "flatten": _flatten,
    "reshape": _reshape,
    "concat": _concat,
    "slice": _slice,
    "linear": _matrix_consumer,
    "conv2d": _matrix_consumer,
}
"""How each op passes a channel layout on (its output layout), records edits, or raises Blocked."""


def is_producer(node: Node, readers: dict[int, int]) -> str | None:
    """None when `node` can lose output channels, else why not."""
    if node.op not in PRODUCER_OPS:
        return f"{node.op} is not a linear or conv2d"
    w = node.inputs[1]
    if w.data is None:
        return "its weight is not a constant"
    if w.type.quant is not None or not w.type.dtype.is_float:
        return f"@{w.name} is quantized or not float"
    if readers.get(id(w), 0) > 1 or (len(node.inputs) > 2 and readers.get(id(node.inputs[2]), 0) > 1):
        return f"@{w.name} or its bias is shared with other readers"
    if len(node.inputs) > 2 and node.inputs[2].data is None:
        return "its bias is computed"
    if node.op == "conv2d" and node.attrs.get("groups", 1) != 1:
        return f"grouped conv (groups={node.attrs['groups']})"
    if w.type.shape[0] < 2:
        return "it has one output channel"
    return None


def analyze_channels(graph: Graph, candidates: Callable[[Node], str | None]) -> ChannelAnalysis:
    """Follow every candidate producer's output channels through `graph` (see the module docstring).

    `candidates(node)` returns None for a node whose output channels may be removed, else why not.
    """
    readers: dict[int, int] = {}
    for n in graph.nodes:
        for v in n.inputs:
            readers[id(v)] = readers.get(id(v), 0) + 1
    an = ChannelAnalysis([], nx.Graph())
    for node in graph.nodes:
        lays = [an.layouts.get(id(v)) for v in node.inputs]
        out: Layout | None = None
        if any(x is not None for x in lays):
            rule = LAYOUT_RULES.get(node.op)
            try:
                if rule is None:
                    hint = " (run prune-channels before fuse)" if node.op == "fused" else ""
                    raise Blocked(f"{node.op} %{node.name} reads the channels{hint}")
                out = rule(an, node, lays)
            except Blocked as e:
                _block(an, lays, str(e))
        if node.op in PRODUCER_OPS and candidates(node) is None and is_producer(node, readers) is None:
            gid = len(an.producers)
            an.producers.append(node)
            an.ties.add_node(gid)
            c = node.inputs[1].type.shape[0]
            axis = node.output.type.rank - 1 if node.op == "linear" else 1
            out = Layout(axis, (Piece(gid, 0, c, 1),), np.zeros(c))
        if out is not None and len(node.outputs) == 1:
            an.layouts[id(node.output)] = out
    for v in graph.outputs:
        lay = an.layouts.get(id(v))
        if lay is not None:
            _block(an, [lay], f"%{v.name} is a graph output")
    return an
