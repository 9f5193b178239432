"""schedule: the node order (least peak memory) and, for a target, each node's parallel unit (least latency)."""

from __future__ import annotations

import time
from typing import Literal

from ..backends.cost import load_target
from ..ir.graph import Graph
from .base import Pass, PassContext, PassResult, TargetRequiredError, register_pass
from .schedule_latency import apply_streams, schedule_for_latency
from .schedule_memory import MemoryModel
from .schedule_recompute import RECOMPUTE_WORK, recompute_for_memory
from .schedule_rewrite import REWRITE_ROUNDS, MemoryRewrite, rewrite_for_memory
from .schedule_search import IMPROVE_STEPS, MemorySchedule, schedule_for_memory


def _mb(n: int) -> str:
    return f"{n / 1e6:.3f} MB"


@register_pass
class Schedule(Pass):
    """Reorders the nodes (a topological order) for the least peak of live bytes, or list-schedules them over
    the target's parallel units for the least latency.

    `objective=peak-memory`: per piece of the graph between the nodes every path runs through, the best of
    the original order, a heuristic (beam searches and a depth-first order, each improved locally within
    `improve` node steps) and, with `method=auto`, an exact search over scheduled sets within
    `max_states` states; never above the original order's peak. With `rewrite=true` it also tries SERENITY's
    identity rewriting (`schedule_rewrite.py`: convolutions of concatenations as sums of convolutions of the
    parts, sums re-chained in the order their terms are made, up to `rewrite_rounds` rounds of the heuristic)
    and keeps the rewritten graph only where its peak is lower; that changes results by float reassociation
    (bound rtol 1e-4, atol 1e-5), so it is off by default. With `recompute=true` (after the rewrite, if on) it
    computes the largest values read far apart a second time near their later readers where that lowers the
    peak (`schedule_recompute.py`: more work, at most `recompute_work` times the graph's multiply-adds, same
    results bit for bit), and keeps that only where the peak is lower too.
    The memory model is `passes/schedule_memory.py`'s. `objective=latency` needs `ctx.target`: nodes go
    critical path first onto the unit that finishes them first, and `node.meta["stream"]` records the
    unit (what `estimate` reads). A `fused` region is one node to either. Dead nodes are dropped first
    (they would only hold memory). Run it after `fuse`: passes that insert or rewrite nodes may not keep
    the order.
    """

    name = "schedule"
    objective: Literal["peak-memory", "latency"] = "peak-memory"
    method: Literal["auto", "heuristic"] = "auto"  # peak-memory: exact search within budget, or heuristic only
    max_states: int = 200_000  # exact search: states per piece before it gives up
    beam: int = 16  # heuristic: states kept per level
    improve: int = IMPROVE_STEPS  # heuristic: node steps each local improvement may price (0: none)
    rewrite: bool = False  # peak-memory: also try partitioning concat convolutions and re-chaining sums
    rewrite_rounds: int = REWRITE_ROUNDS  # rewrite: rounds of re-chaining sums and scheduling again
    recompute: bool = False  # peak-memory: also try computing values of far-apart readers twice
    recompute_work: float = RECOMPUTE_WORK  # recompute: most extra multiply-adds, a fraction of the graph's

    @property
    def exact(self) -> bool:  # type: ignore[override]
        """Bit for bit unless `rewrite` may reassociate float sums."""
        return not self.rewrite

    @property
    def tolerance(self) -> tuple[float, float]:  # type: ignore[override]
        """(rtol, atol) of the rewrite's reassociation; none when only the order changes."""
        return (1e-4, 1e-5) if self.rewrite else (0.0, 0.0)

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        """Reorder `graph.nodes` for the objective and report what was gained."""
        if self.max_states < 1 or self.beam < 1 or self.improve < 0 or self.rewrite_rounds < 0 \
                or not self.recompute_work >= 0:
            raise ValueError(f"schedule: max_states and beam must be positive, improve, rewrite_rounds and "
                             f"recompute_work not negative, got {self.max_states}, {self.beam}, {self.improve}, "
                             f"{self.rewrite_rounds}, {self.recompute_work}")
        dead = graph.remove_dead_nodes()
        result = self._latency(graph, ctx) if self.objective == "latency" else self._memory(graph)
        if dead:
            result.changed = True
            result.report += f"; removed {dead} dead node(s)"
        return result

    def _search(self, graph: Graph, exact: bool) -> MemorySchedule:
        return schedule_for_memory(graph, exact=exact, max_states=self.max_states, beam=self.beam,
                                   improve=self.improve)

    def _memory(self, graph: Graph) -> PassResult:
        t0 = time.perf_counter()
        model = MemoryModel.of(graph)
        as_given = graph.copy() if self.rewrite or self.recompute else None  # the rewrites start from the given order
        found = self._search(graph, self.method == "auto")
        original = list(range(len(graph.nodes)))
        arena_before, arena_after = model.arena(original), model.arena(found.order)
        order = found.order
        if found.peak_after == found.peak_before and arena_after.size > arena_before.size:
            order, arena_after = original, arena_before  # same peak, larger arena: keep the original order
        nodes = graph.nodes
        graph.nodes = [nodes[i] for i in order]
        changed = order != original
        method = found.method if changed else "original kept"
        peak_after = model.peak(order)
        rewrite_report = ""
        if as_given is not None:
            rewritten, rewrite_report = self._rewrite(as_given, peak_after)
            if rewritten is not None:
                graph, found = rewritten, self._search(rewritten, self.method == "auto")
                graph.nodes = [graph.nodes[i] for i in found.order]
                rewritten_model = MemoryModel.of(graph)
                order = list(range(len(graph.nodes)))
                peak_after, arena_after = rewritten_model.peak(order), rewritten_model.arena(order)
                changed = True
                method = "rewritten" + ("" if found.method == "original kept" else f", then {found.method}")
        kept = ", ".join(f"{k} {v}" for k, v in found.kept.items())
        seconds = time.perf_counter() - t0
        report = (f"peak live {_mb(model.peak(original))} -> "
                  f"{_mb(peak_after)}, arena {_mb(arena_before.size)} -> {_mb(arena_after.size)}; {method} "
                  f"({sum(found.kept.values())} piece(s) searched: {kept or 'none'}; {found.proven} proven least-peak; "
                  f"{found.states} states; {'optimal' if found.optimal else 'optimality not proven'}){rewrite_report}; "
                  f"{seconds * 1e3:.1f} ms")
        return PassResult(graph, changed, report)

    def _rewrite(self, candidate: Graph, peak: int) -> tuple[Graph | None, str]:
        """`candidate` rewritten (`rewrite`) and with values computed twice (`recompute`) for memory when that
        lowers `peak` (else None), and what was done."""
        heuristic = lambda g: self._search(g, False)  # noqa: E731
        what, reached = "", peak
        if self.rewrite:
            done: MemoryRewrite = rewrite_for_memory(candidate, heuristic, self.rewrite_rounds)
            what += (f"; rewrite: {sum(done.partitioned.values())} concat convolution(s) partitioned, {done.chains} "
                     f"sum chain(s), wiring of round {done.rounds} kept, peak {_mb(done.peak)}")
            reached = done.peak
        if self.recompute:
            candidate, again = recompute_for_memory(candidate, heuristic, work_budget=self.recompute_work)
            what += (f"; recompute: {len(again.copies)} value(s) computed twice"
                     f"{' (' + ', '.join(again.copies) + ')' if again.copies else ''}, {again.extra_work} "
                     f"multiply-adds more, peak {_mb(again.peak)}")
            reached = again.peak
        if reached < peak:
            return candidate, what
        return None, what + f", not below {_mb(peak)}: not kept"

    def _latency(self, graph: Graph, ctx: PassContext) -> PassResult:
        if ctx.target is None:
            raise TargetRequiredError(str(self), " (objective=latency schedules onto the target's parallel units)")
        t0 = time.perf_counter()
        target = load_target(ctx.target)
        found = schedule_for_latency(graph, target)
        apply_streams(graph, found)
        speedup = found.serial / found.makespan if found.makespan else 1.0
        report = (f"{target.name}: {found.unit_count} unit(s), {found.units_used} used; makespan "
                  f"{found.makespan * 1e3:.4f} ms vs serial {found.serial * 1e3:.4f} ms ({speedup:.2f}x), "
                  f"critical path {found.critical_path * 1e3:.4f} ms (emulated); "
                  f"{(time.perf_counter() - t0) * 1e3:.1f} ms")
        return PassResult(graph, True, report)  # every node now carries its stream
