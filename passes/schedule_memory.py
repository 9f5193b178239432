"""The memory model the `schedule` pass minimizes: buffers, their readers, and the peak of live bytes of an order.

A buffer is the output of a node (graph inputs and constants are not buffers: they live outside the
arena). It is live from its producer's step to its last reader's step, both included (the inputs and
outputs of a step are live together); a buffer a graph output reads lives to the end, and one nobody
reads dies after its own step. The outputs of `ALIAS_OPS` share the bytes of one input (the Numba
backend lowers them to views), so they extend that buffer's life instead of making a new one. Sizes are
aligned as the arena aligns them, so the peak here is the arena's lower bound for the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..backends.arena import ALIGNMENT, ArenaPlan, Buffer, align, plan_arena
from ..ir.graph import Graph

ALIAS_OPS: dict[str, int] = {"reshape": 0, "flatten": 0, "transpose": 0, "slice": 0, "identity": 0, "dropout": 0}
"""Ops whose output shares the bytes of one of their inputs: op -> index of that input."""


@dataclass
class MemoryModel:
    """Buffers of a graph, indexed by node position in `graph.nodes` (the original order)."""

    sizes: list[int]  # aligned bytes per buffer
    producer: list[int]  # node index producing each buffer
    readers: list[frozenset[int]]  # node indices reading each buffer (through any alias)
    pinned: list[bool]  # a graph output reads the buffer: it lives to the end
    produces: list[tuple[int, ...]]  # buffers each node creates
    reads: list[tuple[int, ...]]  # buffers each node reads
    preds: list[frozenset[int]]  # node indices each node depends on

    @classmethod
    def of(cls, graph: Graph, alignment: int = ALIGNMENT) -> MemoryModel:
        """The model of `graph` in its node order (which must be topological)."""
        buffer_of: dict[int, int | None] = {}
        producer_of: dict[int, int] = {}
        sizes: list[int] = []
        producer: list[int] = []
        produces: list[tuple[int, ...]] = []
        for i, n in enumerate(graph.nodes):
            made = []
            for k, v in enumerate(n.outputs):
                producer_of[id(v)] = i
                if k == 0 and n.op in ALIAS_OPS and len(n.inputs) > ALIAS_OPS[n.op]:
                    buffer_of[id(v)] = buffer_of.get(id(n.inputs[ALIAS_OPS[n.op]]))
                    continue
                buffer_of[id(v)] = len(sizes)
                made.append(len(sizes))
                sizes.append(align(v.type.nbytes, alignment))
                producer.append(i)
            produces.append(tuple(made))
        readers: list[set[int]] = [set() for _ in sizes]
        reads: list[tuple[int, ...]] = []
        preds: list[frozenset[int]] = []
        for i, n in enumerate(graph.nodes):
            mine = {b for v in n.inputs if (b := buffer_of.get(id(v))) is not None}
            for b in mine:
                readers[b].add(i)
            reads.append(tuple(sorted(mine)))
            preds.append(frozenset(producer_of[id(v)] for v in n.inputs if id(v) in producer_of))
        pinned = [False] * len(sizes)
        for v in graph.outputs:
            b = buffer_of.get(id(v))
            if b is not None:
                pinned[b] = True
        return cls(sizes, producer, [frozenset(r) for r in readers], pinned, produces, reads, preds)

    def peak(self, order: Sequence[int]) -> int:
        """The most bytes live at one step when the nodes run in `order` (node indices)."""
        return max(self.live_bytes(order), default=0)

    def live_bytes(self, order: Sequence[int]) -> list[int]:
        """The bytes live at each step when the nodes run in `order` (node indices)."""
        remaining = [len(r) for r in self.readers]
        live = 0
        out = []
        for i in order:
            live += sum(self.sizes[b] for b in self.produces[i])
            out.append(live)
            for b in self.reads[i]:
                remaining[b] -= 1
                if remaining[b] == 0 and not self.pinned[b]:
                    live -= self.sizes[b]
            for b in self.produces[i]:
                if not self.readers[b] and not self.pinned[b]:
                    live -= self.sizes[b]
        return out

    def buffers(self, order: Sequence[int]) -> list[Buffer]:
        """Arena buffers (key = buffer index) with lifetimes as steps of `order`."""
        step = {node: s for s, node in enumerate(order)}
        out = []
        for b, size in enumerate(self.sizes):
            start = step[self.producer[b]]
            end = len(order) if self.pinned[b] else max([step[r] for r in self.readers[b]], default=start)
            out.append(Buffer(b, size, start, end))
        return out

    def arena(self, order: Sequence[int]) -> ArenaPlan:
        """The arena plan of the buffers when the nodes run in `order`."""
        return plan_arena(self.buffers(order))

    def is_topological(self, order: Sequence[int]) -> bool:
        """True when `order` holds every node once and each after the nodes it depends on."""
        if sorted(order) != list(range(len(self.preds))):
            return False
        seen: set[int] = set()
        for i in order:
            if not self.preds[i] <= seen:
                return False
            seen.add(i)
        return True
