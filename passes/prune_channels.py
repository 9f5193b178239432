"""prune-channels: remove the lowest-norm output channels of linear / conv2d layers and shrink every reader."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.sparsity import gemm_view
from .base import Pass, PassContext, PassResult, register_pass
from .channel_deps import ChannelAnalysis, ConsumerEdit, analyze_channels
from .graph_edit import ConstantEdits, retype
from .prune import split_names

CRITERIA = ("l1", "l2")


def channel_scores(node: Node, criterion: str) -> np.ndarray:
    """Per output channel of `node`'s weight, the L1 or L2 norm of its row of the GEMM view (float64)."""
    rows = gemm_view(node.inputs[1].data, node.op)[0].astype(np.float64)
    return np.abs(rows).sum(axis=1) if criterion == "l1" else np.sqrt(np.square(rows).sum(axis=1))


def group_scores(nodes: list[Node], criterion: str) -> np.ndarray:
    """Scores of a tied group: L1 norms add, L2 norms combine as the root of the summed squares."""
    s = [channel_scores(n, criterion) for n in nodes]
    return np.sum(s, axis=0) if criterion == "l1" else np.sqrt(np.sum(np.square(s), axis=0))


@dataclass
class _Plan:
    """The channels each producer keeps, and what the report says."""

    keep: dict[int, np.ndarray]
    done: list[str]
    skipped: list[str]


@register_pass
class PruneChannels(Pass):
    """Removes whole output channels (neurons, filters) of linear and conv2d layers; the graph gets smaller.

    Options: `sparsity` (fraction of each group's channels removed, rounded half up, at least one
    kept), `criterion` (`l1` or `l2` norm of the channel's weight row), `skip` (producer names,
    globs, joined by `+`). Every reader shrinks with it (see passes/channel_deps.py): the bias,
    a following batchnorm or per-channel affine, elementwise activations, pooling, transposes,
    flatten / reshape (a conv's channel becomes a block of H*W features), concats, and the next
    linear's input columns or conv's input channels. Producers tied by a residual add or a concat
    along another axis lose the same channels, chosen by their combined norm; a group that reaches
    a graph output, a layernorm or softmax over the channel axis, a residual from the input, a
    fused region or any op without a rule is left whole, and the report says why.

    Removing a channel drops what it fed forward, which equals zeroing its weight row and bias
    only where the channel would then be 0. Where it would be a nonzero constant c (after a
    batchnorm, a sigmoid, an added constant), c is folded into the next layer's bias (W[:, j] c
    for a linear; sum(W[o, j]) c for an unpadded conv), so that the pruned graph computes what the
    masked graph (the original with those weight rows and biases zeroed) computes, up to float
    reassociation. A padded conv is off at the border there, and a channel that would not be
    constant (after a layernorm over another axis) is simply dropped; the report says which.
    """

    name = "prune-channels"
    exact = False
    tolerance = (0.0, float(np.finfo(np.float32).max))  # no input-independent elementwise bound

    sparsity: float = 0.5
    criterion: Literal["l1", "l2"] = "l2"
    skip: str = ""

    def __post_init__(self) -> None:
        """Check the options; errors name the option at fault."""
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"prune-channels: sparsity={self.sparsity} must be in [0, 1)")
        if self.criterion not in CRITERIA:
            raise ValueError(f"prune-channels: criterion={self.criterion!r} must be one of {', '.join(CRITERIA)}")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        """Choose channels per tied group, then rewrite producers, readers and types."""
        skip = split_names(self.skip)
        an = analyze_channels(graph, lambda n: "named in skip" if any(fnmatchcase(n.name, p) for p in skip) else None)
        plan = self._plan(an)
        before = graph.num_parameters()
        notes = self._apply(graph, an, plan.keep) if plan.keep else []
        parts = [f"removed channels in {len(plan.done)} group(s): " + "; ".join(plan.done) if plan.done
                 else "nothing pruned"]
        if plan.keep:
            parts.append(f"parameters {before} -> {graph.num_parameters()}")
        if plan.skipped:
            parts.append("kept whole: " + "; ".join(plan.skipped))
        parts += notes
        return PassResult(graph, bool(plan.keep), "; ".join(parts))

    def _plan(self, an: ChannelAnalysis) -> _Plan:
        plan = _Plan({}, [], [])
        for group in an.tied_groups():
            nodes = [an.producers[g] for g in group]
            names = "+".join(n.name for n in nodes)
            why = an.group_block_reasons(group)
            if why:
                plan.skipped.append(f"{names} ({why[0]})")
                continue
            scores = group_scores(nodes, self.criterion)
            c = scores.size
            k = min(c - 1, int(np.floor(self.sparsity * c + 0.5)))
            if k == 0:
                plan.skipped.append(f"{names} ({c} channels: none to remove at sparsity {self.sparsity})")
                continue
            drop = np.sort(np.argsort(scores, kind="stable")[:k])
            kept = np.setdiff1d(np.arange(c), drop)
            for g, n in zip(group, nodes):
                plan.keep[g] = kept
                n.meta["prune-channels"] = {"removed": [int(i) for i in drop], "channels": c,
                                            "tied": [m.name for m in nodes if m is not n]}
            tied = " (tied)" if len(nodes) > 1 else ""
            plan.done.append(f"{names}{tied} {c} -> {kept.size}")
        return plan

    def _apply(self, graph: Graph, an: ChannelAnalysis, keep: dict[int, np.ndarray]) -> list[str]:
        edits = ConstantEdits()
        notes: list[str] = []
        for s in an.slices:
            if s.layout.groups() & keep.keys():
                arr = edits.get(s.node, s.index)
                assert arr is not None
                edits.set(s.node, s.index, np.take(arr, s.layout.kept_indices(keep), axis=s.axis))
        for c in an.consumers:
            if c.layout.groups() & keep.keys():
                notes += _shrink_consumer(c, keep, edits)
        for g, kept in keep.items():
            node = an.producers[g]
            for i in range(1, len(node.inputs)):
                arr = edits.get(node, i)
                assert arr is not None
                edits.set(node, i, np.take(arr, kept, axis=0))
        edits.apply(graph)
        for node, axis in an.reshapes:
            lay = an.layouts[id(node.inputs[0])]
            if lay.groups() & keep.keys():
                shape = list(node.attrs["shape"])
                if shape[axis] != -1:
                    shape[axis] = lay.kept_indices(keep).size * _axis_factor(node, lay.axis, axis)
                node.attrs["shape"] = tuple(shape)
        retype(graph)
        return notes


def _axis_factor(node: Node, in_axis: int, out_axis: int) -> int:
    """How many output elements along `out_axis` each input index along `in_axis` spans (1 or the merged tail)."""
    src, dst = node.inputs[0].type.shape, node.output.type.shape
    return dst[out_axis] // src[in_axis]


def _shrink_consumer(c: ConsumerEdit, keep: dict[int, np.ndarray], edits: ConstantEdits) -> list[str]:
    """Drop a linear's input columns or a conv's input channels, folding removed constants into its bias."""
    node, lay = c.node, c.layout
    w = edits.get(node, 1)
    assert w is not None
    idx = lay.kept_indices(keep)
    gone = np.setdiff1d(np.arange(w.shape[1]), idx)
    notes = []
    if lay.dead is None or np.isnan(lay.dead[gone]).any():
        notes.append(f"{node.name}: the removed inputs would not be constant in the masked graph; dropped as they are")
    else:
        d = lay.dead[gone]
        if np.any(d != 0):
            cols = np.take(w, gone, axis=1).astype(np.float64)
            fold = cols @ d if node.op == "linear" else cols.sum(axis=(2, 3)) @ d
            bias = edits.get(node, 2)
            base = np.zeros(w.shape[0]) if bias is None else bias.astype(np.float64)
            edits.set(node, 2, (base + fold).astype(w.dtype))
            if node.op == "conv2d" and any(node.attrs.get("pads", ())):
                notes.append(f"{node.name}: removed channels' constants folded into the bias; exact away from "
                             f"the padded border only")
    edits.set(node, 1, np.take(w, idx, axis=1))
    return notes
