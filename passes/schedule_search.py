"""Node orders of least peak memory: cut the graph at the nodes every path runs through, search each piece.

A node that dominates the graph's sink (every path from an input to an output passes through it) is
comparable to every other node: each is its ancestor or its descendant. Such cut nodes split any
topological order into the same contiguous pieces, and the bytes live at a cut do not depend on the
order before it, so each piece is scheduled alone and the graph's peak is the largest piece's peak
(SERENITY, Ahn et al., MLSys 2020, divides the graph the same way).

Inside a piece, `search` walks the scheduled sets level by level (dynamic programming over the nodes
already run: the bytes live after a set do not depend on the order that ran it, so one state per set
keeps the least peak that reaches it). A ready node that peaks within the state's peak and frees at
least what it allocates is run next without branching (no least-peak order is lost). Without a beam it
is exact, pruned by an upper bound and stopped by a budget of states; with a beam it keeps the `beam`
best states per level: a greedy schedule by freed-minus-allocated bytes with lookahead. The heuristic
is the best of two beams (ranked by peak, and by live bytes) and a depth-first order that finishes the
heaviest branch first, each (and the original order) improved locally across its peak step
(`schedule_improve.py`). A piece whose order reaches the bytes some node has live in every order (its
output, and what it or a node after it reads) is proven least-peak without search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx

from ..ir.graph import Graph
from .schedule_improve import improve_order
from .schedule_memory import MemoryModel

SOURCE, SINK = "<source>", "<sink>"

IMPROVE_STEPS = 200_000
"""Node steps the local improvement may price per start order and piece, by default (orders of n nodes: this / n)."""


def cut_nodes(graph: Graph) -> list[int]:
    """Indices (in `graph.nodes`) of the nodes every input-to-output path runs through, in order."""
    g = graph.to_networkx()
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    d = nx.DiGraph()
    d.add_nodes_from([SOURCE, SINK, *range(len(graph.nodes))])
    d.add_edges_from((index[id(a)], index[id(b)]) for a, b in g.edges())
    for n in graph.nodes:
        if g.in_degree(n) == 0:
            d.add_edge(SOURCE, index[id(n)])
        if g.out_degree(n) == 0:
            d.add_edge(index[id(n)], SINK)
    idom = nx.immediate_dominators(d, SOURCE)
    cuts = []
    v = idom.get(SINK, SOURCE)
    while v != SOURCE:
        cuts.append(v)
        v = idom[v]
    return sorted(cuts)


def split_pieces(n_nodes: int, cuts: Sequence[int]) -> list[list[int]]:
    """The original order cut into pieces: each cut node alone, the runs between cuts as one piece each."""
    pieces: list[list[int]] = []
    start = 0
    for c in [*cuts, n_nodes]:
        if c > start:
            pieces.append(list(range(start, c)))
        if c < n_nodes:
            pieces.append([c])
        start = c + 1
    return pieces


@dataclass
class Piece:
    """One piece of the graph as a search problem over local node indices 0..n-1 (original order)."""

    nodes: list[int]  # global node indices
    base: int  # bytes live when the piece starts
    alloc: list[int]  # bytes each node allocates
    dead: list[int]  # bytes of each node's outputs nobody reads (freed after its own step)
    frees: list[list[tuple[int, int]]]  # per node: (mask of the piece's readers, bytes) of buffers it may free
    preds: list[int]  # mask of the piece's nodes each node depends on
    succs: list[list[int]]
    lower_bound: int  # no order of the piece peaks below this

    @classmethod
    def of(cls, model: MemoryModel, nodes: list[int], base: int, live_at_start: set[int]) -> Piece:
        """The piece of `model` made of `nodes` (contiguous in the original order), `base` bytes live before it."""
        local = {g: i for i, g in enumerate(nodes)}
        last = nodes[-1]
        alloc = [sum(model.sizes[b] for b in model.produces[g]) for g in nodes]
        dead = [sum(model.sizes[b] for b in model.produces[g] if not model.readers[b] and not model.pinned[b])
                for g in nodes]
        frees: list[list[tuple[int, int]]] = []
        for g in nodes:
            mine = []
            for b in model.reads[g]:
                if model.pinned[b] or max(model.readers[b]) > last:
                    continue
                mask = 0
                for r in model.readers[b]:
                    if r in local:
                        mask |= 1 << local[r]
                mine.append((mask, model.sizes[b]))
            frees.append(mine)
        preds = [sum(1 << local[p] for p in model.preds[g] if p in local) for g in nodes]
        succs: list[list[int]] = [[] for _ in nodes]
        for i, g in enumerate(nodes):
            for p in model.preds[g]:
                if p in local:
                    succs[local[p]].append(i)
        must_live = _bytes_live_in_every_order(model, nodes, live_at_start, alloc, preds, succs)
        return cls(nodes, base, alloc, dead, frees, preds, succs, max(must_live))

    def peak(self, order: Sequence[int]) -> int:
        """The piece's peak when its nodes run in `order` (local indices)."""
        return max(self.steps(order))

    def steps(self, order: Sequence[int]) -> list[int]:
        """Bytes live at each step when the piece's nodes run in `order` (local indices)."""
        mem, done, out = self.base, 0, []
        for v in order:
            done |= 1 << v
            out.append(mem + self.alloc[v])
            mem += self.alloc[v] - self.freed(v, done)
        return out

    def freed(self, v: int, done: int) -> int:
        """Bytes freed after node `v` runs, once the nodes in mask `done` (`v` among them) have run."""
        return self.dead[v] + sum(size for mask, size in self.frees[v] if mask & ~done == 0)

    def free_step(self, done: int, peak: int, mem: int, ready: int) -> int:
        """The bit of a ready node that costs nothing to run next, or 0: it peaks within `peak` and frees at least
        what it allocates. Some least-peak order from mask `done` runs such a node next (moving it to the front
        of any order lowers no step's bytes after it), so a search need not branch there."""
        r = ready
        while r:
            low = r & -r
            r ^= low
            v = low.bit_length() - 1
            if mem + self.alloc[v] <= peak and self.freed(v, done | low) >= self.alloc[v]:
                return low
        return 0


def _bytes_live_in_every_order(model: MemoryModel, nodes: list[int], live_at_start: set[int], alloc: list[int],
                               preds: list[int], succs: list[list[int]]) -> list[int]:
    """Per node of a piece, the bytes live at its step in every order: its output, and each buffer made before
    the piece or by one of its ancestors that it or one of its descendants reads (or that outlives the piece)."""
    n = len(nodes)
    local = {g: i for i, g in enumerate(nodes)}
    above = [0] * n  # mask of each node's ancestors in the piece
    for i in range(n):
        p = preds[i]
        while p:
            low = p & -p
            p ^= low
            above[i] |= above[low.bit_length() - 1] | low
    below = [0] * n  # mask of each node and its descendants
    for i in reversed(range(n)):
        below[i] = 1 << i
        for s in succs[i]:
            below[i] |= below[s]
    buffers = []  # (producer's local index or None before the piece, bytes, readers mask or None if it outlives)
    for b in live_at_start:
        buffers.append((None, model.sizes[b], _readers_mask(model, b, local)))
    for i, g in enumerate(nodes):
        for b in model.produces[g]:
            if model.readers[b] or model.pinned[b]:
                buffers.append((i, model.sizes[b], _readers_mask(model, b, local)))
    must_live = list(alloc)
    for v in range(n):
        for producer, size, readers in buffers:
            if (producer is None or above[v] >> producer & 1) and (readers is None or readers & below[v]):
                must_live[v] += size
    return must_live


def _readers_mask(model: MemoryModel, b: int, local: dict[int, int]) -> int | None:
    """Mask of the piece's nodes reading buffer `b`, or None when it outlives the piece."""
    if model.pinned[b] or any(r not in local for r in model.readers[b]):
        return None
    return sum(1 << local[r] for r in model.readers[b])


def depth_first_order(piece: Piece) -> list[int]:
    """A depth-first order (Sethi-Ullman): each node after its inputs, the input with the most bytes above it first.

    Finishing one branch before starting the next frees its intermediates early, which the beam
    search's level-by-level view can miss on branchy graphs.
    """
    n = len(piece.nodes)
    preds = [[p for p in range(n) if piece.preds[v] >> p & 1] for v in range(n)]
    up = nx.DiGraph()  # edges from a node to its inputs
    up.add_nodes_from(range(n))
    up.add_edges_from((v, p) for v in range(n) for p in preds[v])
    above = [piece.alloc[v] + sum(piece.alloc[a] for a in nx.descendants(up, v)) for v in range(n)]
    ordered = nx.DiGraph()
    ordered.add_node(SINK)
    for v in sorted(range(n), key=lambda v: (-above[v], v)):
        if not piece.succs[v]:
            ordered.add_edge(SINK, v)
    for v in range(n):
        ordered.add_node(v)
        ordered.add_edges_from((v, p) for p in sorted(preds[v], key=lambda p: (-above[p], p)))
    return [v for v in nx.dfs_postorder_nodes(ordered, SINK) if v != SINK]


@dataclass
class SearchResult:
    """What `search` found: an order (local indices) and its peak, or None; states visited; complete or not."""

    order: list[int] | None
    peak: int | None
    states: int
    complete: bool


RANKINGS = {"peak": lambda kv: (kv[1][0], kv[1][1]), "live": lambda kv: (kv[1][1], kv[1][0])}
"""How a beam ranks the states of a level: least peak so far then least live bytes, or the reverse."""


def search(piece: Piece, *, beam: int | None = None, max_states: int = 1 << 62,
           bound: int | None = None, rank: str = "peak") -> SearchResult:
    """Least-peak order of `piece` by dynamic programming over scheduled sets.

    `beam=None`: exact; every state whose peak reaches `bound` is pruned (so an empty answer with
    `complete=True` proves no order peaks below `bound`), and the search gives up (`complete=False`)
    after `max_states` states. `beam=k`: keeps the k best states per level by `RANKINGS[rank]`.
    """
    n = len(piece.nodes)
    ready0 = sum(1 << v for v in range(n) if piece.preds[v] == 0)
    level: dict[int, tuple[int, int, int]] = {0: (0, piece.base, ready0)}  # mask -> (peak, live bytes, ready)
    parent: dict[int, tuple[int, int]] = {}
    states = 0
    for _ in range(n):
        nxt: dict[int, tuple[int, int, int]] = {}
        for mask, (peak, mem, ready) in level.items():
            r = piece.free_step(mask, peak, mem, ready) or ready
            while r:
                low = r & -r
                r ^= low
                v = low.bit_length() - 1
                new_peak = max(peak, mem + piece.alloc[v])
                if bound is not None and new_peak >= bound:
                    continue
                done = mask | low
                old = nxt.get(done)
                if old is not None and old[0] <= new_peak:
                    continue
                new_ready = ready & ~low
                for s in piece.succs[v]:
                    if piece.preds[s] & ~done == 0:
                        new_ready |= 1 << s
                nxt[done] = (new_peak, mem + piece.alloc[v] - piece.freed(v, done), new_ready)
                parent[done] = (mask, v)
        states += len(nxt)
        if beam is None and states > max_states:
            return SearchResult(None, None, states, False)
        if beam is not None and len(nxt) > beam:
            nxt = dict(sorted(nxt.items(), key=RANKINGS[rank])[:beam])
        level = nxt
        if not level:
            return SearchResult(None, None, states, True)
    full = (1 << n) - 1
    order: list[int] = []
    mask = full
    while mask:
        mask, v = parent[mask]
        order.append(v)
    return SearchResult(order[::-1], level[full][0], states, True)


METHOD_RANK = {"original": 0, "heuristic": 1, "exact": 2}
"""On equal peaks a piece keeps the first of these: the original order, then the heuristic's."""


@dataclass
class MemorySchedule:
    """A node order (indices into the original `graph.nodes`) and how it was found."""

    order: list[int]
    peak_before: int
    peak_after: int
    kept: dict[str, int]  # pieces of more than one node, by the method whose order was kept
    proven: int  # of those pieces, how many have an order proven least-peak
    states: int  # states the searches visited
    optimal: bool  # no order of the whole graph peaks lower

    @property
    def method(self) -> str:
        """`exact` (every piece proven), `heuristic` (some piece not) or `original kept` (nothing moved)."""
        if self.order == sorted(self.order):
            return "original kept"
        return "exact" if self.proven == sum(self.kept.values()) else "heuristic"


def schedule_for_memory(graph: Graph, *, exact: bool = True, max_states: int = 200_000,
                        beam: int = 16, improve: int = IMPROVE_STEPS) -> MemorySchedule:
    """The least-peak order found for `graph`: per piece the best of the original order, the heuristic (beam
    searches and a depth-first order, each improved locally within `improve` node steps priced)
    and (with `exact`) the exact search within `max_states` states; never above the original order's peak."""
    model = MemoryModel.of(graph)
    pieces = split_pieces(len(graph.nodes), cut_nodes(graph))
    remaining = [len(r) for r in model.readers]
    live: set[int] = set()
    order: list[int] = []
    kept = dict.fromkeys(METHOD_RANK, 0)
    proven = states = 0
    bound = 0  # a lower bound on the least peak of the whole graph
    for nodes in pieces:
        piece = Piece.of(model, nodes, sum(model.sizes[b] for b in live), live)
        local = list(range(len(nodes)))
        if len(nodes) > 1:
            local, peak, sure, used = _best_order(piece, exact, max_states, beam, improve, kept)
            proven += sure
            states += used
            bound = max(bound, peak if sure else piece.lower_bound)
        else:
            bound = max(bound, piece.peak(local))
        order.extend(nodes[i] for i in local)
        for g in nodes:  # the bytes live after a piece do not depend on its order: follow the original one
            live.update(model.produces[g])
            for b in model.reads[g]:
                remaining[b] -= 1
                if remaining[b] == 0 and not model.pinned[b]:
                    live.discard(b)
            live.difference_update(b for b in model.produces[g] if not model.readers[b] and not model.pinned[b])
    before, after = model.peak(range(len(graph.nodes))), model.peak(order)
    return MemorySchedule(order, before, after, {k: v for k, v in kept.items() if v}, proven, states,
                          optimal=after <= bound)


def _best_order(piece: Piece, exact: bool, max_states: int, beam: int, improve: int,
                kept: dict[str, int]) -> tuple[list[int], int, bool, int]:
    """(local order, its peak, proven least-peak, states visited) for one piece; counts the method kept."""
    original = list(range(len(piece.nodes)))
    found = [("original", original, piece.peak(original))]
    states = 0
    for rank in RANKINGS:
        heuristic = search(piece, beam=beam, rank=rank)
        assert heuristic.order is not None and heuristic.peak is not None
        found.append(("heuristic", heuristic.order, heuristic.peak))
        states += heuristic.states
    depth_first = depth_first_order(piece)
    found.append(("heuristic", depth_first, piece.peak(depth_first)))
    best = min(f[2] for f in found)
    if best > piece.lower_bound and improve >= len(original):
        for _, start, _ in list(found):
            improved = improve_order(piece, start, improve // len(start))
            found.append(("heuristic", improved, piece.peak(improved)))
        best = min(f[2] for f in found)
    sure = best <= piece.lower_bound
    if exact and not sure:
        result = search(piece, max_states=max_states, bound=best)
        states += result.states
        sure = result.complete
        if result.order is not None and result.peak is not None:
            found.append(("exact", result.order, result.peak))
    name, order, peak = min(found, key=lambda f: (f[2], METHOD_RANK[f[0]]))
    kept[name] += 1
    return order, peak, sure, states
