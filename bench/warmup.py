"""The warm-up every timed configuration gets, in-process and in a peer's child process alike."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

WARMUP_SECONDS = 0.25
"""Least wall time of untimed calls before timing: a sub-millisecond model otherwise meets the timed loop
with cold caches and a CPU still raising its clock (the zoo CNN's median at 2 threads was 1.5x higher
after 2 warm-up runs than after 300, ONNX Runtime's 1.1x)."""


def warm_up(fn: Callable[[], Any], calls: int, seconds: float = WARMUP_SECONDS) -> None:
    """Call `fn` at least `calls` times and until at least `seconds` have passed."""
    start = time.perf_counter()
    done = 0
    while done < calls or time.perf_counter() - start < seconds:
        fn()
        done += 1
