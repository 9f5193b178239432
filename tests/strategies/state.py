"""Shared state and helpers of the random-graph strategy: the draw, the builder, value bounds."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st
from tensorsmith.ir import GraphBuilder, Value
from tensorsmith.ir.ops import broadcast_shapes

MAX_ELEMENTS = 2048
"""Largest tensor (in elements) a generated graph holds."""
MAX_BOUND = 1e4
"""Largest magnitude any generated value may reach."""
MAX_RANK = 4


class Reject(Exception):
    """The drawn op does not fit the chosen values; the driver drops its nodes and draws again."""


@dataclass
class State:
    """What one draw of `random_graphs` is building."""

    draw: Callable[[st.SearchStrategy[Any]], Any]
    b: GraphBuilder
    rng: np.random.Generator
    pool: list[Value] = field(default_factory=list)
    bound: dict[int, float] = field(default_factory=dict)
    inputs: dict[str, np.ndarray] = field(default_factory=dict)

    def int(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi]."""
        return self.draw(st.integers(lo, hi))

    def bool(self) -> bool:
        """A coin flip."""
        return self.draw(st.booleans())

    def choice(self, items: Any) -> Any:
        """One of `items`; rejects the op when there are none."""
        items = list(items)
        if not items:
            raise Reject
        return self.draw(st.sampled_from(items))

    def pick(self, pred: Callable[[Value], bool] = lambda v: True) -> Value:
        """A pool value satisfying `pred`, preferring values nothing reads yet."""
        cands = [v for v in self.pool if pred(v)]
        used = {id(v) for n in self.b.nodes for v in n.inputs}
        fresh = [v for v in cands if id(v) not in used]
        return self.choice(fresh if fresh and self.draw(st.integers(0, 3)) else cands)

    def const(self, shape: tuple[int, ...], lo: float = -1.0, hi: float = 1.0, name: str = "c") -> Value:
        """A uniform random f32 constant in [lo, hi)."""
        return self.b.const(self.rng.uniform(lo, hi, shape).astype(np.float32), name)

    def bnd(self, v: Value) -> float:
        """The magnitude bound of `v`."""
        return self.bound[id(v)]


def rank_in(lo: int, hi: int = MAX_RANK) -> Callable[[Value], bool]:
    """A predicate: the value's rank lies in [lo, hi]."""
    return lambda v: lo <= v.type.rank <= hi


def bcast_shape(s: State, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts against `shape` without growing it."""
    k = s.int(0, len(shape))
    return tuple(d if s.bool() else 1 for d in shape[len(shape) - k:])


def partner(s: State, a: Value) -> Value:
    """A second operand for a binary op on `a`: itself, another value, or a constant."""
    kind = s.choice(("self", "value", "const", "const"))
    if kind == "self":
        return a
    if kind == "value":
        def fits(v: Value) -> bool:
            try:
                return math.prod(broadcast_shapes("add", a.type.shape, v.type.shape)) <= MAX_ELEMENTS
            except Exception:  # noqa: BLE001 - shapes that do not broadcast
                return False
        cands = [v for v in s.pool if fits(v)]
        if cands:
            return s.choice(cands)
    c = s.const(bcast_shape(s, a.type.shape))
    s.bound[id(c)] = 1.0
    return c


def guarded(s: State, x: Value) -> Value:
    """abs(x) + 1: at least one, safe under log, sqrt and as a divisor."""
    return s.b.add(s.b.abs(x), 1.0)


def factor_shape(s: State, n: int) -> tuple[int, ...]:
    """A random shape with `n` elements and rank 1 to MAX_RANK."""
    rank = s.int(1, MAX_RANK)
    dims = [1] * rank
    p, m = 2, n
    while m > 1:
        while m % p == 0:
            dims[s.int(0, rank - 1)] *= p
            m //= p
        p += 1
    return tuple(dims)
