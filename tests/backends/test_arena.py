"""The arena planner: buffers alive together never share bytes, and disjoint lifetimes reuse memory."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorsmith.backends.arena import ALIGNMENT, ARENA_STRATEGIES, Buffer, check_arena, peak_live_bytes, plan_arena


@st.composite
def buffer_sets(draw):  # type: ignore[no-untyped-def]
    """Up to 40 buffers with random sizes (0 included) and lifetimes over 30 steps."""
    out = []
    for key in range(draw(st.integers(0, 40))):
        start = draw(st.integers(0, 29))
        end = draw(st.integers(start, min(29, start + draw(st.integers(0, 10)))))
        out.append(Buffer(key, draw(st.integers(0, 5000)), start, end))
    return out


@settings(max_examples=200, deadline=None)
@given(buffers=buffer_sets())
def test_plan_is_valid_and_between_the_bounds(buffers: list[Buffer]) -> None:
    plan = plan_arena(buffers)
    check_arena(plan, buffers)
    assert all(off % ALIGNMENT == 0 for off in plan.offsets.values())
    assert plan.peak_live <= plan.size <= plan.naive
    assert plan.peak_live == peak_live_bytes(buffers)
    for name in ARENA_STRATEGIES:  # each strategy alone is valid, and the plan keeps the smallest
        alone = plan_arena(buffers, strategies=[name])
        check_arena(alone, buffers)
        assert alone.strategy == name and plan.size <= alone.size


def test_a_chain_reuses_two_slots() -> None:
    # x0 -> x1 -> x2 -> ... each buffer is read only by the next step
    buffers = [Buffer(i, 1024, i, i + 1) for i in range(10)]
    plan = plan_arena(buffers)
    assert plan.size == 2 * 1024 and plan.naive == 10 * 1024


def test_a_later_buffer_fills_the_hole_a_dead_one_left() -> None:
    buffers = [Buffer(0, 4096, 0, 1), Buffer(1, 4096, 0, 3), Buffer(2, 2048, 2, 3), Buffer(3, 1024, 2, 2)]
    plan = plan_arena(buffers)
    check_arena(plan, buffers)
    assert plan.offsets[2] == 0 and plan.offsets[3] == 2048 and plan.size == 8192


def test_greedy_by_breadth_wins_where_size_order_leaves_a_hole() -> None:
    # by size: 320 at 0, the 256s at 320 and 0 (they overlap at step 4), the 128 above them: 768 bytes;
    # by breadth: step 4 (256 + 256 + 64 + 128 live) first, then the 320 of steps 2-3 fits in 704 = peak live
    a = [Buffer(0, 256, 3, 5), Buffer(1, 320, 2, 3), Buffer(2, 64, 3, 4), Buffer(3, 128, 4, 5), Buffer(4, 256, 4, 4)]
    by_size = plan_arena(a, strategies=["greedy-by-size"])
    by_breadth = plan_arena(a, strategies=["greedy-by-breadth"])
    check_arena(by_size, a)
    check_arena(by_breadth, a)
    assert (by_size.size, by_breadth.size, by_breadth.peak_live) == (768, 704, 704)
    best = plan_arena(a)
    assert best.size == 704 and best.strategy == "greedy-by-breadth"


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="greedy-by-size"):
        plan_arena([Buffer(0, 8, 0, 1)], strategies=["first-fit"])


def test_bad_buffers_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        plan_arena([Buffer(0, 8, 0, 1), Buffer(0, 8, 2, 3)])
    with pytest.raises(ValueError, match="bad buffer"):
        plan_arena([Buffer(0, 8, 3, 1)])
