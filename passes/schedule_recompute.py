"""Recomputation for memory: a second copy of an operator for its later readers, kept where the peak drops.

A value read early and again much later stays live all the time between. Computed a second time near its
later readers, it dies after its early ones, at the price of the operator's work once more and of keeping
its inputs live instead (the peak drops where they are smaller or live then anyway). `recompute_for_memory`
works round by round from the peak of the current order: it tries values live across the peak step without a
reader there, largest first, then those with the most bytes times the widest gap between two readers
(`RECOMPUTE_CANDIDATES` in all), each copy read by the readers after the peak or that gap (the readers before
keep the original), and keeps the first copy that lowers the peak or the number of steps at it, up to
`RECOMPUTE_ROUNDS` copies within a budget of extra work. Bit for bit: the copy is the same op on the same
inputs. Regions (`fused`) and multi-output ops are not copied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..ir.graph import Graph, Node, Value
from .schedule_memory import MemoryModel
from .schedule_search import MemorySchedule

RECOMPUTE_ROUNDS = 12
"""Copies kept at most: each round tries candidates until one lowers the peak (a round that keeps none ends the
search)."""
RECOMPUTE_WORK = 0.5
"""Extra multiply-adds the copies may add, as a fraction of the graph's (the `schedule` option `recompute_work`)."""
RECOMPUTE_CANDIDATES = 8
"""Values tried per round, those live across the peak first (each trial is one heuristic schedule)."""


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


def widest_gap(at: list[int]) -> tuple[int, int]:
    """(width, index of the reader after it) of the widest gap between consecutive reader positions `at` (of equal
    gaps the last)."""
    return max((at[j] - at[j - 1], j) for j in range(1, len(at)))


def _candidates(graph: Graph, limit: int) -> list[tuple[int, int]]:
    """(node position, first reader the copy serves) of nodes whose one output (no graph output) has several
    readers: first those live at the peak of the current order without a reader there (the copy serves the
    readers after the peak), largest first; then the most bytes times the widest gap between two readers."""
    readers = _readers(graph)
    outputs = {id(v) for v in graph.outputs}
    found = [i for i, n in enumerate(graph.nodes)
             if n.op != "fused" and len(n.outputs) == 1 and id(n.outputs[0]) not in outputs
             and len(readers.get(id(n.outputs[0]), [])) >= 2]
    live = MemoryModel.of(graph).live_bytes(range(len(graph.nodes)))
    top = live.index(max(live)) if live else 0
    at_peak = []
    for i in found:
        at = readers[id(graph.nodes[i].outputs[0])]
        after = next((j for j, r in enumerate(at) if r > top), 0)
        if after >= 1 and at[after - 1] < top:
            at_peak.append((i, after))
    at_peak.sort(key=lambda c: -graph.nodes[c[0]].outputs[0].type.nbytes)

    def gap(i: int) -> int:
        return widest_gap(readers[id(graph.nodes[i].outputs[0])])[0]

    by_gap = sorted(found, key=lambda i: -graph.nodes[i].outputs[0].type.nbytes * gap(i))
    chosen = at_peak[:limit]
    taken = {i for i, _ in chosen}
    for i in by_gap:
        if len(chosen) >= limit:
            break
        if i not in taken:
            chosen.append((i, widest_gap(readers[id(graph.nodes[i].outputs[0])])[1]))
    return chosen


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


def with_copy(graph: Graph, position: int, first: int | None = None) -> Graph:
    """A copy of `graph` in which the node at `position` is computed again, just before its reader number
    `first` (counted from 0 in node order; by default the reader after the widest gap between two readers), for
    that reader and every later one."""
    trial = graph.copy()
    node = trial.nodes[position]
    value = node.outputs[0]
    at = _readers(trial).get(id(value), [])
    if len(at) < 2 or (first is not None and not 1 <= first < len(at)):
        raise ValueError(f"recompute: node {node.name} ({node.op}) has {len(at)} reader(s); a copy serves readers "
                         f"1 to {len(at) - 1} and after, not reader {first}")
    later = at[widest_gap(at)[1] if first is None else first:]
    again = Value(trial.fresh_name(f"{value.name}.again"), value.type)
    trial.nodes.insert(later[0], Node(node.op, list(node.inputs), dict(node.attrs), [again], dict(node.meta)))
    for i in later:
        reader = trial.nodes[i + 1]  # one place later: the copy is in front of it
        reader.inputs = [again if x is value else x for x in reader.inputs]
    return trial


def _level(graph: Graph) -> tuple[int, int]:
    """(peak, steps at the peak) of `graph` in its node order."""
    live = MemoryModel.of(graph).live_bytes(range(len(graph.nodes)))
    top = max(live, default=0)
    return top, live.count(top)


def recompute_for_memory(graph: Graph, schedule: Callable[[Graph], MemorySchedule],
                         rounds: int = RECOMPUTE_ROUNDS, candidates: int = RECOMPUTE_CANDIDATES,
                         work_budget: float = RECOMPUTE_WORK) -> tuple[Graph, Recomputation]:
    """`graph` with copies of operators wherever they lower `schedule`'s peak, in the order of least peak found,
    and what was done. `graph` itself is not changed.

    A copy is kept while it lowers the peak or, at the same peak, the number of steps at it (the way down from a
    plateau of several peak steps, one copy at a time); what is returned is the first state at the least peak
    reached, so copies kept after it that never lowered the peak are dropped. The copies add at most
    `work_budget` times the graph's multiply-adds (of convolutions and matrix products)."""
    found = schedule(graph)
    state = graph.copy()
    state.nodes = [state.nodes[i] for i in found.order]
    current = Recomputation(peak=found.peak_after)
    level = _level(state)
    best, done = state, Recomputation(peak=found.peak_after)
    allowed = work_budget * sum(_work(n) for n in graph.nodes)
    for _ in range(rounds):
        for position, first in _candidates(state, candidates):
            node = state.nodes[position]
            if current.extra_work + _work(node) > allowed:
                continue
            trial = with_copy(state, position, first)
            tried = schedule(trial)
            trial.nodes = [trial.nodes[i] for i in tried.order]
            trial_level = _level(trial)
            if trial_level < level:  # kept: the next round looks at the peak of the new order
                state, level = trial, trial_level
                current = Recomputation(current.copies + [node.outputs[0].name], current.extra_work + _work(node),
                                        tried.peak_after)
                if current.peak < done.peak:
                    best, done = state, current
                break
        else:
            break
    return best, done
