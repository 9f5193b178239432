"""Memory planning: place buffers with known lifetimes in one arena so that disjoint lifetimes share bytes.

Two placement strategies, both from TensorFlow Lite's arena planners (Pisarchyk and Lee, "Efficient
Memory Management for Deep Neural Net Inference", 2020), and `plan_arena` keeps the smaller arena:

- greedy by size: buffers largest first; each goes into the smallest gap, among the buffers already
  placed whose lifetimes overlap its own, that holds it, or above them all (best fit);
- greedy by breadth: steps by the bytes alive at them, largest first; at each step its buffers not yet
  placed, largest first, each into the best-fit gap as above.

No placement can use fewer bytes than the peak of live bytes at one step (`peak_live_bytes`), so the
plan carries that lower bound beside its size. Offsets are aligned. This module is pure arithmetic
over lifetimes: the runtime places its buffers with it and the `schedule` pass prices node orders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

ALIGNMENT = 64


@dataclass(frozen=True)
class Buffer:
    """A buffer to place: `nbytes`, alive from step `start` to step `end` (both included)."""

    key: int
    nbytes: int
    start: int
    end: int

    def overlaps(self, other: Buffer) -> bool:
        """True when the two lifetimes share a step."""
        return self.start <= other.end and other.start <= self.end


@dataclass(frozen=True)
class ArenaPlan:
    """Offsets by buffer key, the arena size, the naive total, the peak of live bytes and the strategy used."""

    offsets: dict[int, int]
    size: int
    naive: int
    peak_live: int
    strategy: str = "greedy-by-size"

    def describe(self) -> str:
        """One line: arena size next to the naive sum and the peak-live lower bound."""
        ratio = self.size / self.naive if self.naive else 1.0
        over = self.size / self.peak_live if self.peak_live else 1.0
        return (f"arena {self.size / 1e6:.2f} MB vs {self.naive / 1e6:.2f} MB naive ({ratio:.0%}); "
                f"peak live {self.peak_live / 1e6:.2f} MB (arena {over:.3f}x of it, {self.strategy})")


def align(n: int, alignment: int = ALIGNMENT) -> int:
    """`n` rounded up to a multiple of `alignment`."""
    return -(-n // alignment) * alignment


def peak_live_bytes(buffers: Iterable[Buffer], alignment: int = ALIGNMENT) -> int:
    """The most aligned bytes alive at one step: a lower bound on any arena size."""
    events: dict[int, int] = {}
    for b in buffers:
        size = align(b.nbytes, alignment)
        events[b.start] = events.get(b.start, 0) + size
        events[b.end + 1] = events.get(b.end + 1, 0) - size
    live = peak = 0
    for step in sorted(events):
        live += events[step]
        peak = max(peak, live)
    return peak


class _Placer:
    """Best-fit placement of buffers against those already placed whose lifetimes overlap."""

    def __init__(self, alignment: int) -> None:
        self.alignment = alignment
        self.placed: list[tuple[int, int, Buffer]] = []  # (offset, aligned size, buffer)
        self.offsets: dict[int, int] = {}

    def place(self, b: Buffer) -> None:
        """Put `b` into the smallest gap that holds it, or above every overlapping buffer."""
        size = align(b.nbytes, self.alignment)
        if size == 0:
            self.offsets[b.key] = 0
            return
        busy = sorted((off, sz) for off, sz, other in self.placed if other.overlaps(b))
        best, best_gap, prev_end = None, None, 0
        for off, sz in busy:
            gap = off - prev_end
            if gap >= size and (best_gap is None or gap < best_gap):
                best, best_gap = prev_end, gap
            prev_end = max(prev_end, off + sz)
        offset = best if best is not None else prev_end
        self.offsets[b.key] = offset
        self.placed.append((offset, size, b))

    @property
    def size(self) -> int:
        """Bytes from 0 to the end of the highest buffer."""
        return max((off + sz for off, sz, _ in self.placed), default=0)


def greedy_by_size(buffers: list[Buffer], alignment: int) -> tuple[dict[int, int], int]:
    """Offsets and arena size placing the largest buffers first."""
    placer = _Placer(alignment)
    for b in sorted(buffers, key=lambda b: (-b.nbytes, b.start, b.key)):
        placer.place(b)
    return placer.offsets, placer.size


def greedy_by_breadth(buffers: list[Buffer], alignment: int) -> tuple[dict[int, int], int]:
    """Offsets and arena size placing the steps with the most live bytes first, each step's largest buffers first."""
    at_step: dict[int, list[Buffer]] = {}
    for b in buffers:
        for step in range(b.start, b.end + 1):
            at_step.setdefault(step, []).append(b)
    breadth = {step: sum(align(b.nbytes, alignment) for b in bs) for step, bs in at_step.items()}
    placer = _Placer(alignment)
    for step in sorted(at_step, key=lambda s: (-breadth[s], s)):
        for b in sorted(at_step[step], key=lambda b: (-b.nbytes, b.start, b.key)):
            if b.key not in placer.offsets:
                placer.place(b)
    return placer.offsets, placer.size


ARENA_STRATEGIES: dict[str, Callable[[list[Buffer], int], tuple[dict[int, int], int]]] = {
    "greedy-by-size": greedy_by_size,
    "greedy-by-breadth": greedy_by_breadth,
}
"""Placement strategies by name: `strategy(buffers, alignment) -> (offsets, arena size)`."""


def plan_arena(buffers: list[Buffer], alignment: int = ALIGNMENT,
               strategies: Iterable[str] = tuple(ARENA_STRATEGIES)) -> ArenaPlan:
    """Place `buffers` (unique keys) with each of `strategies` and keep the smallest arena (the first on a tie).

    Every pair of buffers with overlapping lifetimes gets disjoint bytes.
    """
    keys = [b.key for b in buffers]
    if len(set(keys)) != len(keys):
        raise ValueError("plan_arena: buffer keys must be unique")
    for b in buffers:
        if b.nbytes < 0 or b.end < b.start:
            raise ValueError(f"plan_arena: bad buffer {b}")
    names = list(strategies)
    unknown = [s for s in names if s not in ARENA_STRATEGIES]
    if unknown or not names:
        raise ValueError(f"plan_arena: unknown strategies {unknown}; known: {', '.join(ARENA_STRATEGIES)}")
    best: tuple[dict[int, int], int, str] | None = None
    for name in names:
        offsets, size = ARENA_STRATEGIES[name](buffers, alignment)
        if best is None or size < best[1]:
            best = (offsets, size, name)
    assert best is not None
    naive = sum(align(b.nbytes, alignment) for b in buffers)
    return ArenaPlan(best[0], best[1], naive, peak_live_bytes(buffers, alignment), best[2])


def check_arena(plan: ArenaPlan, buffers: list[Buffer]) -> None:
    """Raise AssertionError if two buffers with overlapping lifetimes overlap in memory."""
    for i, a in enumerate(buffers):
        oa = plan.offsets[a.key]
        if oa + a.nbytes > plan.size and a.nbytes:
            raise AssertionError(f"buffer {a.key} ends past the arena")
        for b in buffers[i + 1:]:
            ob = plan.offsets[b.key]
            if a.nbytes and b.nbytes and a.overlaps(b) and oa < ob + b.nbytes and ob < oa + a.nbytes:
                raise AssertionError(f"buffers {a.key} and {b.key} are alive together and share bytes")
