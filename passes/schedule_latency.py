"""A list schedule over a target's parallel units: critical path first, each node on the unit that finishes it first.

Each node's latency is the cost model's (`estimate`), as if the node had the chip to itself; the nodes
are taken ready-first by upward rank (their latency plus the longest path after them, as HEFT does,
with no transfer cost: the units share the device's memory), and each goes on the unit where it
finishes earliest (it starts when its inputs are ready and the unit is free). The node order becomes
the order the nodes were placed in, so `estimate`, which replays the streams in node order, finds the
same start times.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import networkx as nx

from ..backends.cost import STREAM_KEY, Target, estimate
from ..ir.graph import Graph


@dataclass
class LatencySchedule:
    """Node order (indices into the original `graph.nodes`), unit per node, and the schedule's times."""

    order: list[int]
    units: list[int]  # unit of each node, by original index
    finish: list[float]  # seconds, by original index
    makespan: float
    serial: float  # sum of the node latencies
    critical_path: float  # longest path: no number of units does better
    unit_count: int

    @property
    def units_used(self) -> int:
        """How many distinct units received a node."""
        return len(set(self.units))


def upward_ranks(graph: Graph, latency: list[float]) -> list[float]:
    """Per node, its latency plus the longest latency path from it to an output (HEFT's upward rank)."""
    g = graph.to_networkx()
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    rank = [0.0] * len(graph.nodes)
    for n in reversed(list(nx.topological_sort(g))):
        i = index[id(n)]
        rank[i] = latency[i] + max((rank[index[id(s)]] for s in g.successors(n)), default=0.0)
    return rank


def schedule_for_latency(graph: Graph, target: Target) -> LatencySchedule:
    """List-schedule `graph` over `target.parallel_units` units with the cost model's node latencies."""
    latency = [row.latency_s for row in estimate(graph, target).rows]
    rank = upward_ranks(graph, latency)
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    preds = [{index[id(v.producer)] for v in n.inputs if v.producer is not None and id(v.producer) in index}
             for n in graph.nodes]
    succs: list[list[int]] = [[] for _ in graph.nodes]
    for i, ps in enumerate(preds):
        for p in ps:
            succs[p].append(i)
    waiting = [len(p) for p in preds]
    ready = [(-rank[i], i) for i in range(len(graph.nodes)) if not preds[i]]
    heapq.heapify(ready)
    free = [0.0] * target.parallel_units
    units = [0] * len(graph.nodes)
    finish = [0.0] * len(graph.nodes)
    order: list[int] = []
    while ready:
        _, i = heapq.heappop(ready)
        inputs_ready = max((finish[p] for p in preds[i]), default=0.0)
        unit = min(range(len(free)), key=lambda u: (max(free[u], inputs_ready), u))
        finish[i] = max(free[unit], inputs_ready) + latency[i]
        free[unit] = finish[i]
        units[i] = unit
        order.append(i)
        for s in succs[i]:
            waiting[s] -= 1
            if waiting[s] == 0:
                heapq.heappush(ready, (-rank[s], s))
    return LatencySchedule(order, units, finish, max(finish, default=0.0), sum(latency), max(rank, default=0.0),
                           target.parallel_units)


def apply_streams(graph: Graph, schedule: LatencySchedule) -> None:
    """Reorder `graph.nodes` as placed and write each node's unit to `node.meta[STREAM_KEY]`."""
    nodes = graph.nodes
    for i, n in enumerate(nodes):
        n.meta[STREAM_KEY] = schedule.units[i]
    graph.nodes = [nodes[i] for i in schedule.order]
