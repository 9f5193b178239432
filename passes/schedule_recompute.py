"""Recomputation for memory: a second copy of an operator for its later readers, kept where the peak drops.

A value read early and again much later stays live all the time between. Computed a second time near its
later readers, it dies after its first reader, at the price of the operator's work once more and of keeping
its inputs live instead (the peak drops where they are smaller or live then anyway). `recompute_for_memory`
tries the values of several readers with the most bytes times the distance between their first and last
readers first (`RECOMPUTE_CANDIDATES` per round), one copy each, read by every reader after the first in the
current order, and keeps a copy only where the schedule's peak drops;
rounds repeat (up to `RECOMPUTE_ROUNDS`) while one does. Bit for bit: the copy is the same op on the same
inputs. Regions (`fused`) and multi-output ops are not copied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..ir.graph import Graph, Node, Value
from .schedule_search import MemorySchedule

RECOMPUTE_ROUNDS = 3
"""Rounds of trying candidates (a round that keeps no copy ends the search)."""
RECOMPUTE_CANDIDATES = 8
"""Values tried per round, the most bytes times reader distance first (each trial is one heuristic schedule)."""


@dataclass
class Recomputation:
    """What `recompute_for_memory` did: the values computed twice (by name), the multiply-adds the copies add
    (for convolutions and matrix products; 0 for other ops), and the peak of the order it leaves."""

    copies: list[str] = field(default_factory=list)
    extra_work: int = 0
    peak: int = 0


def _readers(graph: Graph) -> dict[int, list[int]]:
    """Positions of the nodes reading each value, in order."""
    out: dict[int, list[int]] = {}
    for i, n in enumerate(graph.nodes):
        for v in {id(x): x for x in n.inputs}.values():
            out.setdefault(id(v), []).append(i)
    return out


def _candidates(graph: Graph, limit: int) -> list[int]:
    """Positions of the nodes whose one output (no graph output) has several readers, the most bytes times the
    distance between its first and last readers first."""
    readers = _readers(graph)
    outputs = {id(v) for v in graph.outputs}
    found = [i for i, n in enumerate(graph.nodes)
             if n.op != "fused" and len(n.outputs) == 1 and id(n.outputs[0]) not in outputs
             and len(readers.get(id(n.outputs[0]), [])) >= 2]
    def span(i: int) -> int:
        at = readers[id(graph.nodes[i].outputs[0])]
        return at[-1] - at[0]

    return sorted(found, key=lambda i: -graph.nodes[i].outputs[0].type.nbytes * span(i))[:limit]


def _work(node: Node) -> int:
    """Multiply-adds of a convolution or matrix product (what a copy adds); 0 for other ops."""
    out = node.outputs[0].type
    if node.op == "conv2d":
        w = node.inputs[1].type.shape
        return out.numel * w[1] * w[2] * w[3]
    if node.op in ("linear", "matmul"):
        k = node.inputs[0].type.shape[-1] if node.inputs[0].type.rank else 1
        return out.numel * k
    return 0


def with_copy(graph: Graph, position: int) -> Graph:
    """A copy of `graph` in which the node at `position` is computed again, just before its second reader, for
    every reader after the first."""
    trial = graph.copy()
    node = trial.nodes[position]
    value = node.outputs[0]
    later = _readers(trial)[id(value)][1:]
    again = Value(trial.fresh_name(f"{value.name}.again"), value.type)
    trial.nodes.insert(later[0], Node(node.op, list(node.inputs), dict(node.attrs), [again], dict(node.meta)))
    for i in later:
        reader = trial.nodes[i + 1]  # one place later: the copy is in front of it
        reader.inputs = [again if x is value else x for x in reader.inputs]
    return trial


def recompute_for_memory(graph: Graph, schedule: Callable[[Graph], MemorySchedule],
                         rounds: int = RECOMPUTE_ROUNDS, candidates: int = RECOMPUTE_CANDIDATES,
                         ) -> tuple[Graph, Recomputation]:
    """`graph` with copies of operators wherever one lowers `schedule`'s peak, in the order of least peak found,
    and what was done. `graph` itself is not changed."""
    found = schedule(graph)
    best = graph.copy()
    best.nodes = [best.nodes[i] for i in found.order]
    done = Recomputation(peak=found.peak_after)
    for _ in range(rounds):
        kept = False
        for name in [best.nodes[i].outputs[0].name for i in _candidates(best, candidates)]:
            position = next(i for i, n in enumerate(best.nodes) if n.outputs and n.outputs[0].name == name)
            node = best.nodes[position]
            trial = with_copy(best, position)
            tried = schedule(trial)
            if tried.peak_after < done.peak:
                trial.nodes = [trial.nodes[i] for i in tried.order]
                best, kept = trial, True
                done.peak = tried.peak_after
                done.copies.append(node.outputs[0].name)
                done.extra_work += _work(node)
        if not kept:
            break
    return best, done
