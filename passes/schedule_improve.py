"""Local improvement of a node order for peak memory: re-place a node with what it drags across the peak step.

A peak step can only come down if some bytes live at it leave: a node run before it, with the
descendants between the two, moves to just after it (its output is made later), or a node run after
it, with the ancestors between the two, moves to just before it (its inputs may die earlier). Both
moves keep the order topological. The first move that lowers (peak, steps at the peak, bytes summed
over all steps) is taken, and the search stops when none does or after `max_moves` orders priced.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol


class Steppable(Protocol):
    """What the improvement needs of a piece: the mask of each node's inputs and the bytes live at each step."""

    preds: list[int]

    def steps(self, order: Sequence[int]) -> list[int]:
        """Bytes live at each step of `order`."""
        ...


def _score(steps: list[int]) -> tuple[int, int, int]:
    peak = max(steps)
    return peak, steps.count(peak), sum(steps)


def _sink(order: list[int], i: int, s: int, preds: list[int]) -> list[int]:
    """`order` with the node at `i` and its descendants among positions i+1..s moved right after position `s`."""
    moved = 1 << order[i]
    for k in range(i + 1, s + 1):
        if preds[order[k]] & moved:
            moved |= 1 << order[k]
    span = order[i:s + 1]
    return order[:i] + [v for v in span if not moved >> v & 1] + [v for v in span if moved >> v & 1] + order[s + 1:]


def _hoist(order: list[int], i: int, s: int, preds: list[int]) -> list[int]:
    """`order` with the node at `i` and its ancestors among positions s..i-1 moved right before position `s`."""
    need, moved = preds[order[i]], 1 << order[i]
    for k in range(i - 1, s - 1, -1):
        if need >> order[k] & 1:
            moved |= 1 << order[k]
            need |= preds[order[k]]
    span = order[s:i + 1]
    return order[:s] + [v for v in span if moved >> v & 1] + [v for v in span if not moved >> v & 1] + order[i + 1:]


def _moves(order: list[int], steps: list[int], preds: list[int]) -> Iterator[list[int]]:
    """Every sink and hoist across every peak step, nearest nodes first."""
    peak = max(steps)
    for s in (k for k, b in enumerate(steps) if b == peak):
        for d in range(1, len(order)):
            if s - d >= 0:
                yield _sink(order, s - d, s, preds)
            if s + d < len(order):
                yield _hoist(order, s + d, s, preds)


def improve_order(piece: Steppable, order: Sequence[int], max_moves: int) -> list[int]:
    """A topological order of `piece` whose (peak, steps at the peak, summed bytes) is no higher than `order`'s;
    at most `max_moves` orders are priced."""
    best = list(order)
    best_steps = piece.steps(best)
    best_score = _score(best_steps)
    priced = 0
    improved = True
    while improved and priced < max_moves:
        improved = False
        for candidate in _moves(best, best_steps, piece.preds):
            if priced >= max_moves:
                break
            priced += 1
            steps = piece.steps(candidate)
            score = _score(steps)
            if score < best_score:
                best, best_steps, best_score, improved = candidate, steps, score, True
                break
    return best
