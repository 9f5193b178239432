"""The warm-up before every timed configuration: a number of calls and a least duration, whichever is longer."""

import time

from tensorsmith.bench.warmup import warm_up


def test_warm_up_makes_at_least_the_calls_asked_for() -> None:
    calls: list[float] = []
    warm_up(lambda: calls.append(time.perf_counter()), 5, seconds=0.0)
    assert len(calls) == 5


def test_warm_up_lasts_at_least_its_seconds() -> None:
    calls: list[float] = []
    start = time.perf_counter()
    warm_up(lambda: calls.append(time.perf_counter()), 1, seconds=0.05)
    assert time.perf_counter() - start >= 0.05 and len(calls) > 1
