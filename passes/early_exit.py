"""early-exit: heads (pool + linear) and exits inserted at intermediate values, fitted and thresholded on data."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from typing import Any, Literal

import numpy as np

from ..backends.cost.estimate import EXIT_PROBABILITY_KEY
from ..ir.dtypes import f32
from ..ir.exits import exit_nodes, exit_segments, has_exits
from ..ir.graph import Graph, Node, Value
from ..ir.ops.registry import get_op
from ..ir.types import TensorType
from .base import Pass, PassContext, PassResult, register_pass
from .early_exit_fit import (
    CRITERIA,
    HEAD_BOUND,
    HEAD_FITTERS,
    PATIENCE,
    THRESHOLD_CRITERIA,
    ExitPlan,
    LinearHead,
    Quality,
    choose_thresholds,
    evaluate_thresholds,
    fit_classifier,
    fit_ridge_regression,
    pool_rows,
)

HEAD_ONLY = ("entropy", 0.0)
"""(criterion, threshold) of an exit that only lends its head to later patience / cosine exits: an entropy of 0
means a one-hot f32 softmax, which a head clipped to +-HEAD_BOUND cannot produce, so it never fires."""

BLOCK_NAME = re.compile(r"^(?P<prefix>[A-Za-z_]+)(?P<index>\d+)\.")
"""Node names of a repeated structure: `layer3.ffn_out`, `block0.out` (prefix, block number, dot)."""


class EarlyExitError(ValueError):
    """The early-exit pass cannot run as asked (no calibration data, an unknown value, a head of the wrong type...)."""


@dataclass(frozen=True)
class ExitSpec:
    """One exit to insert: the value its head reads, the fitted head, and its criterion."""

    at: str
    head: LinearHead
    criterion: str
    threshold: float
    patience: int = 1
    probability: float = 0.0  # of leaving here once reached (node.meta["exit_probability"])


# ---- where exits go ---------------------------------------------------------------------------
def block_outputs(graph: Graph) -> list[str]:
    """The value each block of the graph's longest repeated structure ends with (`layer0.` ... `layer5.`),
    in block order: the last node, in graph order, whose name has that block's prefix."""
    last: dict[str, dict[int, Node]] = {}
    for n in graph.nodes:
        m = BLOCK_NAME.match(n.name)
        if m:
            last.setdefault(m["prefix"], {})[int(m["index"])] = n
    if not last:
        return []
    blocks = max(last.values(), key=len)
    return [blocks[i].outputs[0].name for i in sorted(blocks)] if len(blocks) > 1 else []


def exit_points(graph: Graph, at: str = "", every: int = 0) -> list[str]:
    """Value names exits go after, in graph order: those matching `at` (names or globs joined by '+' or ','), or
    block outputs (`block_outputs`); with `every=k`, every k-th of them; never the last block's output."""
    order = {v.name: i for i, v in enumerate(graph.values())}
    if at:
        pats = [p.strip() for p in re.split(r"[+,]", at) if p.strip()]
        names = [v.name for v in graph.values() if v.producer is not None and any(fnmatch(v.name, p) for p in pats)]
        missing = [p for p in pats if not any(fnmatch(n, p) for n in names)]
        if missing:
            raise EarlyExitError(f"early-exit: at={at!r}: no node output of graph {graph.name!r} matches "
                                 f"{', '.join(missing)}")
    else:
        names = block_outputs(graph)
        if not names:
            raise EarlyExitError(f"early-exit: graph {graph.name!r} has no repeated blocks (names like layer0.x, "
                                 "layer1.x); name the exit points with at=")
        names = names[:-1]
    if every > 0:
        names = [n for i, n in enumerate(names) if (i + 1) % every == 0]
    return sorted(set(names), key=order.__getitem__)


def final_value(graph: Graph, name: str = "") -> Value:
    """The value exit_select replaces: `name`, or the graph's only output (its input when that is a softmax,
    so that heads are logits and the softmax applies to whichever row is chosen)."""
    if name:
        try:
            return graph.value(name)
        except KeyError as e:
            raise EarlyExitError(f"early-exit: final={name!r}: {e.args[0]}") from None
    if len(graph.outputs) != 1:
        raise EarlyExitError(f"early-exit: graph {graph.name!r} has {len(graph.outputs)} outputs; name the one "
                             "exits predict with final=")
    out = graph.outputs[0]
    p = out.producer
    return p.inputs[0] if p is not None and p.op == "softmax" and p.inputs[0].type.rank == 2 else out


# ---- calibration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Activations:
    """Calibration activations: pooled features per exit point, the final value, labels if given."""

    features: dict[str, np.ndarray]
    final: np.ndarray
    labels: np.ndarray | None


def batch_chunks(graph: Graph, feed: Mapping[str, np.ndarray]) -> list[tuple[dict[str, np.ndarray], int]]:
    """A feed of any number of rows cut into feeds of the graph's batch (axis 0 of every input), the last one
    padded by repeating its last row; each with the number of real rows it holds."""
    batch = {v.name: v.type.shape[0] for v in graph.inputs if v.type.rank >= 1}
    rows = {len(a) for k, a in feed.items() if k in batch}
    if len(rows) != 1 or len(set(batch.values())) != 1:
        shapes = ", ".join(f"{k} {list(np.shape(a))}" for k, a in feed.items())
        raise EarlyExitError(f"early-exit: a calibration feed needs the same number of rows in every input, "
                             f"got {shapes}")
    (n,), (b,) = rows, set(batch.values())
    out = []
    for start in range(0, n, b):
        part = {k: a[start:start + b] for k, a in feed.items()}
        real = len(next(iter(part.values())))
        if real < b:
            part = {k: np.concatenate([a, np.repeat(a[-1:], b - real, axis=0)]) for k, a in part.items()}
        out.append((part, real))
    return out


def collect_activations(graph: Graph, points: Sequence[str], final: str, feeds: Sequence[Mapping[str, np.ndarray]],
                        label_key: str = "labels", mask: str = "") -> Activations:
    """Run the reference backend on each feed (in chunks of the graph's batch) and keep the pooled `points`,
    `final` and the labels under `label_key` (when every feed has them); `mask` names the input pooling
    [B, S, E] values uses."""
    from ..backends import reference

    names = {v.name for v in graph.inputs}
    feats: dict[str, list[np.ndarray]] = {p: [] for p in points}
    finals, labels = [], []
    for i, feed in enumerate(feeds):
        missing = names - set(feed)
        if missing:
            raise EarlyExitError(f"early-exit: calibration feed {i} lacks input(s) {', '.join(sorted(missing))}")
        for chunk, rows in batch_chunks(graph, {k: np.asarray(feed[k]) for k in names}):
            vals = reference.run(graph, chunk, keep=True)
            m = chunk[mask][:rows] if mask else None
            for p in points:
                feats[p].append(pool_rows(vals[p][:rows], m))
            finals.append(np.asarray(vals[final][:rows]).reshape(rows, -1))
        if label_key in feed:
            labels.append(np.asarray(feed[label_key]).reshape(-1))
    if labels and len(labels) != len(feeds):
        raise EarlyExitError(f"early-exit: only {len(labels)} of {len(feeds)} calibration feeds have {label_key!r}")
    return Activations({p: np.concatenate(f) for p, f in feats.items()}, np.concatenate(finals),
                       np.concatenate(labels).astype(np.int64) if labels else None)


def split_rows(acts: Activations, holdout: float) -> tuple[Activations, Activations]:
    """(rows that fit the heads, the last `holdout` fraction of rows, which choose thresholds); with too few
    rows to split (or holdout=0) both are all rows."""
    n = len(acts.final)
    held = int(round(n * holdout))
    if held < 1 or held >= n:
        return acts, acts

    def part(rows: slice) -> Activations:
        return Activations({p: f[rows] for p, f in acts.features.items()}, acts.final[rows],
                           None if acts.labels is None else acts.labels[rows])

    return part(slice(0, n - held)), part(slice(n - held, n))


# ---- the graph edit -------------------------------------------------------------------------
class _Emitter:
    """Inserts nodes one after another at a position of the graph's node list."""

    def __init__(self, graph: Graph, pos: int) -> None:
        self.graph, self.pos = graph, pos

    def const(self, array: np.ndarray, name: str) -> Value:
        a = np.ascontiguousarray(array, np.float32)
        return Value(self.graph.fresh_name(name), TensorType(a.shape, f32), a)

    def op(self, op: str, inputs: list[Value], name: str, **attrs: Any) -> list[Value]:
        opdef = get_op(op)
        attrs = opdef.normalize_attrs(attrs)
        types = opdef.infer([v.type for v in inputs], attrs)
        base = self.graph.fresh_name(name)
        outs = [Value(base if i == 0 else self.graph.fresh_name(f"{base}.{i}"), t) for i, t in enumerate(types)]
        self.graph.nodes.insert(self.pos, Node(op, inputs, attrs, outs))
        self.pos += 1
        return outs


def _pool(e: _Emitter, x: Value, prefix: str, mask: Value | None) -> Value:
    """Nodes pooling x to [B, F] as `pool_rows` does."""
    rank = x.type.rank
    if rank == 2:
        return x
    if rank == 3 and mask is not None:
        seq = x.type.shape[1]
        (m3,) = e.op("reshape", [mask], f"{prefix}.mask", shape=(-1, seq, 1))
        (xm,) = e.op("mul", [x, m3], f"{prefix}.masked")
        (s,) = e.op("reduce-sum", [xm], f"{prefix}.sum", axes=(1,), keepdims=False)
        (c,) = e.op("reduce-sum", [mask], f"{prefix}.count", axes=(1,), keepdims=True)
        (c1,) = e.op("maximum", [c, e.const(np.float32(1.0), f"{prefix}.one")], f"{prefix}.count_safe")
        return e.op("div", [s, c1], f"{prefix}.pool")[0]
    if rank in (3, 4):
        axes = (1,) if rank == 3 else (2, 3)
        return e.op("reduce-mean", [x], f"{prefix}.pool", axes=axes, keepdims=False)[0]
    raise EarlyExitError(f"early-exit: cannot pool %{x.name} {x.type} (expected rank 2, 3 or 4)")


def insert_exits(graph: Graph, specs: Sequence[ExitSpec], final: str = "", mask: str = "") -> Graph:
    """A copy of `graph` with, after each spec's value, a head (pool + linear) and an `exit`, and one
    `exit_select` replacing `final` (see `final_value`); segments and exit probabilities in node.meta."""
    if not specs:
        raise EarlyExitError("early-exit: no exits to insert")
    g = graph.copy()
    if has_exits(g):
        raise EarlyExitError(f"early-exit: graph {g.name!r} already has exits")
    fin = final_value(g, final)
    if fin.producer is None:
        raise EarlyExitError(f"early-exit: final %{fin.name} is not computed by a node")
    mask_v = next((v for v in g.inputs if v.name == mask), None) if mask else None
    if mask and mask_v is None:
        raise EarlyExitError(f"early-exit: mask={mask!r} is not an input of graph {g.name!r}")
    heads: list[Value] = []
    exits: list[Node] = []
    for k, s in enumerate(specs):
        x = g.value(s.at)
        if x.producer is None:
            raise EarlyExitError(f"early-exit: exit {k} at %{s.at} is not computed by a node")
        e = _Emitter(g, g.nodes.index(x.producer) + 1)
        pooled = _pool(e, x, f"exit{k}", mask_v)
        (logits,) = e.op("linear", [pooled, e.const(s.head.weight, f"exit{k}.weight"),
                                    e.const(s.head.bias, f"exit{k}.bias")], f"exit{k}.linear")
        (head,) = e.op("clip", [logits], f"exit{k}.head", min=-HEAD_BOUND, max=HEAD_BOUND)
        if head.type != fin.type:
            raise EarlyExitError(f"early-exit: the head at %{s.at} gives {head.type} but final %{fin.name} is "
                                 f"{fin.type}; every head must have final's type")
        earlier = heads[len(heads) - (s.patience - 1):] if s.criterion == PATIENCE and s.patience > 1 else []
        if s.criterion == "cosine":
            earlier = heads[-1:]
        (fire,) = e.op("exit", [head, *earlier], f"exit{k}.fire", index=k, criterion=s.criterion,
                       threshold=float(s.threshold), patience=s.patience)
        fire.producer.meta[EXIT_PROBABILITY_KEY] = float(s.probability)  # type: ignore[union-attr]
        heads.append(head)
        exits.append(fire.producer)  # type: ignore[arg-type]
    readers = [(n, i) for n in g.nodes for i, v in enumerate(n.inputs) if v is fin]
    outputs = [i for i, v in enumerate(g.outputs) if v is fin]
    name = fin.name
    if outputs:  # the graph output keeps its name: the value without exits is renamed
        fin.name = g.fresh_name(f"{name}.full")
    late = [x.name for x in exits if g.nodes.index(x) > g.nodes.index(fin.producer)]
    if late:
        raise EarlyExitError(f"early-exit: {', '.join(late)} come after final %{name}: exits go before it")
    e = _Emitter(g, g.nodes.index(fin.producer) + 1)
    out, _taken = e.op("exit_select", [fin, *[v for h, x in zip(heads, exits) for v in (h, x.outputs[0])]],
                       name if outputs else f"{name}.exit")
    for n, i in readers:
        n.inputs[i] = out
    for i in outputs:
        g.outputs[i] = out
    exit_segments(g)
    return g


@dataclass(frozen=True)
class FittedExits:
    """What the pass learned from calibration: exit points, heads, the heads' and final outputs and labels on
    the held-out rows (as the graph computes them), and the threshold plan."""

    points: list[str]
    heads: list[LinearHead]
    outputs: list[np.ndarray]
    final: np.ndarray
    labels: np.ndarray | None
    quality: Quality
    plan: ExitPlan


# ---- the pass -------------------------------------------------------------------------------
@register_pass
class EarlyExit(Pass):
    """Early exits: at each exit point (at= names or globs joined by '+'; every=k: after every k-th block of the
    graph's repeated structure) a head pools the value to [B, F] (mean over the sequence, masked by the input
    `mask` when given, or over H and W) and a linear probe, clipped to +-HEAD_BOUND, predicts `final` (the
    output's logits, or the value named final=). The probes are fitted on `ctx.calibration` (feeds of the
    graph's inputs, run on the reference backend in chunks of the graph's batch; labels under the key
    `labels` in each feed) less its last `holdout` fraction of rows: ridge least squares onto one-hot labels
    (onto the final arg-max without labels) with a temperature fitted on the held-out rows, or
    method=logistic; for criterion=cosine, ridge onto the final value. On the held-out rows each exit's
    threshold is chosen (early_exit_fit.choose_thresholds) so that quality (accuracy with labels, agreement
    with the final arg-max without, cosine to the final value for cosine) over all inputs stays within
    `budget` (points; cosine for cosine) of the model without exits; threshold=T fixes every threshold
    instead. Exits no held-out input may take are left out, except those whose heads later patience / cosine
    exits read, which stay head-only (HEAD_ONLY).

    The graph gets one `exit_select` replacing `final`; node.meta holds each node's segment and each exit's
    probability of being taken once reached, for the cost model. The report gives per exit the threshold,
    the fraction of calibration inputs leaving there and their quality.

    Not exact and with no elementwise bound: a row that leaves takes its head's output. Its quality bound is
    the budget, on the calibration data; NumericCheck needs bounds={"early-exit": ...} unless nothing fires.
    """

    name = "early-exit"
    exact = False
    at: str = ""
    every: int = 0
    criterion: Literal["max-prob", "entropy", "margin", "patience", "cosine"] = "max-prob"
    budget: float = 0.5
    quality: Literal["auto", "accuracy", "agreement", "cosine"] = "auto"
    threshold: float = -1.0
    patience: int = 0
    method: Literal["ridge", "logistic"] = "ridge"
    holdout: float = 0.5
    labels: str = "labels"
    final: str = ""
    mask: str = ""

    def __post_init__(self) -> None:
        """Check the options; errors name the option at fault."""
        if self.criterion not in CRITERIA:
            raise ValueError(f"early-exit: criterion={self.criterion!r} is not one of {', '.join(CRITERIA)}")
        if self.method not in HEAD_FITTERS:
            raise ValueError(f"early-exit: method={self.method!r} is not one of {', '.join(HEAD_FITTERS)}")
        if self.budget < 0:
            raise ValueError(f"early-exit: budget={self.budget} must be >= 0")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"early-exit: holdout={self.holdout} must lie in [0, 1)")
        if self.every < 0 or self.patience < 0:
            raise ValueError(f"early-exit: every={self.every} and patience={self.patience} must be >= 0")
        if self.patience and self.criterion != PATIENCE:
            raise ValueError(f"early-exit: patience={self.patience} is for criterion=patience")
        if self.threshold >= 0 and self.criterion == PATIENCE:
            raise ValueError("early-exit: criterion=patience has no threshold; give patience= instead")
        if self.criterion == "cosine" and self.quality not in ("cosine", "auto"):
            raise ValueError(f"early-exit: criterion=cosine goes with quality=cosine, not {self.quality}")
        if self.quality == "cosine" and self.criterion != "cosine":
            raise ValueError(f"early-exit: quality=cosine needs regression heads (criterion=cosine), "
                             f"not criterion={self.criterion}")

    def _quality(self, labels: np.ndarray | None) -> Quality:
        if self.criterion == "cosine":
            return Quality.COSINE
        if self.quality == "auto":
            return Quality.ACCURACY if labels is not None else Quality.AGREEMENT
        if self.quality == "accuracy" and labels is None:
            raise EarlyExitError(f"early-exit: quality=accuracy needs labels under {self.labels!r} in every "
                                 "calibration feed")
        return Quality(self.quality)

    def fit(self, graph: Graph, feeds: Sequence[Mapping[str, np.ndarray]]) -> FittedExits:
        """Exit points, their fitted heads, their held-out outputs and the threshold plan on the calibration
        `feeds`."""
        if not feeds:
            raise EarlyExitError(f"pass {self}: needs calibration data: PassContext(calibration=[feed, ...]), "
                                 f"each feed the graph's inputs (and labels under {self.labels!r})")
        points = exit_points(graph, self.at, self.every)
        if not points:
            raise EarlyExitError(f"pass {self}: no exit points in graph {graph.name!r}")
        fin = final_value(graph, self.final)
        acts, held = split_rows(collect_activations(graph, points, fin.name, feeds, self.labels, self.mask),
                                self.holdout)
        quality = self._quality(acts.labels)
        if quality is Quality.COSINE:
            heads = [fit_ridge_regression(acts.features[p], acts.final) for p in points]
        else:
            target = acts.labels if acts.labels is not None else np.argmax(acts.final, axis=1)
            held_target = held.labels if held.labels is not None else np.argmax(held.final, axis=1)
            heads = [fit_classifier(acts.features[p], target, acts.final.shape[1], self.method,
                                    (held.features[p], held_target)) for p in points]
        outs = self.head_outputs(graph, points, heads, feeds)
        if self.threshold >= 0:
            plan = evaluate_thresholds(outs, held.final, self.criterion, [self.threshold] * len(points), quality,
                                       held.labels, budget=self.budget)
        else:
            plan = choose_thresholds(outs, held.final, self.criterion, self.budget, quality, held.labels,
                                     self.patience)
        return FittedExits(points, heads, outs, held.final, held.labels, quality, plan)

    def head_outputs(self, graph: Graph, points: Sequence[str], heads: Sequence[LinearHead],
                     feeds: Sequence[Mapping[str, np.ndarray]]) -> list[np.ndarray]:
        """Each head's outputs on the held-out rows as the graph computes them: the heads are inserted with exits
        that never fire (HEAD_ONLY) and the graph is run again, so chosen thresholds hold for the graph."""
        probe = insert_exits(graph, [ExitSpec(p, h, *HEAD_ONLY) for p, h in zip(points, heads)], self.final, self.mask)
        names = [n.inputs[0].name for n in exit_nodes(probe)]
        acts = collect_activations(probe, names, final_value(probe, self.final).name, feeds, self.labels, self.mask)
        return [split_rows(acts, self.holdout)[1].features[n] for n in names]

    def specs(self, fitted: FittedExits, plan: ExitPlan | None = None) -> tuple[list[ExitSpec], list[str]]:
        """The exits to insert for `plan` (default: the fitted one), and a note per exit point left out or kept
        head-only."""
        points, heads, plan = fitted.points, fitted.heads, plan or fitted.plan
        specs, notes = [], []
        chained = self.criterion in (PATIENCE, "cosine")
        for p, h, c in zip(points, heads, plan.exits):
            rule = THRESHOLD_CRITERIA.get(self.criterion)
            never = rule is not None and c.threshold == rule.never
            blocked = self.criterion == PATIENCE and c.index + 1 < plan.patience
            if (never or blocked) and not chained:
                notes.append(f"no exit at %{p}: no calibration input may leave there within the budget")
                continue
            if never or blocked:
                notes.append(f"exit at %{p} is head-only ({HEAD_ONLY[0]} <= {HEAD_ONLY[1]:g}): later exits read "
                             "its head")
                specs.append(ExitSpec(p, h, HEAD_ONLY[0], HEAD_ONLY[1], 1, 0.0))
                continue
            patience = plan.patience if self.criterion == PATIENCE else 1
            thr = 0.0 if self.criterion == PATIENCE else c.threshold
            specs.append(ExitSpec(p, h, self.criterion, thr, patience, c.exit_probability))
        if chained and all(s.criterion == HEAD_ONLY[0] for s in specs):
            return [], notes
        return specs, notes

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        """Fit heads and thresholds on ctx.calibration and insert the exits."""
        fitted = self.fit(graph, ctx.calibration or [])
        points, plan = fitted.points, fitted.plan
        specs, notes = self.specs(fitted)
        lines = [f"at {p}: {line}" for p, line in zip(points, plan.report().splitlines())]
        lines += plan.report().splitlines()[len(points):] + notes
        if not specs:
            return PassResult(graph, changed=False, report="no exits inserted; " + "; ".join(lines))
        return PassResult(insert_exits(graph, specs, self.final, self.mask), changed=True, report="\n".join(lines))
