"""estimate(graph, target): every node priced, totals under the graph's schedule and early exits."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from ...ir.exits import exit_segments, has_exits
from ...ir.graph import Graph, Node
from .loader import load_target
from .model import NodeCost, node_cost, weight_level
from .precision import storage_bits
from .rules import Work
from .table import CostTable, CostTotals
from .target import Target

STREAM_KEY = "stream"
"""node.meta key a scheduling pass sets to the parallel stream (an int) a node is issued on."""

EXIT_SEGMENT_KEY = "exit_segment"
"""node.meta key of the early-exit segment a node belongs to: 0 always runs, k runs once exits < k missed."""

EXIT_PROBABILITY_KEY = "exit_probability"
"""node.meta key (on any node of segment k) of the probability of leaving at exit k once it is reached."""


def graph_weight_bytes(graph: Graph, target: Target) -> int:
    """Bytes of the graph's constants as stored on `target`."""
    return int(sum(v.type.numel * storage_bits(v.type, target) / 8 for v in graph.constants))


def _schedule(graph: Graph, rows: list[NodeCost], target: Target) -> tuple[float, str]:
    """Latency under the streams in node.meta (a list schedule), or the serial sum when there are none.

    The list schedule starts each node when its inputs are ready and its stream is free. Streams
    share one device, so the result is never below the time the whole work needs at full
    utilization (sum over nodes of max(2*MACs / peak, DRAM bytes / bandwidth)).
    """
    serial = sum(r.latency_s for r in rows)
    streams = {id(n): n.meta.get(STREAM_KEY) for n in graph.nodes}
    if all(s is None for s in streams.values()):
        return serial, "serial"
    ready: dict[int, float] = {}
    free: dict[object, float] = {}
    makespan = 0.0
    for n, r in zip(graph.nodes, rows):
        s = streams[id(n)] if streams[id(n)] is not None else 0
        start = max([free.get(s, 0.0)] + [ready.get(id(v), 0.0) for v in n.inputs])
        finish = start + r.latency_s
        free[s] = finish
        for v in n.outputs:
            ready[id(v)] = finish
        makespan = max(makespan, finish)
    ideal = 0.0
    for r in rows:
        peak = target.peak.get(r.precision) or max(target.peak.values())
        ideal += max(2 * r.macs / peak, r.dram_bytes / target.dram.bandwidth)
    n_streams = len({s if s is not None else 0 for s in streams.values()})
    return max(makespan, ideal), f"parallel ({n_streams} streams)"


def _segments(graph: Graph) -> list[int]:
    """Each node's early-exit segment: from the graph's `exit` nodes when it has some, else from node.meta."""
    if has_exits(graph):
        by_name = exit_segments(graph, write=False)
        return [by_name[n.name] for n in graph.nodes]
    return [int(n.meta.get(EXIT_SEGMENT_KEY, 0)) for n in graph.nodes]


def _exit_probabilities(graph: Graph, segments: list[int], given: Sequence[float] | None) -> list[float]:
    if given is not None:
        probs = [float(p) for p in given]
    else:
        found: dict[int, float] = {}
        for n, k in zip(graph.nodes, segments):
            if EXIT_PROBABILITY_KEY in n.meta:
                found[k] = float(n.meta[EXIT_PROBABILITY_KEY])
        probs = [found.get(k, 0.0) for k in range(max(found) + 1)] if found else []
    bad = [p for p in probs if not 0.0 <= p <= 1.0]
    if bad:
        raise ValueError(f"graph {graph.name!r}: exit probabilities must lie in [0, 1], got {bad}")
    return probs


def _expected(segments: list[int], rows: list[NodeCost], probs: list[float]) -> tuple[float, float]:
    """Expected latency and energy when segment k runs only if exits 0..k-1 were not taken."""
    seg_lat: dict[int, float] = {}
    seg_e: dict[int, float] = {}
    for k, r in zip(segments, rows):
        seg_lat[k] = seg_lat.get(k, 0.0) + r.latency_s
        seg_e[k] = seg_e.get(k, 0.0) + r.energy_j
    reach, lat, energy = 1.0, 0.0, 0.0
    for k in range(max(seg_lat, default=0) + 1):
        lat += reach * seg_lat.get(k, 0.0)
        energy += reach * seg_e.get(k, 0.0)
        if k < len(probs):
            reach *= 1.0 - probs[k]
    return lat, energy


def estimate(graph: Graph, target: str | os.PathLike | Target, *,
             exit_probabilities: Sequence[float] | None = None,
             rules: dict[str, Callable[[Node], Work]] | None = None) -> CostTable:
    """Predict the cost of every node of `graph` on `target` and the totals.

    `target` is a name (see `list_targets()`), a path to a TOML file, or a Target.
    A graph with `exit` nodes is cut into the segments `ir.exits.exit_segments` finds; other graphs may mark
    nodes with `node.meta["exit_segment"]`. The probability of leaving at exit k comes from
    `exit_probabilities[k]` or `node.meta["exit_probability"]`.
    """
    t = load_target(target)
    wlevel = weight_level(t, graph_weight_bytes(graph, t))
    rows = [node_cost(n, t, wlevel=wlevel, rules=rules) for n in graph.nodes]
    latency, schedule = _schedule(graph, rows, t)
    segments = _segments(graph)
    probs = _exit_probabilities(graph, segments, exit_probabilities)
    energy = sum(r.energy_j for r in rows)
    exp_lat, exp_e = _expected(segments, rows, probs) if probs else (latency, energy)
    levels = [m.name for m in t.memory]
    bounds: dict[str, int] = {}
    for r in rows:
        bounds[r.bound] = bounds.get(r.bound, 0) + 1
    totals = CostTotals(
        latency_s=latency, serial_latency_s=sum(r.latency_s for r in rows), expected_latency_s=exp_lat,
        energy_j=energy, expected_energy_j=exp_e, macs=sum(r.macs for r in rows),
        flops=sum(r.flops for r in rows), bytes={lv: sum(r.bytes.get(lv, 0) for r in rows) for lv in levels},
        schedule=schedule, bounds=bounds, exit_probabilities=probs)
    return CostTable(graph.name, t.name, rows, totals)
