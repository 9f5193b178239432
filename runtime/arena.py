"""Memory planning: place buffers with known lifetimes in one arena so that disjoint lifetimes share bytes.

The planner is "greedy by size" with best fit (as in TensorFlow Lite's arena planner): buffers
are placed largest first; each goes into the smallest gap, among the buffers already placed
whose lifetimes overlap its own, that holds it, or above them all. Offsets are aligned.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    """Offsets by buffer key, the arena size, the naive total and the peak of live bytes."""

    offsets: dict[int, int]
    size: int
    naive: int
    peak_live: int

    def describe(self) -> str:
        """One line: arena size next to the naive sum."""
        ratio = self.size / self.naive if self.naive else 1.0
        return (f"arena {self.size / 1e6:.2f} MB vs {self.naive / 1e6:.2f} MB naive ({ratio:.0%}); "
                f"peak live {self.peak_live / 1e6:.2f} MB")


def _align(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def peak_live_bytes(buffers: Iterable[Buffer], alignment: int = ALIGNMENT) -> int:
    """The most aligned bytes alive at one step: a lower bound on any arena size."""
    events: dict[int, int] = {}
    for b in buffers:
        size = _align(b.nbytes, alignment)
        events[b.start] = events.get(b.start, 0) + size
        events[b.end + 1] = events.get(b.end + 1, 0) - size
    live = peak = 0
    for step in sorted(events):
        live += events[step]
        peak = max(peak, live)
    return peak


def plan_arena(buffers: list[Buffer], alignment: int = ALIGNMENT) -> ArenaPlan:
    """Place `buffers` (unique keys); every pair with overlapping lifetimes gets disjoint bytes."""
    keys = [b.key for b in buffers]
    if len(set(keys)) != len(keys):
        raise ValueError("plan_arena: buffer keys must be unique")
    for b in buffers:
        if b.nbytes < 0 or b.end < b.start:
            raise ValueError(f"plan_arena: bad buffer {b}")
    placed: list[tuple[int, int, Buffer]] = []  # (offset, aligned size, buffer)
    offsets: dict[int, int] = {}
    for b in sorted(buffers, key=lambda b: (-b.nbytes, b.start, b.key)):
        size = _align(b.nbytes, alignment)
        if size == 0:
            offsets[b.key] = 0
            continue
        busy = sorted((off, sz) for off, sz, other in placed if other.overlaps(b))
        best, best_gap, prev_end = None, None, 0
        for off, sz in busy:
            gap = off - prev_end
            if gap >= size and (best_gap is None or gap < best_gap):
                best, best_gap = prev_end, gap
            prev_end = max(prev_end, off + sz)
        offset = best if best is not None else prev_end
        offsets[b.key] = offset
        placed.append((offset, size, b))
    total = max((off + sz for off, sz, _ in placed), default=0)
    naive = sum(_align(b.nbytes, alignment) for b in buffers)
    return ArenaPlan(offsets, total, naive, peak_live_bytes(buffers, alignment))


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
