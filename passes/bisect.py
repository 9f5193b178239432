"""`bisect`: find the pass of a pipeline, and the node in its output, where results leave a tolerance.

The pipeline runs one pass at a time; after each pass the graph runs on the reference backend
and its outputs are compared with those of the original graph. At the first pass whose outputs
differ by more than `tol`, every value of that pass's output graph (in graph order) is compared
with the original graph's value of the same name: the first one that differs is named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..backends import reference  # the golden semantics (see docs/architecture.md, layering)
from ..ir.graph import Graph
from ..ir.text import format_name
from .base import Pass
from .pipeline import parse_pipeline, run_pipeline


@dataclass
class PassStep:
    """One pass of the bisection: how far the outputs moved from the original graph's after it ran."""

    index: int
    pass_name: str
    max_abs_diff: float
    within: bool
    error: str = ""  # the pass failed or its graph did not run: why


@dataclass
class BisectResult:
    """What `bisect` found: the steps it ran, the first pass beyond the tolerance and the first diverging node."""

    pipeline: str
    tol: float
    passes: int  # how many passes the pipeline has
    steps: list[PassStep] = field(default_factory=list)
    pass_name: str | None = None  # the first pass beyond `tol` (None: the whole pipeline stays within)
    pass_index: int | None = None  # its 1-based position in the pipeline
    node: str | None = None  # the first node of that pass's graph whose value diverges from the same-named original
    node_op: str | None = None
    node_diff: float | None = None  # max |difference| of that node's value
    compared: int = 0  # same-named values compared in that pass's graph

    @property
    def ok(self) -> bool:
        """True when every pass keeps the outputs within the tolerance."""
        return self.pass_name is None

    def __str__(self) -> str:
        lines = [f"bisect {self.pipeline!r}: {len(self.steps)} of {self.passes} passes run on the reference backend, "
                 f"tolerance {self.tol:g}"]
        width = max([len(s.pass_name) for s in self.steps] + [4])
        lines.append(f"  {'#':<4} {'pass':<{width}}  {'max |diff|':>10}  (outputs vs the original graph's)")
        for s in self.steps:
            verdict = "ok" if s.within else ("FAILED" if s.error else "BEYOND")
            lines.append(f"  #{s.index:<3} {s.pass_name:<{width}}  {_fmt(s.max_abs_diff):>10}  {verdict}"
                         + (f": {s.error}" if s.error else ""))
        if self.ok:
            lines.append("every pass keeps the outputs within the tolerance")
            return "\n".join(lines)
        lines.append(f"first pass beyond the tolerance: #{self.pass_index} {self.pass_name}")
        if self.node is not None:
            lines.append(f"first diverging node in its output: %{format_name(self.node)} ({self.node_op}), "
                         f"max |difference| {_fmt(self.node_diff)} ({self.compared} same-named values compared)")
        elif self.compared:
            lines.append(f"no same-named value diverges ({self.compared} compared): the difference is in values "
                         "the pass created or renamed")
        else:
            lines.append("no value of its output graph has a same-named, same-shaped value in the original graph")
        return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| over the elements (NaN matching NaN counts as equal); inf when the shapes differ."""
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    x, y = a.astype(np.float64), b.astype(np.float64)
    both_nan = np.isnan(x) & np.isnan(y)
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.where(both_nan | (x == y), 0.0, np.abs(x - y))  # x == y: equal infinities
    d = np.where(np.isnan(d), np.inf, d)  # NaN on one side only
    return float(d.max())


def _outputs(graph: Graph, env: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(env[v.name]) for v in graph.outputs]


def bisect(graph: Graph, pipeline: str | Sequence[Pass], inputs: Mapping[str, np.ndarray],
           tol: float = 1e-5) -> BisectResult:
    """Run `pipeline` on `graph` one pass at a time on the reference backend; name the first pass after which
    an output differs from the original graph's by more than `tol`, and the first node of that pass's output
    graph whose value differs from the original graph's same-named value."""
    passes = parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)
    text = pipeline if isinstance(pipeline, str) else ",".join(str(p) for p in passes)
    result = BisectResult(text, tol, len(passes))
    original = reference.run(graph, inputs, keep=True)
    want = _outputs(graph, original)
    g = graph
    for i, p in enumerate(passes, start=1):
        try:
            after = run_pipeline(g, [p])
            env = reference.run(after, inputs, keep=True)
        except Exception as e:  # noqa: BLE001 - a pass that breaks the graph is the culprit, reported with why
            result.steps.append(PassStep(i, str(p), float("inf"), False, f"{type(e).__name__}: {e}"))
            result.pass_name, result.pass_index = str(p), i
            return result
        got = _outputs(after, env)
        diff = max((max_abs_diff(a, b) for a, b in zip(want, got)), default=0.0)
        if len(got) != len(want):
            diff = float("inf")
        within = diff <= tol
        result.steps.append(PassStep(i, str(p), diff, within))
        if not within:
            result.pass_name, result.pass_index = str(p), i
            _first_diverging_node(after, env, original, tol, result)
            return result
        g = after
    return result


def _first_diverging_node(after: Graph, env: Mapping[str, np.ndarray], original: Mapping[str, np.ndarray],
                          tol: float, result: BisectResult) -> None:
    """Fill in the first node of `after` (graph order) whose value differs from the same-named original value."""
    for node in after.nodes:
        for v in node.outputs:
            if v.name not in original or v.name not in env or np.shape(original[v.name]) != v.type.shape:
                continue
            result.compared += 1
            d = max_abs_diff(np.asarray(original[v.name]), np.asarray(env[v.name]))
            if d > tol:
                result.node, result.node_op, result.node_diff = v.name, node.op, d
                return
